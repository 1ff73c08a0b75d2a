"""What support staff do for an organisation from Django admin, one service per action, each
with a required reason and audited in the transaction that makes the change (the staff member
is the actor; the activity page shows "Kanri support" with the reason).

They keep the portal's locking discipline: the subscription's row first, then the row acted on;
no processor call inside a transaction that holds row locks (a refund is checked and its attempt
committed under locks, sent with none held, and recorded under locks again; a charge goes
through the three steps of billing.services.charging).

Rules:
- A trial is extended only while it runs, and only to a later end.
- Unlocking a locked (or past-due) account gives it a new grace end: it is past due again until
  then, its unpaid renewal invoice stays open, and it locks again if that passes unpaid.
- Credit is granted in the subscription's currency, as a credit entry with no invoice. It is
  never paid out; it pays what it can of an open renewal invoice at once (credit pays before
  the card, which is then charged only the rest), and when it covers the invoice the
  subscription is active again. While a card payment is being confirmed, it waits.
- A refund goes back to the card through the processor, in full or in part, never more than
  is left of the payment, in three steps (billing.services.refunds): the attempt committed with
  its key (the payment's key and the review's confirmation) before the call, so a lost answer is
  settled by asking the processor for the refund under that key, never by refunding twice.
  Each refund is a credit note of kind refund on the payment's invoice, carrying its share of
  the tax; the refund that completes a payment carries what is left of the payment's tax
  (store.money.refund_share). The payment
  keeps what was refunded and is `refunded` once all of it is. A payment made with account
  credit never reaches the processor: not refundable.
- A change of plan on the organisation's behalf is a quote made by the staff member, applied
  either by charging the card on file (the portal's Pay) or without charging, the amount due
  waived (audited, printed on the invoice as not collected).
"""
import datetime as dt
import logging
from dataclasses import dataclass

from django.db import transaction
from django.utils.translation import gettext as _
from djmoney.money import Money

from accounts.audit import audit_record
from accounts.models import AuditEvent, Organisation, User
from billing.errors import BillingError, ProcessorUnavailable
from billing.models import (
    CreditEntry,
    CreditNote,
    Invoice,
    Notification,
    Payment,
    Quote,
    Refund,
    Status,
    Subscription,
    TrialUse,
)
from billing.notifications import notifications_send_on_commit
from billing.pricing import Change
from billing.services import charging, lifecycle, refunds, settlement
from billing.services.invoices import invoice_credit_apply
from billing.services.open_payments import refuse_while_payment_open
from billing.services.payments import PayResult, _refuse_if_stale, quote_pay
from billing.services.quotes import quote_create
from billing.services.refunds import refundable
from billing.services.subscriptions import (
    subscription_apply_quote,
    subscription_save,
    subscription_transition,
)
from store import clock
from store.money import (
    below_minimum_charge,
    is_whole_minor_units,
    zero,
)

logger = logging.getLogger(__name__)


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise BillingError(_("Say why: every support action is recorded with its reason."),
                           code="reason_required")
    return reason


def _lock(subscription_id: int) -> Subscription:
    # Joined: only the organisation, which never changes (subscriptions.subscription_lock_for).
    return (Subscription.objects.select_for_update(of=("self",))
            .select_related("organisation").get(pk=subscription_id))


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(dt.UTC).isoformat() if moment else None


# Trials and dunning ---------------------------------------------------------------------------

@transaction.atomic
def support_trial_extend(*, subscription_id: int, ends_at: dt.datetime, staff: User,
                         reason: str) -> Subscription:
    """Move a running trial's end later."""
    reason = _reason(reason)
    subscription = _lock(subscription_id)
    if subscription.status != Status.TRIALING:
        raise BillingError(_("Only a running trial can be extended; this subscription is "
                             "%(status)s.") % {"status": subscription.get_status_display()},
                           code="not_trialing")
    if ends_at <= max(subscription.trial_ends_at, clock.now()):
        raise BillingError(_("The new end must be later than the trial's current end."),
                           code="not_later")
    before = {"trial_ends_at": _iso(subscription.trial_ends_at)}
    TrialUse.objects.filter(organisation_id=subscription.organisation_id,
                            plan_id=subscription.plan_id).update(ends_at=ends_at)
    subscription.trial_ends_at = ends_at
    subscription_save(subscription)
    audit_record(organisation=subscription.organisation, actor=staff,
                 action="support.trial_extended", target=subscription, before=before,
                 after={"trial_ends_at": _iso(ends_at)}, reason=reason)
    return subscription


