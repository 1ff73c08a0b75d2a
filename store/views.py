"""The public pricing page."""
from decimal import Decimal

from django.conf import settings
from django.shortcuts import render

from store import selectors
from store.models import BillingCycle


def _currency_for(request) -> str:
    currencies = dict(settings.CURRENCY_CHOICES)
    asked = request.GET.get("currency", "")
    if asked in currencies:
        return asked
    if request.user.is_authenticated and request.user.organisation_id:
        return request.user.organisation.currency
    return "JPY" if request.LANGUAGE_CODE == "ja" else "USD"


def pricing(request):
    cycle = request.GET.get("cycle", BillingCycle.YEARLY)
    if cycle not in BillingCycle.values:
        cycle = BillingCycle.YEARLY
    currency = _currency_for(request)
    context = {"cycle": cycle, "currency": currency, "cycles": BillingCycle.choices,
               "tax_rate": Decimal(settings.KANRI_TAX_RATES[currency]),
               "currencies": settings.CURRENCY_CHOICES,
               **selectors.catalog_priced(currency=currency, cycle=cycle)}
    template = "store/pricing.html#catalog" if request.htmx else "store/pricing.html"
    return render(request, template, context)

