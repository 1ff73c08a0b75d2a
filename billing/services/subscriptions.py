"""The subscription's life: created on Free, trials, status moves, and applying a paid quote."""
import datetime as dt

from django.conf import settings
from django.db import transaction
from django.utils import translation
from django.utils.translation import gettext as _

from accounts.audit import actor_kind_of, audit_record
from accounts.models import Organisation, User
from billing.errors import BillingError, IllegalTransition
from billing.models import (
    Invoice,
    Payment,
    Quote,
    Status,
    Subscription,
    SubscriptionStatusChange,
    TrialUse,
)
from billing.models.subscriptions import TRANSITIONS
from billing.notifications import notify
from billing.services.invoices import (
    invoice_from_quote,
    invoices_void,
    payment_by_credit_record,
)
from billing.services.ledger import ledger_record, quantities
from billing.services.open_payments import refuse_while_payment_open
from store import clock
from store.models import Plan
from store.money import zero

__all__ = ["IllegalTransition", "subscription_apply_quote", "subscription_create_free",
           "subscription_transition", "trial_start"]


@transaction.atomic
def subscription_create_free(*, organisation: Organisation) -> Subscription:
    """Every new organisation starts on Free, with Free's user licences: the ledger's opening
    row (no rows for team licences and storage, which start at 0)."""
    free = Plan.objects.get(code="free")
    subscription = Subscription.objects.create(
        organisation=organisation, plan=free, currency=organisation.currency,
        regular_licences=free.max_users or 1, status=Status.FREE,
        credit_balance=zero(organisation.currency))
    ledger_record(subscription, {}, quantities(subscription), actor=None,
                  reason="opened on Free")
    return subscription


def subscription_snapshot(subscription: Subscription) -> dict:
    return {
        "plan": subscription.plan.code, "cycle": subscription.cycle,
        "status": subscription.status, "regular_licences": subscription.regular_licences,
        "team_licences": subscription.team_licences,
        "storage_units": subscription.storage_units,
        "period_end": subscription.current_period_end.isoformat()
        if subscription.current_period_end else None,
    }


def subscription_transition(*, subscription: Subscription, to: str, actor: User | None,
                            reason: str) -> None:
    """Move the status along the one map, writing the history row. Caller saves and holds the
    subscription's row lock."""
    before = subscription.status
    if to == before:
        return
    if to not in TRANSITIONS[before]:
        raise IllegalTransition(_("A subscription cannot go from %(from)s to %(to)s.")
                                % {"from": before, "to": to})
    subscription.status = to
    SubscriptionStatusChange.objects.create(
        subscription=subscription, from_status=before, to_status=to, actor=actor,
        actor_kind=actor_kind_of(actor), reason=reason)


def subscription_lock_for(*, organisation: Organisation) -> Subscription:
    """The subscription, row-locked. Row locks here join nothing that a concurrent change can
    move (the plan, the card, the open invoice): PostgreSQL re-checks a waiting lock's joins
    against the rows it read before waiting, and the row would go missing or lose its join.
    What the caller reads of them is read after the lock."""
    return Subscription.objects.select_for_update().get(organisation=organisation)


@transaction.atomic
def trial_start(*, organisation: Organisation, plan: Plan, acting_user: User) -> Subscription:
    """Try a paid plan for the trial period, no card needed; once per organisation and plan."""
    subscription = subscription_lock_for(organisation=organisation)
    if plan.is_free or not plan.is_public:
        raise BillingError(_("Only paid plans can be tried."))
    if subscription.status != Status.FREE:
        raise BillingError(_("Trials start from the Free plan. Your subscription is %(status)s.")
                           % {"status": subscription.get_status_display()})
    refuse_while_payment_open(organisation=organisation)
    if TrialUse.objects.filter(organisation=organisation, plan=plan).exists():
        raise BillingError(_("You have already tried %(plan)s. Buy it to keep using it.")
                           % {"plan": plan.display_name})
    before = subscription_snapshot(subscription)
    now = clock.now()
    ends = now + dt.timedelta(days=settings.KANRI_TRIAL_DAYS)
    TrialUse.objects.create(organisation=organisation, plan=plan, started_at=now, ends_at=ends)
    subscription.plan = plan
    subscription.trial_ends_at = ends
    subscription_transition(subscription=subscription, to=Status.TRIALING, actor=acting_user,
                            reason=f"trial of {plan.code}")
    subscription_save(subscription)
    audit_record(organisation=organisation, actor=acting_user, action="subscription.trial_started",
                 target=subscription, before=before, after=subscription_snapshot(subscription))
    return subscription


