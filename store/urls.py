"""Kanri's URLs."""
from django.contrib import admin
from django.urls import include, path

from api.endpoints import crm_api
from api.http import api_urls
from billing import webhooks
from store import health, views

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("pricing/", views.pricing, name="pricing"),
    path("manage/", include("billing.urls")),
    path("", include("accounts.urls")),
    path("billing/webhooks/stripe/", webhooks.stripe_webhook, name="stripe_webhook"),
    path("manage/api-keys/", include("api.urls")),
    path("api/v1/", api_urls(crm_api.urls)),
]
