"""The quote write: a priced change (billing.pricing) saved for review with an id and an expiry.

Nothing changes until the quote is paid. A quote freezes what it shows: the lines, the tax rate
and rounding, the item names; paying it later never re-reads the catalog or the settings.
"""
import datetime as dt

from django.conf import settings
from django.db import transaction

from accounts.models import Organisation, User
from billing.models import Quote, QuoteLine, Subscription
from billing.pricing import Change, quote_price
from billing.selectors import subscription_with_prices
from billing.services.charging import payments_settle_open
from billing.services.open_payments import refuse_while_payment_open
from store import clock
from store.models import Plan
from store.money import breakdown_to_json

__all__ = ["Change", "quote_create", "quote_switch_to_free", "refuse_while_payment_open"]


def quote_create(*, organisation: Organisation, acting_user: User, change: Change) -> Quote:
    """Save a priced change for review, once earlier payments are settled (asking the
    processor, with no transaction open): a change is priced against what is really paid."""
    payments_settle_open(organisation=organisation, actor=acting_user)
    return _quote_write(organisation=organisation, acting_user=acting_user, change=change)


@transaction.atomic
def _quote_write(*, organisation: Organisation, acting_user: User, change: Change) -> Quote:
    refuse_while_payment_open(organisation=organisation)
    subscription = subscription_with_prices(organisation=organisation)
    priced = quote_price(organisation=organisation, subscription=subscription, change=change)
    now = clock.now()
    quote = Quote.objects.create(
        organisation=organisation, created_by=acting_user,
        subscription_version=subscription.version, from_plan=subscription.plan,
        from_cycle=subscription.cycle, plan=change.plan, cycle=change.cycle,
        regular_licences=change.regular_licences, team_licences=change.team_licences,
        storage_units=change.storage_units, currency=subscription.currency,
        period_start=priced.period_start, period_end=priced.period_end,
        billing_anchor=priced.billing_anchor, subtotal=priced.subtotal,
        tax_rate=priced.tax_rule.rate, tax_rounding=priced.tax_rule.rounding,
        tax_breakdown=breakdown_to_json(priced.taxes), tax=priced.tax, total=priced.total,
        credit_applied=priced.credit_applied, amount_due=priced.amount_due,
        credit_to_account=priced.credit_to_account,
        next_renewal_amount=priced.next_renewal_amount, warnings=priced.warnings,
        created_at=now, expires_at=now + dt.timedelta(minutes=settings.KANRI_QUOTE_MINUTES))
    QuoteLine.objects.bulk_create(
        QuoteLine(quote=quote, kind=line.kind, price=line.price, plan=line.price.plan,
                  addon=line.price.addon, quantity=line.quantity, unit_amount=line.unit_amount,
                  fraction=line.fraction, amount=line.amount, period_start=line.period_start,
                  period_end=line.period_end, tax_rate=line.tax_rate,
                  item_name=line.item.name, item_name_ja=line.item.name_ja,
                  credits_line=line.credits_line)
        for line in priced.lines)
    return quote


def quote_switch_to_free(*, organisation: Organisation, acting_user: User) -> Quote:
    """Price the move to Free: keep the cycle, as many regular licences as Free allows."""
    subscription = Subscription.objects.select_related("plan").get(organisation=organisation)
    free = Plan.objects.get(code="free")
    change = Change(free, subscription.cycle,
                    min(subscription.regular_licences, free.max_users or 1), 0, 0)
    return quote_create(organisation=organisation, acting_user=acting_user, change=change)
