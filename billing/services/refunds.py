"""Refunding a card payment in three steps, like a charge (billing.services.charging), so every
refund at the processor has exactly one record in Kanri, committed before the call (SPEC "The
books" 1):

1. **Commit the attempt** (`refund_open`): a Refund row with its idempotency key and amount,
   `pending`, leased to the caller, in the caller's transaction holding the payment's lock. At
   most one is pending per payment (a partial unique constraint).
2. **Ask the processor outside any transaction** (`refund_run`): first whether a refund under the
   attempt's key already exists (a run after a lost answer), else create it; the key travels in
   the refund's metadata, so the processor's own list says whether it was made. Idempotency keys
   alone prove nothing (localstripe ignores them).
3. **Record the answer** (`_record`, with `refund_apply`) in a second short transaction: the
   Refund succeeded with the processor's id, the Payment's refunded amount and state, and for a
   refund of a paid invoice its credit note.

An unknown outcome (the processor silent, or the record step failing after it refunded) leaves
the attempt pending with its lease released; whoever comes next asks the processor for the
payment's refunds: found by its key → recorded; not found → failed, nothing was refunded, and it
may be sent again. The settle job does this for every attempt whose lease ran out
(`refunds_settle_open`, from charging.payments_settle_open). A refund made elsewhere (the
processor's dashboard) is recorded by the same `refund_apply` when `charge.refunded` arrives
(`refund_found`), once: the processor's refund id is unique among Refund rows.
"""
import datetime as dt
import logging
from dataclasses import dataclass
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils.translation import gettext as _
from djmoney.money import Money

from accounts.audit import audit_record
from accounts.models import Organisation, User
from billing import gateway
from billing.errors import BillingError
from billing.models import CreditNote, Notification, Payment, Refund, Subscription
from billing.notifications import notify
from billing.services.invoices import next_credit_note_number
from store import clock
from store.money import breakdown_to_json, format_money, refund_share, zero

logger = logging.getLogger(__name__)

# A refund at the processor that still gives money back (Stripe: pending or succeeded).
MADE = {"pending", "succeeded", "requires_action"}


@dataclass(frozen=True)
class RefundOutcome:
    """What became of a refund attempt, as far as anyone knows now: succeeded (recorded, with
    its credit note when it has one), failed (not made), unknown (the processor did not answer),
    unrecorded (made; recording failed, the job completes it) or busy (another request is
    asking the processor about it)."""

    refund: Refund
    kind: str
    note: CreditNote | None = None
    message: str = ""


def lease_length() -> dt.timedelta:
    """Long enough for the processor's list and create to time out: a live request is never
    overtaken by the job."""
    return dt.timedelta(seconds=2 * settings.STRIPE_TIMEOUT_SECONDS + 10)


def refundable(payment: Payment) -> Money:
    """What is left to refund of a card payment."""
    if (payment.paid_with != Payment.Source.CARD or not payment.processor_id
            or payment.state not in {Payment.State.SUCCEEDED, Payment.State.REFUNDED}):
        return zero(str(payment.amount.currency))
    return payment.amount - (payment.amount_refunded or zero(str(payment.amount.currency)))


def payment_lock(payment_id: int) -> Payment:
    """Lock the payment's subscription, then the payment (the portal's locking order)."""
    organisation_id = Payment.objects.values_list("organisation_id", flat=True).get(pk=payment_id)
    Subscription.objects.select_for_update().filter(organisation_id=organisation_id).get()
    return (Payment.objects.select_for_update(of=("self",)).select_related("invoice")
            .get(pk=payment_id))


def refund_open(*, payment: Payment, key: str, amount: Money, purpose: str,
                staff: User | None = None, reason: str = "",
                confirmation: str = "") -> Refund | None:
    """Step 1: the attempt under `key`, leased to the caller. Call inside a transaction holding
    `payment_lock`. An attempt already under `key` is returned as it is when it succeeded, taken
    over when pending with its lease run out, and opened again when it failed (the processor
    never made it). None while another request holds it. Another pending attempt for the
    payment refuses a new one."""
    now = clock.now()
    refund = Refund.objects.select_for_update().filter(idempotency_key=key).first()
    if refund is not None and refund.state == Refund.State.SUCCEEDED:
        return refund
    if refund is not None and refund.state == Refund.State.PENDING:
        if refund.lease_until and refund.lease_until > now:
            return None
        refund.lease_until = now + lease_length()
        refund.save(update_fields=["lease_until"])
        return refund
    if Refund.objects.filter(payment=payment, state=Refund.State.PENDING).exists():
        raise BillingError(_("Another refund of this payment is being confirmed with the payment "
                             "service; try again in a few minutes."), code="refund_open")
    if refund is None:
        return Refund.objects.create(
            payment=payment, amount=amount, idempotency_key=key, purpose=purpose, staff=staff,
            reason=reason[:300], confirmation=confirmation, lease_until=now + lease_length())
    refund.state, refund.amount, refund.failure_reason = Refund.State.PENDING, amount, ""
    refund.settled_at, refund.lease_until = None, now + lease_length()
    refund.save(update_fields=["state", "amount", "amount_currency", "failure_reason",
                               "settled_at", "lease_until"])
    return refund


