"""Billing's reads, always scoped to one organisation."""
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.shortcuts import get_object_or_404
from djmoney.money import Money

from accounts.models import Organisation
from billing.models import Invoice, Payment, Quote, Status, Subscription
from store.models import Plan
from store.money import money_sum, prorate, tax_on


@dataclass(frozen=True)
class Overview:
    subscription: Subscription
    next_renewal_amount: Money | None
    invoices: list[Invoice]
    open_payment: Payment | None  # a payment whose outcome is not known yet


def renewal_amount(subscription: Subscription) -> Money | None:
    """What the next period costs at the prices this subscription pays, tax included."""
    if subscription.status not in {Status.ACTIVE, Status.PAST_DUE}:
        return None
    held = [(subscription.plan_price, subscription.regular_licences),
            (subscription.team_price, subscription.team_licences),
            (subscription.storage_price, subscription.storage_units)]
    subtotal = money_sum((prorate(price.amount, quantity, Decimal(1))
                          for price, quantity in held if price and quantity),
                         subscription.currency)
    rate = Decimal(settings.KANRI_TAX_RATES[subscription.currency])
    return subtotal + tax_on(subtotal, rate, settings.KANRI_TAX_ROUNDING)


def subscription_overview(*, organisation: Organisation) -> Overview:
    subscription = (Subscription.objects
                    .select_related("plan", "plan_price", "team_price", "storage_price",
                                    "default_payment_method")
                    .get(organisation=organisation))
    invoices = list(Invoice.objects.filter(organisation=organisation)
                    .select_related("quote__plan").prefetch_related("payments")[:10])
    open_payment = (Payment.objects.filter(organisation=organisation, state__in=Payment.OPEN)
                    .select_related("quote").first())
    return Overview(subscription=subscription, next_renewal_amount=renewal_amount(subscription),
                    invoices=invoices, open_payment=open_payment)


def subscription_get(*, organisation: Organisation) -> Subscription:
    return Subscription.objects.select_related("plan", "default_payment_method").get(
        organisation=organisation)


def quote_get(*, organisation: Organisation, quote_id) -> Quote:
    """A quote of this organisation, or 404: another organisation's quote id never leaks."""
    return get_object_or_404(
        Quote.objects.select_related("plan", "from_plan").prefetch_related(
            "lines__plan", "lines__addon"), pk=quote_id, organisation=organisation)


def open_payment(*, quote: Quote) -> Payment | None:
    """The attempt of this quote whose outcome is not settled yet, if any."""
    return quote.payments.filter(state__in=Payment.OPEN).first()


def invoice_get(*, organisation: Organisation, number: str) -> Invoice:
    return get_object_or_404(
        Invoice.objects.prefetch_related("lines__plan", "lines__addon", "payments"),
        number=number, organisation=organisation)


def plans_for_change(*, subscription: Subscription) -> list[dict]:
    """Public plans, each marked current, upgrade or downgrade relative to the plan held."""
    rows = []
    for plan in Plan.objects.filter(is_public=True):
        if plan.pk == subscription.plan_id:
            relation = "current"
        else:
            relation = "upgrade" if plan.rank > subscription.plan.rank else "downgrade"
        rows.append({"plan": plan, "relation": relation})
    return rows
