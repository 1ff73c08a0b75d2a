"""Charging a card in three steps, the one path every charge takes (plan changes today;
renewals, retries and licences reuse it):

1. **Commit the attempt.** In a short transaction the caller claims what is paid for and saves a
   Payment row: idempotency key, amount, the card, and a lease (`attempt_open`).
2. **Talk to the processor outside any transaction** (`attempt_run`): create the PaymentIntent
   unconfirmed and store its id at once (its own tiny transaction), then confirm it. Creating
   moves no money, so an intent whose id was never stored was never confirmed: no charge.
3. **Record the answer and apply** in a second short transaction (`_record_success` with the
   payment's `on_success`, or `_record_failure`).

An answer that is lost (timeout, dropped connection) leaves the attempt open with its intent id;
it is settled by asking the processor for that intent (`payments_settle_open`), never guessed:
on the next Pay, before any new quote, or by the sweep. An open attempt blocks new charges for
its organisation (a unique constraint), is re-sent only as the same intent, so with its own card.

Rule for a charge that succeeded but cannot be applied (the subscription changed under its
quote): it is refunded in full, in the refunds' own three steps (billing.services.refunds), and
the refund recorded on the Payment. A succeeded charge is
never reported as "nothing was charged".

Rule for an amount due below the processor's minimum (KANRI_MINIMUM_CHARGE: ¥50, $0.50, which
Stripe refuses to charge): it is never sent to the processor, and it is waived, not carried.
The quote is applied, or the renewal invoice paid, with no charge (`minimum_charge_waived`): the
invoice keeps its total with nothing paid, prints the waived amount (`Invoice.amount_waived`),
and the waiver is audited. The review page says "not charged" under "Due now". Carrying it to a
later invoice instead would charge a renewal more than the price shown for it; waiving gives
away less than the minimum, once per change.
"""
import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils.translation import gettext as _

from accounts.audit import audit_record
from accounts.models import Organisation, User
from billing import gateway
from billing.declines import decline_message
from billing.models import Invoice, Payment, PaymentMethod, Subscription
from billing.services import refunds
from billing.services.settlement import (
    quote_apply_paid,
    renewal_apply_paid,
    renewal_payment_failed,
)
from store import clock
from store.money import minimum_charge

logger = logging.getLogger(__name__)

OPEN_STATES = list(Payment.OPEN)


@dataclass(frozen=True)
class Outcome:
    """What became of an attempt, as far as anyone can know right now."""

    payment: Payment
    # succeeded | failed | refunded | unknown (asked, no answer) | busy (another request is
    # talking to the processor about it) | unrecorded (charged; recording failed, will retry)
    kind: str
    message: str = ""

    @property
    def settled(self) -> bool:
        return self.kind in {"succeeded", "failed", "refunded"}


def unknown_outcome_message() -> str:
    """Said whenever the processor did not answer about a charge (translated when read)."""
    return _("The payment service did not tell us whether your card was charged. We are asking "
             "it again; the change is applied as soon as it answers, and you will not be "
             "charged twice.")


def lease_length() -> dt.timedelta:
    """Long enough for create + confirm to time out, so a live request is never overtaken."""
    return dt.timedelta(seconds=2 * settings.STRIPE_TIMEOUT_SECONDS + 10)


def attempt_open(*, organisation: Organisation, key: str, amount, method: PaymentMethod,
                 **paid_for) -> tuple[Payment, uuid.UUID]:
    """Step 1: save the attempt with its key, amount and card, leased to the caller. Call inside
    the caller's transaction, holding the subscription's row lock."""
    token = uuid.uuid4()
    payment = Payment.objects.create(
        organisation=organisation, idempotency_key=key, amount=amount,
        card_processor_id=method.processor_id, card_brand=method.brand,
        card_last4=method.last4, lease_token=token, lease_until=clock.now() + lease_length(),
        **paid_for)
    return payment, token


