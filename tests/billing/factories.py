"""Subscriptions in each status, built through the services (no processor involved).

`subscription_in(status)` gives an organisation's subscription as the product would leave it:
`active` has paid a Standard month by a quote applied as paid (the card charge itself is not
made here: tests of charging use the sandbox), `past_due` and `locked` are that subscription
after failed renewals, `trialing` is a Standard trial, `free` is sign-up's state.
"""
from billing.models import Invoice, Status, Subscription
from billing.pricing import Change
from billing.services.quotes import quote_create
from billing.services.subscriptions import (
    subscription_apply_quote,
    subscription_save,
    subscription_transition,
    trial_start,
)
from store.models import Plan
from tests.accounts.factories import AdminFactory


def paid_quote_applied(*, admin, plan="standard", cycle="monthly", regular=3, team=0,
                       storage=0) -> Subscription:
    quote = quote_create(organisation=admin.organisation, acting_user=admin,
                         change=Change(Plan.objects.get(code=plan), cycle, regular, team,
                                       storage))
    subscription = Subscription.objects.select_for_update().get(organisation=admin.organisation)
    invoice = subscription_apply_quote(quote=quote, subscription=subscription, payment=None,
                                       actor=admin)
    # Paid, as this factory promises (the charge is not made here): an invoice nobody paid
    # would be time given free, which earns no credit (billing.pricing.paid_share).
    Invoice.objects.filter(pk=invoice.pk).update(amount_paid=quote.amount_due)
    return Subscription.objects.get(pk=subscription.pk)


def subscription_in(status: str, *, admin=None) -> Subscription:
    admin = admin or AdminFactory()
    organisation = admin.organisation
    if status == Status.FREE:
        return organisation.subscription
    if status == Status.TRIALING:
        return trial_start(organisation=organisation, plan=Plan.objects.get(code="standard"),
                           acting_user=admin)
    subscription = paid_quote_applied(admin=admin)
    for step in {Status.ACTIVE: [], Status.PAST_DUE: [Status.PAST_DUE],
                 Status.LOCKED: [Status.PAST_DUE, Status.LOCKED]}[status]:
        subscription_transition(subscription=subscription, to=step, actor=None,
                                reason="renewal charge failed (test factory)")
        subscription_save(subscription)
    return Subscription.objects.get(pk=subscription.pk)
