"""Paying a quote through the three-step charge (billing.services.charging), and the processor
customer that cards hang on (the cards themselves: billing.services.cards).

Pay claims the quote in a short transaction (subscription row first, then the quote: the one
lock order of billing), commits the attempt, calls the processor with no transaction open, and
records the answer in a second short transaction. A second Pay of the same quote while the
first talks to the processor waits for it and shows the same outcome; one that comes after a
lost answer settles the attempt by asking the processor for its intent.
"""
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from accounts.models import Organisation, User
from billing import gateway
from billing.errors import (
    BillingError,
    NoPaymentMethod,
    PaymentPending,
    ProcessorCustomerMissing,
    ProcessorUnavailable,
    StaleQuote,
)
from billing.models import Invoice, Payment, PaymentMethod, Quote, Subscription
from billing.pricing import current_price
from billing.services import charging
from billing.services.licences import licences_cover_active_users
from billing.services.subscriptions import subscription_apply_quote
from store import clock
from store.money import format_money, zero

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PayResult:
    invoice: Invoice | None
    failure: str = ""
    code: str = ""
    # The outcome is not known yet (processor silent, or another request is paying): the
    # customer is told so, never "nothing was charged".
    pending: bool = False
    charged: bool = False  # money was taken, whatever else happened


def _processor_unavailable(error: Exception) -> ProcessorUnavailable:
    return ProcessorUnavailable(_("The payment service is not reachable right now. Try again "
                                  "in a minute; nothing was charged."))


def processor_customer_ensure(*, organisation: Organisation) -> str:
    """The processor's customer for this organisation, created once (keyed by the org's id).
    Talks to the processor with no transaction open, then stores the id if still unset."""
    subscription = Subscription.objects.get(organisation=organisation)
    if subscription.processor_customer_id:
        return subscription.processor_customer_id
    admin = organisation.users.filter(role="admin", is_active=True).order_by("pk").first()
    try:
        customer_id = gateway.customer_create(organisation_id=organisation.pk,
                                              name=organisation.name,
                                              email=admin.email if admin else "")
    except gateway.GatewayUnavailable as error:
        raise _processor_unavailable(error) from error
    except gateway.GatewayError as error:
        raise BillingError(_("The payment service refused to set up your account: %(why)s")
                           % {"why": error}, code="processor_error") from error
    Subscription.objects.filter(organisation=organisation, processor_customer_id="").update(
        processor_customer_id=customer_id)
    return Subscription.objects.values_list("processor_customer_id", flat=True).get(
        organisation=organisation)


def card_setup_secret(*, organisation: Organisation) -> str:
    """A SetupIntent client secret for the processor's card form in the browser."""
    customer_id = processor_customer_ensure(organisation=organisation)
    try:
        return gateway.setup_intent_create(customer_id=customer_id)
    except gateway.ResourceMissing as error:
        _forget_customer(organisation, customer_id)
        raise ProcessorCustomerMissing(_("The payment service no longer knew your account; it "
                                         "was set up again. Reload the page.")) from error
    except gateway.GatewayUnavailable as error:
        raise _processor_unavailable(error) from error
    except gateway.GatewayError as error:
        raise BillingError(str(error), code="processor_error") from error


def _forget_customer(organisation: Organisation, customer_id: str) -> None:
    """The processor lost the customer: forget it and its cards, so the next card starts over."""
    with transaction.atomic():
        subscription = Subscription.objects.select_for_update().get(organisation=organisation)
        if subscription.processor_customer_id == customer_id:
            subscription.processor_customer_id = ""
            subscription.default_payment_method = None
            subscription.save(update_fields=["processor_customer_id", "default_payment_method"])
            PaymentMethod.objects.filter(organisation=organisation).delete()


def _refuse_if_stale(*, quote: Quote, subscription: Subscription) -> None:
    """Refuse a quote whose price may no longer be right. Only called when no attempt of this
    quote has charged or may have charged, so "nothing was charged" is true."""
    if subscription.version != quote.subscription_version:
        raise StaleQuote(_("Your subscription changed after this quote was made. Review the "
                           "change again: nothing was charged."), code="quote_changed")
    if quote.is_expired:
        raise StaleQuote(_("This quote expired at %(time)s. Review the change again: nothing "
                           "was charged.") % {"time": clock.localtime_label(quote.expires_at)},
                         code="quote_expired")
    # The new configuration's lines end with the quote's period; grace days billed with it
    # keep the unpaid renewal's price, which need not be the price sold now.
    for line in (quote.lines.filter(kind="charge", period_end=quote.period_end)
                 .select_related("price", "plan", "addon")):
        now_price = current_price(plan=line.plan, addon=line.addon, cycle=quote.cycle,
                                  currency=quote.currency)
        if now_price != line.price:
            raise StaleQuote(_("Prices changed after this quote was made. Review the change "
                               "again: nothing was charged."), code="prices_changed")
    if short := licences_cover_active_users(organisation=quote.organisation,
                                            regular=quote.regular_licences,
                                            team=quote.team_licences):
        raise StaleQuote(_("Users were added after this quote was made: %(why)s Review the "
                           "change again: nothing was charged.") % {"why": short},
                         code="licences_below_active_users")