@transaction.atomic
def support_unlock(*, subscription_id: int, grace_ends_at: dt.datetime, staff: User,
                   reason: str) -> Subscription:
    """A locked or past-due account gets a new grace end: past due until then."""
    reason = _reason(reason)
    subscription = _lock(subscription_id)
    if subscription.status not in {Status.LOCKED, Status.PAST_DUE}:
        raise BillingError(_("Only a locked or past-due account can be given a new grace end; "
                             "this subscription is %(status)s.")
                           % {"status": subscription.get_status_display()}, code="not_locked")
    now = clock.now()
    if grace_ends_at <= now or (subscription.status == Status.PAST_DUE
                                and grace_ends_at <= subscription.grace_ends_at):
        raise BillingError(_("The new grace end must be in the future and later than the "
                             "current one."), code="not_later")
    before = {"status": subscription.status, "grace_ends_at": _iso(subscription.grace_ends_at),
              "locked_at": _iso(subscription.locked_at)}
    subscription_transition(subscription=subscription, to=Status.PAST_DUE, actor=staff,
                            reason=f"support: {reason}"[:200])
    subscription.grace_ends_at, subscription.locked_at = grace_ends_at, None
    invoice = subscription.open_invoice
    subscription.next_retry_at = settlement.next_retry(
        due=invoice.period_start, now=now, grace_ends=grace_ends_at) if invoice else None
    subscription_save(subscription)
    audit_record(organisation=subscription.organisation, actor=staff, action="support.unlocked",
                 target=subscription, before=before,
                 after={"status": subscription.status, "grace_ends_at": _iso(grace_ends_at),
                        "open_invoice": invoice.number if invoice else None}, reason=reason)
    return subscription


def open_invoice_due(subscription: Subscription) -> Money | None:
    """What the unpaid renewal still asks for: past due or locked, or active while the
    processor has not answered its charge."""
    invoice = subscription.open_invoice
    if invoice is None or subscription.status not in lifecycle.OWING:
        return None
    return invoice.total - invoice.credit_applied


@dataclass(frozen=True)
class CreditUse:
    """What account credit of `balance` does to the open renewal invoice (the review shows
    it; the grant does it): `due` is what the invoice asks for (None: nothing is owed),
    `spent` the part credit pays, `settles` whether that leaves nothing to charge (nothing
    left, or less than the processor's minimum, waived), `waiting` whether a card payment
    being confirmed holds the credit back."""

    due: Money | None
    spent: Money
    settles: bool = False
    waiting: bool = False

    @property
    def rest(self) -> Money | None:
        return None if self.due is None else self.due - self.spent


def open_invoice_credit_use(subscription: Subscription, balance: Money) -> CreditUse:
    """What a credit balance of `balance` would pay of the open renewal invoice.

    Nothing while a card payment is being confirmed for the organisation: that attempt asks
    for what was due when it opened, so credit spent under it could pay the same amount twice.
    The credit waits in the balance."""
    due = open_invoice_due(subscription)
    nothing = zero(subscription.currency)
    if due is None:
        return CreditUse(None, nothing)
    if Payment.objects.open_for(subscription.organisation_id).exists():
        return CreditUse(due, nothing, waiting=True)
    spent = min(balance, due)
    rest = due - spent
    return CreditUse(due, spent, settles=rest.amount <= 0 or below_minimum_charge(rest))


@dataclass(frozen=True)
class CreditGrant:
    """What a credit grant did: its ledger entry, the part of it that paid the open renewal
    invoice, that invoice when it is now paid, and whether the credit waits in the balance
    because a card payment is still being confirmed."""

    entry: CreditEntry
    applied: Money
    paid_invoice: Invoice | None = None
    waiting: bool = False