def refund_run(*, refund: Refund, send: bool, actor: User | None) -> RefundOutcome:
    """Steps 2 and 3 for a leased attempt, with no transaction open. The processor is asked
    first whether the attempt's refund exists; `send` False (the job) records it if it does and
    fails the attempt if it does not, never creating one."""
    payment = Payment.objects.get(pk=refund.payment_id)
    try:
        made = next((found for found in gateway.refunds_list(intent_id=payment.processor_id)
                     if found.kanri_key == refund.idempotency_key), None)
    except gateway.GatewayError as error:
        logger.warning("could not list the refunds of %s: %s", refund.idempotency_key, error)
        return _unknown(refund)
    if made is not None and made.status not in MADE:
        return _fail(refund, actor, _("The payment service did not make the refund (%(status)s)."
                                      ) % {"status": made.status})
    if made is not None:
        processor_refund_id = made.processor_id
    elif not send:
        return _fail(refund, actor, _("The payment service has no such refund: nothing was "
                                      "refunded."))
    else:
        try:
            processor_refund_id = gateway.refund_create(
                intent_id=payment.processor_id, amount=refund.amount,
                idempotency_key=refund.idempotency_key)
        except gateway.GatewayUnavailable as error:
            logger.warning("processor silent about refund %s: %s", refund.idempotency_key, error)
            return _unknown(refund)
        except gateway.GatewayError as error:
            return _fail(refund, actor, _("The payment service refused the refund: %(why)s")
                         % {"why": error})
    try:
        return _record(refund, processor_refund_id, actor)
    except Exception:
        # Refunded at the processor; recording failed. The attempt stays pending and the job
        # records it by asking again.
        logger.exception("refunded but not recorded: %s (%s)", refund.idempotency_key,
                         processor_refund_id)
        _release(refund)
        return RefundOutcome(refund, "unrecorded", message=_(
            "The payment service made the refund (%(id)s), but recording it failed: the refund "
            "is being confirmed and is recorded automatically within minutes. Confirming it "
            "again refunds nothing more.") % {"id": processor_refund_id})


def _release(refund: Refund) -> None:
    """Let the next request (or the job) ask the processor at once."""
    try:
        Refund.objects.filter(pk=refund.pk, state=Refund.State.PENDING).update(
            lease_until=clock.now())
    except Exception:
        logger.exception("could not release the lease of refund %s; it runs out by itself",
                         refund.idempotency_key)


def _unknown(refund: Refund) -> RefundOutcome:
    _release(refund)
    return RefundOutcome(refund, "unknown", message=_(
        "The payment service did not answer, so it is not known yet whether the refund was "
        "made: the refund is being confirmed. Kanri asks the payment service again and records "
        "it if it was made. Confirming the same refund again is safe: it carries the same key, "
        "so it cannot refund twice."))


@transaction.atomic
def _fail(refund: Refund, actor: User | None, reason: str) -> RefundOutcome:
    payment = payment_lock(refund.payment_id)
    refund = Refund.objects.select_for_update().get(pk=refund.pk)
    if refund.state != Refund.State.PENDING:
        return RefundOutcome(refund, refund.state, message=str(reason))
    refund.state, refund.failure_reason = Refund.State.FAILED, str(reason)[:300]
    refund.settled_at, refund.lease_until = clock.now(), None
    refund.save(update_fields=["state", "failure_reason", "settled_at", "lease_until"])
    audit_record(organisation=payment.organisation, actor=actor, action="refund.failed",
                 target=payment, after={"refund": refund.idempotency_key,
                                        "amount": str(refund.amount), "why": str(reason)})
    return RefundOutcome(refund, "failed", message=str(reason))