def subscription_save(subscription: Subscription) -> None:
    subscription.version += 1
    subscription.updated_at = clock.now()
    subscription.save()


def subscription_apply_quote(*, quote: Quote, subscription: Subscription,
                             payment: Payment | None, actor: User | None) -> Invoice:
    """Apply a paid quote: its invoice, the new configuration, the period and its anchor, the
    status. The caller holds the subscription's and the quote's row locks, in that order."""
    before = subscription_snapshot(subscription)
    held = quantities(subscription)
    invoice = invoice_from_quote(quote=quote, subscription=subscription,
                                 amount_paid=payment.amount if payment else zero(quote.currency),
                                 paid_by=payment.processor_id if payment else "")
    if payment:
        payment.invoice = invoice
        payment.save(update_fields=["invoice"])
    else:
        payment_by_credit_record(invoice=invoice)
    prices = {}
    for line in invoice.lines.filter(kind="charge").select_related("price", "addon"):
        prices[line.addon.code if line.addon else "plan"] = line.price
    subscription.plan = quote.plan
    subscription.cycle = quote.cycle
    subscription.regular_licences = quote.regular_licences
    subscription.team_licences = quote.team_licences
    subscription.storage_units = quote.storage_units
    subscription.plan_price = prices.get("plan")
    subscription.team_price = prices.get("team_user")
    subscription.storage_price = prices.get("storage")
    subscription.current_period_start = quote.period_start
    subscription.current_period_end = quote.period_end
    if quote.billing_anchor or quote.plan.is_free:
        subscription.billing_anchor = quote.billing_anchor
    subscription.paid_invoice = None if quote.plan.is_free else invoice
    subscription.trial_ends_at = None
    if subscription.open_invoice_id:
        # A change chosen while past due or locked replaces the unpaid renewal: void, kept,
        # and the credit it spent is the account's again.
        returned = invoices_void(invoice_ids=[subscription.open_invoice_id])
        if subscription.pk in returned:
            subscription.credit_balance += returned[subscription.pk]
        subscription.open_invoice = None
    subscription.payment_failed_at = subscription.grace_ends_at = None
    subscription.next_retry_at = subscription.locked_at = None
    subscription.retries_made = 0
    target = Status.FREE if quote.plan.is_free else Status.ACTIVE
    subscription_transition(subscription=subscription, to=target, actor=actor,
                            reason=f"quote {quote.pk} paid, invoice {invoice.number}")
    subscription_save(subscription)
    quote.state = Quote.State.PAID
    quote.save(update_fields=["state"])
    ledger_record(subscription, held, quantities(subscription), actor=actor, quote=quote,
                  invoice=invoice, reason=f"quote {quote.pk} paid ({quote.plan.code})")
    if before["plan"] == quote.plan.code:  # a plan change has its receipt or credit note
        _licence_change_notify(subscription, held, invoice)
    audit_record(organisation=quote.organisation, actor=actor,
                 action="subscription.changed", target=subscription, before=before,
                 after={**subscription_snapshot(subscription), "invoice": invoice.number})
    return invoice


def _licence_change_notify(subscription: Subscription, held: dict, invoice) -> None:
    """Tell the admins when the purchased licences or storage changed on the same plan (once per
    invoice), in the organisation's language: who did it is on the Activity page."""
    now = quantities(subscription)
    organisation = subscription.organisation
    labels = {"regular_licences": _("Regular user licences"),
              "team_licences": _("Team user licences"), "storage_units": _("Extra storage (GB)")}
    with translation.override(organisation.language):
        changes = [f"{labels[item]}: {held.get(item, 0)} → {now[item]}" for item in now
                   if now[item] != held.get(item, 0)]
    if changes:
        notify(organisation=organisation, kind="licence_change",
               key=f"licence_change:{invoice.number}",
               context={"number": invoice.number, "changes": changes,
                        "summary": "; ".join(changes)})
