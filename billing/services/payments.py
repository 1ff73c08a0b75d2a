"""Paying a quote, and saving the card the browser confirmed with the processor.

A quote is paid under its row lock, held across the processor call: concurrent or repeated Pay
submissions of one quote wait, then find it paid and show the same invoice. Each attempt is a
Payment row whose idempotency key (`quote:<id>:attempt:<n>`) is saved before the call; an attempt
whose outcome is unknown (processor unreachable) stays pending and the next Pay re-sends it with
the same key, so the processor can never charge twice for it.
"""
import logging
from dataclasses import dataclass

from django.db import transaction
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from accounts.audit import audit_record
from accounts.models import Organisation, User
from billing import gateway
from billing.errors import BillingError
from billing.models import Invoice, Payment, PaymentMethod, Quote, Status, Subscription
from billing.money import format_money, zero
from billing.services.invoices import invoice_from_quote
from billing.services.quotes import current_price
from billing.services.subscriptions import (
    subscription_lock_for,
    subscription_save,
    subscription_snapshot,
    subscription_transition,
)
from store import clock

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PayResult:
    invoice: Invoice | None
    failure: str = ""
    retry: bool = False  # the processor did not answer: the same Pay may simply be tried again


def processor_customer_ensure(*, subscription: Subscription) -> str:
    """The processor's customer for this organisation, created once (keyed by the org's id)."""
    if not subscription.processor_customer_id:
        organisation = subscription.organisation
        admin = organisation.users.filter(role="admin", is_active=True).order_by("pk").first()
        try:
            subscription.processor_customer_id = gateway.customer_create(
                organisation_id=organisation.pk, name=organisation.name,
                email=admin.email if admin else "")
        except gateway.GatewayUnavailable as error:
            raise BillingError(_("The payment service is not reachable right now. Try again in "
                                 "a minute; nothing was charged.")) from error
        subscription.save(update_fields=["processor_customer_id"])
    return subscription.processor_customer_id


@transaction.atomic
def card_setup_secret(*, organisation: Organisation) -> str:
    """A SetupIntent client secret for the processor's card form in the browser."""
    subscription = subscription_lock_for(organisation=organisation)
    customer_id = processor_customer_ensure(subscription=subscription)
    try:
        return gateway.setup_intent_create(customer_id=customer_id)
    except gateway.GatewayUnavailable as error:
        raise BillingError(_("The payment service is not reachable right now. Try again in a "
                             "minute.")) from error


@transaction.atomic
def card_save_default(*, organisation: Organisation, payment_method_id: str,
                      acting_user: User) -> PaymentMethod:
    """Store what may be stored of a card the processor confirmed, and make it the default."""
    subscription = subscription_lock_for(organisation=organisation)
    customer_id = processor_customer_ensure(subscription=subscription)
    try:
        card = gateway.card_attach(payment_method_id=payment_method_id, customer_id=customer_id)
    except gateway.CardRefused as refused:
        raise BillingError(str(refused)) from refused
    except gateway.GatewayUnavailable as error:
        raise BillingError(_("The payment service is not reachable right now. Try again in a "
                             "minute.")) from error
    method, _created = PaymentMethod.objects.update_or_create(
        processor_id=card.processor_id, organisation=organisation,
        defaults={"brand": card.brand, "last4": card.last4, "exp_month": card.exp_month,
                  "exp_year": card.exp_year})
    subscription.default_payment_method = method
    subscription.save(update_fields=["default_payment_method"])
    audit_record(organisation=organisation, actor=acting_user, action="card.added",
                 target=method, after={"brand": card.brand, "last4": card.last4})
    return method


def _refuse_if_stale(*, quote: Quote, subscription: Subscription, resending: bool) -> None:
    """Refuse a quote whose price may no longer be right. An attempt whose outcome is unknown
    is re-sent even after the quote expired or prices changed: it may have been charged at the
    quoted amount already, and only re-sending it with its key tells."""
    if subscription.version != quote.subscription_version:
        raise BillingError(_("Your subscription changed after this quote was made. Review the "
                             "change again: nothing was charged."))
    if resending:
        return
    if quote.is_expired:
        raise BillingError(_("This quote expired at %(time)s. Review the change again: nothing "
                             "was charged.") % {"time": clock.localtime_label(quote.expires_at)})
    for line in quote.lines.filter(kind="charge").select_related("price"):
        now_price = current_price(plan=line.plan, addon=line.addon, cycle=quote.cycle,
                                  currency=quote.currency)
        if now_price != line.price:
            raise BillingError(_("Prices changed after this quote was made. Review the change "
                                 "again: nothing was charged."))