@transaction.atomic
def support_credit_grant(*, subscription_id: int, amount: Money, staff: User,
                         reason: str) -> CreditGrant:
    """Add account credit; it pays what it can of the open renewal invoice at once (SPEC
    "Partial credit": the card is charged only the rest), the whole invoice when it covers it."""
    reason = _reason(reason)
    subscription = _lock(subscription_id)
    if str(amount.currency) != subscription.currency:
        raise BillingError(_("Credit is granted in the subscription's currency, %(currency)s.")
                           % {"currency": subscription.currency}, code="wrong_currency")
    if amount <= zero(subscription.currency) or not is_whole_minor_units(amount):
        raise BillingError(_("Enter a positive amount in whole units of the currency."),
                           code="bad_amount")
    before = {"credit_balance": str(subscription.credit_balance),
              "status": subscription.status}
    entry = CreditEntry.objects.create(organisation=subscription.organisation,
                                       kind=CreditEntry.Kind.GRANTED, amount=amount)
    subscription.credit_balance += amount
    grant = _credit_pays_open_invoice(subscription, entry, staff)
    if grant.paid_invoice is None:
        subscription_save(subscription)
    audit_record(organisation=subscription.organisation, actor=staff,
                 action="support.credit_granted", target=subscription, before=before,
                 after={"credit_balance": str(subscription.credit_balance),
                        "granted": str(amount), "applied": str(grant.applied),
                        "status": subscription.status,
                        "paid_invoice": grant.paid_invoice.number if grant.paid_invoice
                        else None, "waits_for_open_payment": grant.waiting}, reason=reason)
    return grant


def _credit_pays_open_invoice(subscription: Subscription, entry: CreditEntry,
                              staff: User) -> CreditGrant:
    """Pay what the credit can of the open renewal invoice (the caller holds the subscription's
    lock); when that settles it, the subscription is active again (open_invoice_credit_use)."""
    use = open_invoice_credit_use(subscription, subscription.credit_balance)
    if not use.spent.amount:
        return CreditGrant(entry, use.spent, waiting=use.waiting)
    invoice = Invoice.objects.select_for_update().get(pk=subscription.open_invoice_id)
    spent = invoice_credit_apply(invoice=invoice, subscription=subscription)
    if not use.settles:
        return CreditGrant(entry, spent)
    settlement.renewal_apply_paid(subscription=subscription, invoice=invoice, payment=None)
    charging.minimum_charge_waived(invoice=invoice, actor=staff)
    return CreditGrant(entry, spent, paid_invoice=invoice)


def support_charge_retry(*, subscription_id: int, staff: User, reason: str) -> Payment:
    """Charge the open renewal invoice now with the card on file (three steps, no lock held
    while the processor is asked)."""
    reason = _reason(reason)
    subscription = Subscription.objects.select_related("organisation").get(pk=subscription_id)
    charging.payments_settle_open(organisation=subscription.organisation, actor=staff)
    payment = lifecycle.renewal_retry(subscription_id=subscription_id, acting_user=staff,
                                      scheduled=False)
    if payment is None:
        raise BillingError(_("There is no failed renewal to charge, or a payment is still being "
                             "confirmed."), code="nothing_to_retry")
    with transaction.atomic():
        audit_record(organisation=subscription.organisation, actor=staff,
                     action="support.charge_retried", target=payment,
                     after={"payment": payment.idempotency_key, "state": payment.state,
                            "amount": str(payment.amount), "failure": payment.failure_code},
                     reason=reason)
    return payment


# Refunds --------------------------------------------------------------------------------------

def _refund_check(payment: Payment, amount: Money) -> None:
    if payment.paid_with == Payment.Source.CREDIT:
        raise BillingError(_("This payment was made with account credit: nothing reached the "
                             "card, so nothing can be refunded to it."), code="paid_with_credit")
    if payment.invoice_id is None or payment.state != Payment.State.SUCCEEDED:
        raise BillingError(_("Only a card payment that paid an invoice can be refunded; this "
                             "one is %(state)s.") % {"state": payment.get_state_display()},
                           code="not_refundable")
    left = refundable(payment)
    if str(amount.currency) != str(left.currency) or not is_whole_minor_units(amount) \
            or not zero(str(left.currency)) < amount <= left:
        raise BillingError(_("Enter an amount above zero and at most %(left)s, what is left of "
                             "this payment.") % {"left": left}, code="bad_amount")