def attempt_take_over(*, payment: Payment) -> uuid.UUID | None:
    """Lease an open attempt whose lease ran out (its request died or gave up); None while a
    request still holds it. Call inside a transaction that locked the payment row."""
    if payment.lease_until and payment.lease_until > clock.now():
        return None
    token = uuid.uuid4()
    payment.lease_token, payment.lease_until = token, clock.now() + lease_length()
    payment.save(update_fields=["lease_token", "lease_until"])
    return token


def _release(payment: Payment, token: uuid.UUID) -> None:
    """Let the next request (or the sweep) ask the processor at once."""
    try:
        Payment.objects.filter(pk=payment.pk, lease_token=token).update(lease_until=clock.now())
    except DatabaseError:
        logger.exception("could not release the lease of %s; it runs out by itself",
                         payment.idempotency_key)


def attempt_run(*, payment: Payment, token: uuid.UUID, confirm: bool,
                actor: User | None, customer_id: str = "") -> Outcome:
    """Steps 2 and 3 for a leased attempt. `confirm` False settles without charging: an intent
    not yet confirmed is cancelled instead (the sweep, or a person who moved on).
    `customer_id`: the processor customer the caller read when it committed the attempt (read
    here when not given); only a new intent needs it."""
    try:
        if payment.processor_id:
            intent = gateway.intent_retrieve(intent_id=payment.processor_id)
        elif not confirm:
            return _record_failure(payment, token, code="not_sent", actor=actor, reason=_(
                "The payment was never confirmed with the payment service: nothing was "
                "charged."))
        else:
            customer_id = customer_id or (
                Subscription.objects.filter(organisation_id=payment.organisation_id)
                .values_list("processor_customer_id", flat=True).get())
            intent = gateway.intent_create(
                customer_id=customer_id, payment_method_id=payment.card_processor_id,
                amount=payment.amount, idempotency_key=payment.idempotency_key)
            stored = Payment.objects.filter(pk=payment.pk, lease_token=token,
                                            processor_id="").update(processor_id=intent.processor_id)
            if not stored:  # another request took the attempt over: it decides, not us
                return Outcome(payment, "busy")
            payment.processor_id = intent.processor_id
        if intent.status == "requires_confirmation":
            if confirm:
                intent = gateway.intent_confirm(intent_id=intent.processor_id,
                                                idempotency_key=payment.idempotency_key)
            else:
                intent = gateway.intent_cancel(intent_id=intent.processor_id)
        if intent.status == "requires_action":
            # Kanri charges saved cards without the customer's browser, so it cannot
            # authenticate: cancel, so the intent can never charge later, and say why.
            intent = gateway.intent_cancel(intent_id=intent.processor_id)
            intent = gateway.Intent(**{**intent.__dict__,
                                       "failure_code": "authentication_required"})
    except gateway.GatewayUnavailable as error:
        logger.warning("processor silent about %s: %s", payment.idempotency_key, error)
        if not payment.processor_id:
            # The intent was never confirmed (its id never reached us): no money moved.
            return _record_failure(payment, token, code="processor_unavailable", actor=actor,
                                   reason=_("The payment service did not answer: nothing was "
                                            "charged. Try again in a minute."))
        return _unknown(payment, token)
    except gateway.GatewayError as error:
        if payment.processor_id:
            # The intent exists and may have charged (e.g. a confirm refused because another
            # request confirmed it first): only the intent itself can say what happened.
            logger.warning("processor refused a step of %s (%s); asking for the intent",
                           payment.idempotency_key, error)
            return _settle_by_asking(payment, token, actor)
        if isinstance(error, gateway.CardRefused):
            return _record_failure(payment, token, code=error.code or "card_declined",
                                   actor=actor, reason=decline_message(error.code))
        if isinstance(error, gateway.ResourceMissing):
            return _record_failure(payment, token, code="processor_customer_missing",
                                   actor=actor, reason=_(
                                       "The payment service no longer knows your card. Add "
                                       "your card again; nothing was charged."))
        logger.error("processor refused %s: %s", payment.idempotency_key, error)
        return _record_failure(payment, token, code="processor_error", actor=actor, reason=_(
            "The payment service refused the request: nothing was charged. Try again later or "
            "contact support."))
    return _record_intent(payment, token, intent, actor)