@transaction.atomic
def _record(refund: Refund, processor_refund_id: str, actor: User | None) -> RefundOutcome:
    """Step 3: record what the processor made, once."""
    payment = payment_lock(refund.payment_id)
    refund = Refund.objects.select_for_update().get(pk=refund.pk)
    if refund.state == Refund.State.SUCCEEDED:  # another request or the webhook recorded it
        return RefundOutcome(refund, "succeeded", _note(refund))
    note = refund_apply(payment=payment, refund=refund, processor_refund_id=processor_refund_id,
                        actor=actor)
    return RefundOutcome(refund, "succeeded", note)


def _note(refund: Refund) -> CreditNote | None:
    return CreditNote.objects.filter(processor_refund_id=refund.processor_refund_id).first()


def refund_apply(*, payment: Payment, refund: Refund, processor_refund_id: str,
                 actor: User | None) -> CreditNote | None:
    """The one record of a refund the processor made (the caller holds `payment_lock`): the
    Refund succeeded with the processor's id; a refund of a paid invoice is a credit note
    carrying its share of the tax and adds to what was refunded of the payment; a charge that
    could not be applied is refunded whole with no credit note (nothing was invoiced)."""
    refund.state, refund.processor_refund_id = Refund.State.SUCCEEDED, processor_refund_id
    refund.settled_at, refund.lease_until = clock.now(), None
    refund.save()
    currency = str(refund.amount.currency)
    before = {"state": payment.state, "amount_refunded": str(payment.amount_refunded or "")}
    invoice = payment.invoice
    if refund.purpose == Refund.Purpose.UNAPPLIED or invoice is None or invoice.state != "paid":
        if refund.amount >= refundable(payment):
            payment.state = Payment.State.REFUNDED
        payment.refund_id = processor_refund_id
        payment.save(update_fields=["state", "refund_id"])
        audit_record(organisation=payment.organisation, actor=actor, action="payment.refunded",
                     target=payment, before=before,
                     after={"refund": processor_refund_id, "amount": str(refund.amount)},
                     reason="charged for a change that could no longer be applied"
                     if refund.purpose == Refund.Purpose.UNAPPLIED
                     else "refunded at the payment service")
        return None
    note = _credit_note(payment, refund.amount, processor_refund_id)
    payment.amount_refunded = (payment.amount_refunded or zero(currency)) + refund.amount
    if payment.amount_refunded >= payment.amount:
        payment.state = Payment.State.REFUNDED
    payment.refund_id = processor_refund_id
    payment.save(update_fields=["amount_refunded", "amount_refunded_currency", "state",
                                "refund_id"])
    after = {"state": payment.state, "amount_refunded": str(payment.amount_refunded),
             "refund": processor_refund_id, "amount": str(refund.amount),
             "credit_note": note.number}
    if refund.purpose == Refund.Purpose.SUPPORT:
        audit_record(organisation=payment.organisation, actor=refund.staff,
                     action="support.refunded", target=payment, before=before,
                     after={**after, "confirmation": refund.confirmation},
                     reason=refund.reason)
    else:
        audit_record(organisation=payment.organisation, actor=actor, action="payment.refunded",
                     target=payment, before=before, after=after,
                     reason="refunded at the payment service")
    organisation = payment.organisation
    notify(organisation=organisation, kind=Notification.Kind.REFUND, key=f"refund:{note.number}",
           context={"amount": format_money(refund.amount, organisation.language),
                    "payment": payment.processor_id, "credit_note": note.number,
                    "number": invoice.number})
    return note


def _credit_note(payment: Payment, amount: Money, processor_refund_id: str) -> CreditNote:
    invoice = payment.invoice
    currency = str(amount.currency)
    nothing = zero(currency)
    # What the payment's earlier refunds carried, per rate (tax, and tax included).
    taken: dict = {}
    for earlier in payment.credit_notes.filter(kind=CreditNote.Kind.REFUND):
        for group in earlier.taxes:
            tax, gross = taken.get(group["rate"], (nothing, nothing))
            taken[group["rate"]] = (tax + group["tax"], gross + group["subtotal"] + group["tax"])
    # The refund's tax is the invoice's tax, per rate, in the share the refund is of the total;
    # the refund that completes the payment takes what is left of the payment's share.
    share = partial(refund_share, whole=invoice.total, paid=payment.amount,
                    refunded=payment.amount_refunded or nothing, amount=amount,
                    rounding=invoice.tax_rounding)
    taxes = []
    for group in invoice.taxes if invoice.total.amount > 0 else []:
        tax_before, gross_before = taken.get(group["rate"], (nothing, nothing))
        tax = share(group["tax"], taken=tax_before)
        gross = share(group["subtotal"] + group["tax"], taken=gross_before)
        taxes.append({"rate": group["rate"], "subtotal": gross - tax, "tax": tax})
    tax = sum((group["tax"] for group in taxes), zero(currency))
    return CreditNote.objects.create(
        number=next_credit_note_number(), organisation_id=payment.organisation_id,
        invoice=invoice, payment=payment, kind=CreditNote.Kind.REFUND, currency=currency,
        subtotal=amount - tax, tax_breakdown=breakdown_to_json(taxes), tax=tax, total=amount,
        processor_refund_id=processor_refund_id, seller_name=invoice.seller_name,
        buyer_name=invoice.buyer_name, issuer_registration=invoice.issuer_registration)


