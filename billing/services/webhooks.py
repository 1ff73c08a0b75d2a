"""What a processor event does to Kanri (billing.webhooks receives it): stored raw first, then
processed once, by one service per event type.

The processor's own record decides, not the event's copy, so an event that arrives twice, late
or out of order changes nothing after the first:
- A payment event settles its attempt, if still open, through charging's settle path, which
  retrieves the intent and is guarded by the attempt's state and lease (`payment_settle`).
- A card event re-reads the card at the processor and stores what it says now.
- A refund event lists the charge's refunds at the processor and records each one not yet
  recorded, once (billing.services.refunds), with its credit note when it refunds an invoice.

An event that cannot be decided now (another request is settling the attempt, the processor is
silent) is kept unprocessed and answered 503, so Stripe delivers it again; the settle sweep
resolves the attempt in any case.
"""
import logging
from dataclasses import dataclass

from django.db import transaction

from accounts.audit import audit_record
from billing import gateway
from billing.models import Payment, PaymentMethod, Subscription, WebhookEvent
from billing.services import charging, refunds
from billing.services.cards import card_forget
from store import clock

logger = logging.getLogger(__name__)
Outcome = WebhookEvent.Outcome


class Deferred(Exception):
    """The event cannot be decided yet; `str()` says why."""


@dataclass(frozen=True)
class Receipt:
    event: WebhookEvent
    status: int  # what to answer: 200; 503 or 500 to have the event delivered again


def webhook_receive(*, payload: bytes, signature: str) -> Receipt:
    """Verify a delivery, store it, and process it unless it was processed before. Raises
    gateway.SignatureInvalid, having written nothing."""
    verified = gateway.webhook_event_verify(payload=payload, signature=signature)
    event, _created = WebhookEvent.objects.get_or_create(
        event_id=verified.id, defaults={"type": verified.type, "payload": verified.payload})
    if event.processed_at is not None:
        return Receipt(event, 200)  # a repeat: it changes nothing
    handler = HANDLERS.get(verified.type)
    try:
        if handler is None:
            outcome, detail = Outcome.IGNORED, "Kanri does not act on this event type."
        else:
            outcome, detail = handler(verified.object)
    except Deferred as deferred:
        return Receipt(_record(event, Outcome.DEFERRED, str(deferred), processed=False), 503)
    except Exception as error:
        logger.exception("webhook %s (%s) failed", verified.id, verified.type)
        return Receipt(_record(event, Outcome.FAILED, repr(error), processed=False), 500)
    return Receipt(_record(event, outcome, detail, processed=True), 200)


def _record(event: WebhookEvent, outcome: str, detail: str, *, processed: bool) -> WebhookEvent:
    """Write what processing found, unless another delivery of the event finished first."""
    changes = {"outcome": outcome, "detail": detail[:2000]}
    if processed:
        changes["processed_at"] = clock.now()
    WebhookEvent.objects.filter(pk=event.pk, processed_at=None).update(**changes)
    event.refresh_from_db()
    return event


def webhook_payment_intent(intent: dict) -> tuple[str, str]:
    """payment_intent.succeeded / payment_intent.payment_failed: settle the attempt that made
    this intent, if it is still open, exactly as the sweep would, at once."""
    payment = Payment.objects.filter(processor_id=intent["id"]).first()
    if payment is None:
        return Outcome.UNCHANGED, f"No payment attempt made intent {intent['id']}."
    if not payment.is_open:
        return Outcome.UNCHANGED, f"Payment {payment.idempotency_key} is {payment.state} already."
    outcome = charging.payment_settle(payment_id=payment.pk)
    if outcome is None:
        payment.refresh_from_db()
        if not payment.is_open:
            return Outcome.UNCHANGED, (f"Payment {payment.idempotency_key} was settled meanwhile: "
                                       f"{payment.state}.")
        raise Deferred(f"A request is settling payment {payment.idempotency_key} right now.")
    if not outcome.settled:
        raise Deferred(f"Payment {payment.idempotency_key} is still {outcome.kind}.")
    return Outcome.APPLIED, f"Payment {payment.idempotency_key} {outcome.kind}."