def _unknown(payment: Payment, token: uuid.UUID) -> Outcome:
    _release(payment, token)
    return Outcome(payment, "unknown", unknown_outcome_message())


def _settle_by_asking(payment: Payment, token: uuid.UUID, actor: User | None) -> Outcome:
    try:
        intent = gateway.intent_retrieve(intent_id=payment.processor_id)
    except gateway.GatewayError:
        return _unknown(payment, token)
    if intent.status in {"requires_confirmation", "requires_action"}:
        return _unknown(payment, token)  # the next settlement cancels or confirms it
    return _record_intent(payment, token, intent, actor)


def _record_intent(payment: Payment, token: uuid.UUID, intent: gateway.Intent,
                   actor: User | None) -> Outcome:
    if intent.status == "succeeded":
        try:
            return _record_success(payment, actor)
        except Exception:
            # The card was charged; recording it failed. The attempt stays open with its
            # intent id, and the next request or the sweep records it by asking again.
            logger.exception("charged but not recorded: %s (%s)", payment.idempotency_key,
                             intent.processor_id)
            _release(payment, token)
            return Outcome(payment, "unrecorded", _(
                "Your card was charged (payment %(id)s), but we could not finish recording it. "
                "It is completed automatically within minutes; you will not be charged again.")
                % {"id": intent.processor_id})
    if intent.status == "processing":
        Payment.objects.filter(pk=payment.pk).update(state=Payment.State.PROCESSING)
        _release(payment, token)
        return Outcome(payment, "unknown", _(
            "Your card issuer is still processing the payment. The change is applied as soon "
            "as it is confirmed."))
    code = intent.failure_code or ("canceled" if intent.status == "canceled" else "card_declined")
    if intent.status == "canceled" and not intent.failure_code:
        reason = _("The payment was cancelled before it charged: nothing was charged.")
    else:
        reason = decline_message(code)
    return _record_failure(payment, token, code=code, reason=reason, actor=actor)


@transaction.atomic
def _record_failure(payment: Payment, token: uuid.UUID, *, code: str, reason: str,
                    actor: User | None) -> Outcome:
    """Step 3 for a refusal: the attempt is failed; for a renewal, dunning moves on."""
    subscription = (Subscription.objects.select_for_update(of=("self",))
                    .select_related("organisation", "open_invoice")
                    .get(organisation_id=payment.organisation_id))
    payment = Payment.objects.select_for_update().get(pk=payment.pk)
    if not payment.is_open:
        return Outcome(payment, payment.state)
    payment.state, payment.failure_code = Payment.State.FAILED, code[:60]
    payment.failure_reason, payment.settled_at = str(reason)[:300], clock.now()
    payment.lease_until = None
    payment.save(update_fields=["state", "failure_code", "failure_reason", "settled_at",
                                "lease_until"])
    audit_record(organisation=payment.organisation, actor=actor, action="payment.failed",
                 target=payment, after={"code": code, "amount": str(payment.amount),
                                        "processor_id": payment.processor_id})
    if payment.quote_id is None and payment.invoice_id is not None:
        renewal_payment_failed(subscription=subscription, payment=payment)
    return Outcome(payment, "failed", str(reason))


def _record_success(payment: Payment, actor: User | None) -> Outcome:
    """Step 3 for a charge: record it and apply what it paid for, in one short transaction.
    If it cannot be applied, refund it (outside the transaction) and record the refund."""
    with transaction.atomic():
        # Joined: only the organisation, which never changes (see payments._claim's lock).
        subscription = (Subscription.objects.select_for_update(of=("self",))
                        .select_related("organisation")
                        .get(organisation_id=payment.organisation_id))
        payment = Payment.objects.select_for_update().get(pk=payment.pk)
        if not payment.is_open:  # another request recorded it first
            return Outcome(payment, payment.state)
        payment.state, payment.settled_at, payment.lease_until = (
            Payment.State.SUCCEEDED, clock.now(), None)
        payment.save(update_fields=["state", "settled_at", "lease_until"])
        if payment.quote_id is not None:
            applied = quote_apply_paid(payment=payment, subscription=subscription, actor=actor)
        else:
            invoice = Invoice.objects.select_for_update().get(pk=payment.invoice_id)
            applied = renewal_apply_paid(subscription=subscription, invoice=invoice,
                                         payment=payment)
    if applied:
        return Outcome(payment, "succeeded")
    return payment_refund_unapplied(payment=payment)


