from django.urls import path

from billing import document_views, views

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
    path("licences/add/", views.licences_add, name="licences_add"),
    path("licences/remove/", views.licences_remove, name="licences_remove"),
    path("payment-methods/", views.payment_methods, name="payment_methods"),
    path("payment-methods/<int:method_id>/default/", views.card_default, name="card_default"),
    path("payment-methods/<int:method_id>/change/", views.card_replace, name="card_replace"),
    path("payment-methods/<int:method_id>/delete/", views.card_delete, name="card_delete"),
    path("payments/", views.payment_history, name="payment_history"),
    path("payments/export.csv", views.payment_history_csv, name="payment_history_csv"),
    path("payments/<int:payment_id>/", views.payment_detail, name="payment_detail"),
    path("invoices/<str:number>/", views.invoice, name="invoice"),
    path("trial/", views.trial, name="trial"),
    path("free/", views.switch_to_free, name="switch_to_free"),
    path("delete/", views.delete_account, name="delete"),
    path("locked/", views.locked, name="locked"),
    path("renew/", views.renew, name="renew"),
    path("invoices/<str:number>/pdf/", document_views.invoice_pdf, name="invoice_pdf"),
    path("credit-notes/<str:number>/pdf/", document_views.credit_note_pdf,
         name="credit_note_pdf"),
]