def refund_unapplied(*, payment_id: int) -> RefundOutcome | None:
    """Refund in full a charge that succeeded but could not be applied (charging's rule), in
    the three steps. None when it is refunded already."""
    with transaction.atomic():
        payment = payment_lock(payment_id)
        if payment.state != Payment.State.SUCCEEDED or payment.refund_id:
            return None
        refund = refund_open(payment=payment, key=f"{payment.idempotency_key}:unapplied",
                             amount=payment.amount, purpose=Refund.Purpose.UNAPPLIED)
    if refund is None:
        return RefundOutcome(Refund.objects.get(
            idempotency_key=f"{payment.idempotency_key}:unapplied"), "busy")
    if refund.state == Refund.State.SUCCEEDED:
        return RefundOutcome(refund, "succeeded")
    return refund_run(refund=refund, send=True, actor=None)


def refund_settle(*, refund_id: int, actor: User | None = None) -> RefundOutcome | None:
    """Settle one pending attempt whose lease ran out by asking the processor (never sending).
    None when it is not pending, or a request holds it now."""
    with transaction.atomic():
        refund = Refund.objects.select_for_update(skip_locked=True).filter(
            pk=refund_id, state=Refund.State.PENDING).first()
        if refund is None or (refund.lease_until and refund.lease_until > clock.now()):
            return None
        refund.lease_until = clock.now() + lease_length()
        refund.save(update_fields=["lease_until"])
    return refund_run(refund=refund, send=False, actor=actor)


def refunds_settle_open(*, organisation: Organisation | None = None,
                        actor: User | None = None) -> list[RefundOutcome]:
    """The job's step for refunds: every pending attempt whose lease ran out, asked about."""
    scope = Refund.objects.filter(Q(lease_until=None) | Q(lease_until__lte=clock.now()),
                                  state=Refund.State.PENDING)
    if organisation is not None:
        scope = scope.filter(payment__organisation=organisation)
    outcomes = []
    for refund_id in list(scope.values_list("pk", flat=True)):
        try:
            outcome = refund_settle(refund_id=refund_id, actor=actor)
        except Exception:  # one failing row never stops the others (SPEC "The books" 7)
            logger.exception("settling refund %s failed; retried next run", refund_id)
            continue
        if outcome is not None:
            outcomes.append(outcome)
    return outcomes


def refund_found(*, payment_id: int, made: gateway.ProcessorRefund,
                 actor: User | None = None) -> bool:
    """Record a refund the processor holds for the payment (a `charge.refunded` event), once,
    whichever comes first: Kanri's own attempt under its key, or a refund made at the
    processor's dashboard as a new Refund row. False when it was recorded already, or is not a
    refund that gives money back."""
    if made.status not in MADE:
        return False
    with transaction.atomic():
        payment = payment_lock(payment_id)
        if Refund.objects.filter(processor_refund_id=made.processor_id).exists():
            return False
        refund = (Refund.objects.select_for_update().filter(idempotency_key=made.kanri_key,
                                                            payment=payment).first()
                  if made.kanri_key else None)
        if refund is None:
            if payment.state != Payment.State.SUCCEEDED or made.amount > refundable(payment):
                logger.error("refund %s of %s cannot be recorded: payment is %s", made.amount,
                             payment.idempotency_key, payment.state)
                return False
            refund = Refund(payment=payment, amount=made.amount, purpose=Refund.Purpose.PROCESSOR,
                            idempotency_key=f"processor:{made.processor_id}")
        elif refund.state == Refund.State.SUCCEEDED:
            return False
        refund_apply(payment=payment, refund=refund, processor_refund_id=made.processor_id,
                     actor=actor)
    return True