def payment_refund_unapplied(*, payment: Payment) -> Outcome:
    """Refund a charge that succeeded but could not be applied (the documented rule), in the
    three steps of billing.services.refunds: an answer that is lost, or a record that fails,
    is settled by the job asking the processor, never by refunding again."""
    refunded = refunds.refund_unapplied(payment_id=payment.pk)
    payment.refresh_from_db()
    if refunded is None or refunded.kind == "succeeded":
        return Outcome(payment, "refunded", _(
            "Your subscription changed while this payment was made, so the change could not be "
            "applied: the payment %(id)s was refunded in full.") % {"id": payment.processor_id})
    logger.warning("refund of %s is %s; the settle job completes it", payment.idempotency_key,
                   refunded.kind)
    return Outcome(payment, "unrecorded", _(
        "Your card was charged (payment %(id)s) for a change that could no longer be "
        "applied. It is being refunded in full.") % {"id": payment.processor_id})


def payment_settle(*, payment_id: int, actor: User | None = None) -> Outcome | None:
    """Settle one open attempt whose lease ran out, by asking the processor for its intent
    (an unconfirmed one is cancelled). None when it is not open, or a request holds it now.
    The sweep's step for each attempt, and a payment webhook's."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update(skip_locked=True).filter(
            pk=payment_id, state__in=OPEN_STATES).first()
        token = attempt_take_over(payment=payment) if payment else None
    if not token:
        return None
    return attempt_run(payment=payment, token=token, confirm=False, actor=actor)


def minimum_charge_waived(*, invoice: Invoice, actor: User | None) -> None:
    """Audit an invoice paid without the charge its amount due was too small for (the rule
    above). Call in the transaction that marked it paid; nothing waived, nothing written."""
    waived = invoice.amount_waived
    if waived.amount > 0:
        audit_record(organisation=invoice.organisation, actor=actor,
                     action="invoice.minimum_charge_waived", target=invoice,
                     after={"waived": str(waived), "minimum": str(minimum_charge(
                         invoice.currency))},
                     reason="amount due below the processor's minimum charge")


def payments_settle_open(*, organisation: Organisation | None = None,
                         actor: User | None = None) -> list[Outcome]:
    """Settle every open attempt whose lease ran out, by asking the processor; unconfirmed
    intents are cancelled, succeeded ones recorded and applied, unapplied charges refunded.
    Runs before a new quote, before Pay, and as the sweep (organisation None)."""
    # Refund attempts whose answer was lost are settled first (asked, never re-sent), so an
    # unapplied charge's own attempt found at the processor is recorded, not refunded again.
    refunds.refunds_settle_open(organisation=organisation, actor=actor)
    scope = Payment.objects.all()
    if organisation is not None:
        scope = scope.filter(organisation=organisation)
    is_open = Q(state__in=OPEN_STATES)
    is_unapplied = Q(Q(invoice=None) | ~Q(invoice__state="paid"),
                     state=Payment.State.SUCCEEDED, refund_id="")
    found = list(scope.filter(is_open | is_unapplied).values_list("pk", "state"))
    if not found:  # the usual case, before every quote and every Pay: one query
        return []
    outcomes = []
    for payment_id in [pk for pk, state in found if state in OPEN_STATES]:
        outcome = payment_settle(payment_id=payment_id, actor=actor)
        if outcome is not None:
            outcomes.append(outcome)
    # Asked again, not taken from `found`: settling above may have left a charge unapplied.
    for payment in scope.filter(is_unapplied):
        outcomes.append(payment_refund_unapplied(payment=payment))
    return outcomes


def attempt_wait(*, payment: Payment, seconds: float) -> Payment:
    """Wait (polling the database, no lock held) while another request settles an attempt."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        payment.refresh_from_db()
        if not payment.is_open or (payment.lease_until or clock.now()) <= clock.now():
            break
        time.sleep(0.05)
    return payment