def _attempt(*, quote: Quote, pending: Payment | None, method: PaymentMethod) -> Payment:
    """The pending attempt to re-send, or a new one with its key saved before any call."""
    if pending:
        return pending
    number = quote.payments.count() + 1
    return Payment.objects.create(
        organisation=quote.organisation, quote=quote, amount=quote.amount_due,
        idempotency_key=f"quote:{quote.pk}:attempt:{number}", card_brand=method.brand,
        card_last4=method.last4)


@transaction.atomic
def quote_pay(*, organisation: Organisation, quote_id, acting_user: User) -> PayResult:
    """Pay a quote and apply its change, or refuse with the reason; never twice."""
    quote = (Quote.objects.select_for_update().select_related("plan", "from_plan")
             .filter(organisation=organisation, pk=quote_id).first())
    if quote is None:
        raise Quote.DoesNotExist
    if quote.state == Quote.State.PAID:
        return PayResult(invoice=quote.invoice)
    subscription = subscription_lock_for(organisation=organisation)
    pending = quote.payments.filter(state=Payment.State.PENDING).first()
    _refuse_if_stale(quote=quote, subscription=subscription, resending=pending is not None)
    payment = None
    if quote.amount_due > zero(quote.currency):
        method = subscription.default_payment_method
        if method is None:
            raise BillingError(_("Add a card to pay %(amount)s.")
                               % {"amount": format_money(quote.amount_due, get_language())})
        payment = _attempt(quote=quote, pending=pending, method=method)
        try:
            result = gateway.charge(
                customer_id=subscription.processor_customer_id,
                payment_method_id=method.processor_id, amount=payment.amount,
                idempotency_key=payment.idempotency_key)
        except gateway.GatewayUnavailable:
            logger.warning("processor unavailable for %s", payment.idempotency_key)
            return PayResult(invoice=None, retry=True, failure=_(
                "The payment service did not answer. Try again: you will not be charged twice."))
        payment.processor_id = result.processor_id
        if not result.succeeded:
            payment.state = Payment.State.FAILED
            payment.failure_reason = result.failure_reason
            payment.save(update_fields=["processor_id", "state", "failure_reason"])
            audit_record(organisation=organisation, actor=acting_user, action="payment.failed",
                         target=payment, after={"reason": result.failure_reason,
                                                "amount": str(payment.amount)})
            return PayResult(invoice=None, failure=result.failure_reason)
        payment.state = Payment.State.SUCCEEDED
        payment.save(update_fields=["processor_id", "state"])
    invoice = _apply(quote=quote, subscription=subscription, payment=payment,
                     acting_user=acting_user)
    return PayResult(invoice=invoice)


def _apply(*, quote: Quote, subscription: Subscription, payment: Payment | None,
           acting_user: User) -> Invoice:
    before = subscription_snapshot(subscription)
    invoice = invoice_from_quote(quote=quote, subscription=subscription,
                                 amount_paid=payment.amount if payment else zero(quote.currency))
    if payment:
        payment.invoice = invoice
        payment.save(update_fields=["invoice"])
    prices = {}
    for line in quote.lines.filter(kind="charge").select_related("price", "addon"):
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
    subscription.trial_ends_at = None
    target = Status.FREE if quote.plan.is_free else Status.ACTIVE
    subscription_transition(subscription=subscription, to=target, actor=acting_user,
                            reason=f"quote {quote.pk} paid, invoice {invoice.number}")
    subscription_save(subscription)
    quote.state = Quote.State.PAID
    quote.save(update_fields=["state"])
    audit_record(organisation=quote.organisation, actor=acting_user,
                 action="subscription.changed", target=subscription, before=before,
                 after={**subscription_snapshot(subscription), "invoice": invoice.number})
    return invoice