def support_refund(*, payment_id: int, amount: Money, staff: User, reason: str,
                   confirmation: str = "") -> CreditNote:
    """Refund `amount` of a card payment through the processor, as a credit note, in the three
    steps of billing.services.refunds (the attempt committed with its key before the call).

    `confirmation` is the one-time confirmation of the review support confirmed
    (billing.admin_support): the attempt's key is derived from it, and a refund recorded under
    it refuses a second, so confirming the same review twice never refunds twice, while
    confirming it again after a lost answer asks the processor for the refund under that key
    before sending anything. Without one (a caller with no review), the attempt's number
    stands in for it. An unknown outcome raises ProcessorUnavailable saying the refund is being
    confirmed: the settle job asks the processor and records it if it was made."""
    reason = _reason(reason)
    with transaction.atomic():  # 1: check under locks and commit the attempt with its key
        payment = refunds.payment_lock(payment_id)
        if confirmation and (
                Refund.objects.filter(payment=payment, confirmation=confirmation,
                                      state=Refund.State.SUCCEEDED).exists()
                or AuditEvent.objects.filter(
                    action="support.refunded", target_type=Payment._meta.label_lower,
                    target_id=str(payment.pk), after__confirmation=confirmation).exists()):
            raise BillingError(_("This refund was already made: confirming its review again "
                                 "refunds nothing more."), code="already_applied")
        _refund_check(payment, amount)
        confirmation = confirmation or str(payment.refunds.count() + 1)
        refund = refunds.refund_open(
            payment=payment, key=f"{payment.idempotency_key}:support:{confirmation}",
            amount=amount, purpose=Refund.Purpose.SUPPORT, staff=staff, reason=reason,
            confirmation=confirmation)
    if refund is None:
        raise ProcessorUnavailable(_("This refund is being confirmed with the payment service "
                                     "by another request; try again in a minute."))
    outcome = refunds.refund_run(refund=refund, send=True, actor=staff)  # 2 and 3
    if outcome.kind == "succeeded":
        return outcome.note
    if outcome.kind == "failed":
        raise BillingError(outcome.message, code="processor_error")
    raise ProcessorUnavailable(outcome.message)


# Plan changes ---------------------------------------------------------------------------------

def support_plan_quote(*, organisation: Organisation, change: Change, staff: User) -> Quote:
    """Price a change for the organisation, made by the staff member (the review)."""
    return quote_create(organisation=organisation, acting_user=staff, change=change)


def support_plan_change(*, organisation: Organisation, quote_id, charge: bool, staff: User,
                        reason: str) -> Invoice:
    """Apply a quote made by support for `organisation`: charging the card on file, or not
    charging at all. A quote of another organisation, or none, is refused: the subject acted
    on is the page's, never the one a posted id names."""
    reason = _reason(reason)
    quote = Quote.objects.filter(pk=quote_id, organisation=organisation).first()
    if quote is None:
        raise BillingError(_("This change was not reviewed for this organisation, or its review "
                             "is gone: review the change again."), code="unknown_quote")
    if charge:
        result: PayResult = quote_pay(organisation=organisation, quote_id=quote.pk,
                                      acting_user=staff)
        if result.invoice is None:
            raise BillingError(result.failure, code=result.code or "not_paid")
        invoice = result.invoice
    else:
        charging.payments_settle_open(organisation=organisation, actor=staff)
        invoice = _apply_without_charge(quote_id=quote.pk, staff=staff)
    with transaction.atomic():
        audit_record(organisation=organisation, actor=staff, action="support.plan_changed",
                     target=invoice, after={"quote": str(quote.pk), "plan": quote.plan.code,
                                            "charged": charge, "invoice": invoice.number,
                                            "not_collected": str(invoice.amount_waived)},
                     reason=reason)
    return invoice


@transaction.atomic
def _apply_without_charge(*, quote_id, staff: User) -> Invoice:
    quote = Quote.objects.select_related("organisation").get(pk=quote_id)
    subscription = Subscription.objects.select_for_update().get(organisation=quote.organisation)
    quote = (Quote.objects.select_for_update(of=("self",)).select_related("plan", "from_plan")
             .get(pk=quote_id))
    if quote.state == Quote.State.PAID:
        return quote.invoice
    refuse_while_payment_open(organisation=quote.organisation)
    _refuse_if_stale(quote=quote, subscription=subscription)
    return subscription_apply_quote(quote=quote, subscription=subscription, payment=None,
                                    actor=staff)


# Emails ---------------------------------------------------------------------------------------

@transaction.atomic
def support_notification_resend(*, notification_id: int, staff: User,
                                reason: str) -> Notification:
    """Send an email again: unsent, and a send task after commit."""
    reason = _reason(reason)
    notification = Notification.objects.select_for_update().select_related("organisation").get(
        pk=notification_id)
    before = {"sent_at": _iso(notification.sent_at)}
    notification.sent_at = None
    notification.save(update_fields=["sent_at"])
    audit_record(organisation=notification.organisation, actor=staff,
                 action="support.email_resent", target=notification, before=before,
                 after={"kind": notification.kind, "recipients": notification.recipients},
                 reason=reason)
    notifications_send_on_commit([notification.key])
    return notification