@dataclass(frozen=True)
class _Claim:
    invoice: Invoice | None = None
    payment: Payment | None = None
    token: object = None  # the lease, when this request may talk to the processor
    customer_id: str = ""  # the processor customer, read with the card the attempt charges


@transaction.atomic
def _claim(*, organisation: Organisation, quote_id, acting_user: User) -> _Claim:
    """Step 1: lock, check, and either finish (paid already, nothing due) or commit an
    attempt. No network call happens here."""
    # The lock joins nothing a concurrent payment changes: a request that waits for this row
    # while another one's payment moves it to a new plan or card would have the row re-checked
    # against the old plan or card row, no longer match, and find no subscription at all
    # (PostgreSQL re-evaluates a locked row's joins with the rows it read before waiting).
    subscription = Subscription.objects.select_for_update().get(organisation=organisation)
    quote = (Quote.objects.select_for_update(of=("self",)).select_related("plan", "from_plan")
             .filter(organisation=organisation, pk=quote_id).first())
    if quote is None:
        raise Quote.DoesNotExist
    quote.organisation = subscription.organisation = organisation  # not loaded again below
    if quote.state == Quote.State.PAID:
        return _Claim(invoice=quote.invoice)
    open_payment = Payment.objects.select_for_update().open_for(organisation.pk).first()
    if open_payment is not None:
        if open_payment.quote_id != quote.pk:
            raise PaymentPending(_(
                "A payment of %(amount)s for another change is still being confirmed with the "
                "payment service. Try again in a minute.")
                % {"amount": format_money(open_payment.amount, get_language())})
        token = charging.attempt_take_over(payment=open_payment)
        return _Claim(payment=open_payment, token=token,
                      customer_id=subscription.processor_customer_id)
    # The quote's earlier attempts, all failed unless one charged; they also number this one.
    attempts = list(quote.payments.order_by("created_at").values_list("state", "processor_id"))
    for state, processor_id in attempts:
        if state in (Payment.State.SUCCEEDED, Payment.State.REFUNDED):
            raise BillingError(_("Payment %(id)s for this quote was taken but the change could "
                                 "not be applied, so it is refunded in full. Review the change "
                                 "again.") % {"id": processor_id}, code="payment_refunded")
    _refuse_if_stale(quote=quote, subscription=subscription)
    if quote.amount_due <= zero(quote.currency) or quote.below_minimum_charge:
        invoice = subscription_apply_quote(quote=quote, subscription=subscription, payment=None,
                                           actor=acting_user)
        charging.minimum_charge_waived(invoice=invoice, actor=acting_user)
        return _Claim(invoice=invoice)
    method = subscription.default_payment_method
    if method is None or not subscription.processor_customer_id:
        raise NoPaymentMethod(_("Add a card to pay %(amount)s.")
                              % {"amount": format_money(quote.amount_due, get_language())})
    payment, token = charging.attempt_open(
        organisation=organisation, key=f"quote:{quote.pk}:attempt:{len(attempts) + 1}",
        amount=quote.amount_due, method=method, quote=quote)
    return _Claim(payment=payment, token=token, customer_id=subscription.processor_customer_id)


def quote_pay(*, organisation: Organisation, quote_id, acting_user: User) -> PayResult:
    """Pay a quote and apply its change, or say truthfully why not; never twice."""
    charging.payments_settle_open(organisation=organisation, actor=acting_user)
    claim = _claim(organisation=organisation, quote_id=quote_id, acting_user=acting_user)
    if claim.invoice is not None:
        return PayResult(invoice=claim.invoice)
    payment = claim.payment
    if claim.token is None:  # another request holds it: wait for its answer
        payment = charging.attempt_wait(payment=payment, seconds=settings.KANRI_PAY_WAIT_SECONDS)
        return _result_of(payment, charging.Outcome(payment, "busy", _(
            "This payment is being processed. This page shows the result in a moment; you "
            "will not be charged twice.")))
    outcome = charging.attempt_run(payment=payment, token=claim.token, confirm=True,
                                   actor=acting_user, customer_id=claim.customer_id)
    return _result_of(outcome.payment, outcome)


def _result_of(payment: Payment, outcome: charging.Outcome) -> PayResult:
    if not outcome.settled:  # a settled outcome's payment was just read and written under lock
        payment.refresh_from_db()
    if payment.state == Payment.State.SUCCEEDED and payment.invoice_id:
        return PayResult(invoice=payment.invoice, charged=True)
    if payment.state == Payment.State.FAILED:
        return PayResult(invoice=None, failure=payment.failure_reason,
                         code=payment.failure_code)
    if payment.state == Payment.State.REFUNDED:
        return PayResult(invoice=None, failure=outcome.message, code="payment_refunded",
                         charged=True)
    return PayResult(invoice=None, failure=outcome.message, code="payment_pending",
                     pending=True, charged=outcome.kind == "unrecorded")
