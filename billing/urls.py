from django.urls import path

from billing import views

app_name = "billing"

urlpatterns = [
    path("", views.details, name="details"),
    path("plans/", views.plans, name="plans"),
    path("plans/<slug:code>/", views.configure, name="configure"),
    path("quotes/<uuid:quote_id>/", views.review, name="review"),
    path("quotes/<uuid:quote_id>/pay/", views.pay, name="pay"),
    path("cards/", views.card_add, name="card_add"),
    path("cards/setup/", views.card_setup, name="card_setup"),
    path("cards/change/", views.card_update, name="card_update"),
    path("invoices/<str:number>/", views.invoice, name="invoice"),
    path("trial/", views.trial, name="trial"),
    path("free/", views.switch_to_free, name="switch_to_free"),
    path("delete/", views.delete_account, name="delete"),
    path("locked/", views.locked, name="locked"),
    path("renew/", views.renew, name="renew"),
]