def webhook_charge_refunded(charge: dict) -> tuple[str, str]:
    """charge.refunded: a refund made at the processor (its dashboard, or Kanri's own refund
    told back), in full or in part. The processor's list of the charge's refunds decides, not
    the event's copy: each refund not yet recorded is recorded once through the refunds' one
    record (billing.services.refunds.refund_found: Kanri's own attempt under its key, or a new
    Refund row with its credit note), whichever of the event and the settle job comes first."""
    payment = Payment.objects.filter(processor_id=charge.get("payment_intent") or "-").first()
    if payment is None:
        return Outcome.UNCHANGED, f"No payment attempt made charge {charge.get('id')}."
    if payment.is_open:  # a refund proves the charge happened: settle the attempt first
        webhook_payment_intent({"id": payment.processor_id})
    try:
        made = gateway.refunds_list(intent_id=payment.processor_id)
    except gateway.GatewayUnavailable as error:
        raise Deferred(f"The payment service did not answer: {error}") from error
    recorded = [found.processor_id for found in made
                if refunds.refund_found(payment_id=payment.pk, made=found)]
    payment.refresh_from_db()
    if not recorded:
        return Outcome.UNCHANGED, (f"Every refund of payment {payment.idempotency_key} is "
                                   f"recorded already; it is {payment.state}.")
    return Outcome.APPLIED, (f"Payment {payment.idempotency_key}: recorded refund(s) "
                             f"{', '.join(recorded)}; it is {payment.state}.")


def _card_facts(method: PaymentMethod) -> dict:
    return {"brand": method.brand, "last4": method.last4, "exp_month": method.exp_month,
            "exp_year": method.exp_year}


def webhook_payment_method(method: dict) -> tuple[str, str]:
    """payment_method.updated / payment_method.detached: store what the processor says of the
    card now (brand, last 4, expiry); a card it no longer knows, or no longer holds for the
    organisation's customer, is forgotten, and the default moves to the newest other card."""
    stored = PaymentMethod.objects.filter(processor_id=method["id"]).first()
    if stored is None:
        return Outcome.UNCHANGED, f"No card on file is {method['id']}."
    try:
        card = gateway.card_retrieve(payment_method_id=stored.processor_id)
    except gateway.GatewayUnavailable as error:
        raise Deferred(f"The payment service did not answer: {error}") from error
    with transaction.atomic():
        subscription = Subscription.objects.select_for_update().get(
            organisation_id=stored.organisation_id)
        stored = PaymentMethod.objects.filter(pk=stored.pk).first()
        if stored is None:
            return Outcome.UNCHANGED, f"Card {method['id']} was forgotten meanwhile."
        before = _card_facts(stored)
        if card is None or card.customer_id != subscription.processor_customer_id:
            card_forget(subscription=subscription, method=stored, actor=None,
                        reason="detached at the payment service")
            return Outcome.APPLIED, f"Card {method['id']} forgotten: detached at the processor."
        after = {"brand": card.brand, "last4": card.last4, "exp_month": card.exp_month,
                 "exp_year": card.exp_year}
        if after == before:
            return Outcome.UNCHANGED, f"Card {method['id']} is stored as the processor has it."
        PaymentMethod.objects.filter(pk=stored.pk).update(**after)
        audit_record(organisation=subscription.organisation, actor=None, action="card.updated",
                     target=stored, before=before, after=after,
                     reason="updated at the payment service")
    return Outcome.APPLIED, f"Card {method['id']} updated."


HANDLERS = {
    "payment_intent.succeeded": webhook_payment_intent,
    "payment_intent.payment_failed": webhook_payment_intent,
    "charge.refunded": webhook_charge_refunded,
    "payment_method.updated": webhook_payment_method,
    "payment_method.detached": webhook_payment_method,
}
