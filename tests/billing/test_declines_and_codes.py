"""Refusals carry a stable code (tests assert codes, people read messages): declines in the
user's language, cards that need authentication, a customer the processor lost, and every
stripe error type mapped so none escapes as a 500."""
import pytest
import stripe
from django.test import override_settings
from django.urls import reverse
from django.utils import translation

from billing import gateway
from billing.errors import PaymentPending, StaleQuote
from billing.models import Payment, Quote, Subscription
from billing.pricing import Change
from billing.services.payments import quote_pay
from billing.services.quotes import quote_create
from store import clock
from store.models import Plan
from tests.accounts.factories import AdminFactory
from tests.billing.helpers import DECLINING_CARD, _sandbox, card_on_file, processor_charges

pytestmark = pytest.mark.usefixtures("payment_sandbox")
NEEDS_AUTHENTICATION = "4000002760003184"


@pytest.fixture
def admin(db):
    return AdminFactory()


def _quote(admin, code="standard"):
    return quote_create(organisation=admin.organisation, acting_user=admin,
                        change=Change(Plan.objects.get(code=code), "monthly", 3, 0, 0))


def _pay(admin, quote):
    return quote_pay(organisation=admin.organisation, quote_id=quote.pk, acting_user=admin)


def test_a_decline_has_its_code_and_a_japanese_message(client, admin):
    card_on_file(organisation=admin.organisation, acting_user=admin, number=DECLINING_CARD)
    quote = _quote(admin)
    client.force_login(admin)

    response = client.post(reverse("billing:pay", args=[quote.pk]), HTTP_ACCEPT_LANGUAGE="ja")

    assert response.status_code == 402
    body = response.content.decode()
    assert 'data-code="card_declined"' in body
    assert "カードが拒否されました" in body and "Your card was declined" not in body
    payment = Payment.objects.get()
    assert (payment.state, payment.failure_code) == (Payment.State.FAILED, "card_declined")


def test_a_card_that_needs_authentication_is_cancelled_not_left_to_charge_later(admin):
    card_on_file(organisation=admin.organisation, acting_user=admin,
                 number=NEEDS_AUTHENTICATION)

    with translation.override("en"):
        result = _pay(admin, _quote(admin))

    assert (result.invoice, result.code) == (None, "authentication_required")
    assert "asks for authentication" in result.failure
    payment = Payment.objects.get()
    assert payment.state == Payment.State.FAILED
    [intent] = processor_charges(Subscription.objects.get(
        organisation=admin.organisation).processor_customer_id)
    assert (intent.id, intent.status) == (payment.processor_id, "canceled")


def test_a_customer_the_processor_lost_is_not_called_a_decline(admin):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    customer_id = Subscription.objects.get(organisation=admin.organisation).processor_customer_id
    _sandbox().v1.customers.delete(customer_id)

    with translation.override("en"):
        result = _pay(admin, _quote(admin))

    assert (result.invoice, result.code) == (None, "processor_customer_missing")
    assert "declined" not in result.failure and "nothing was charged" in result.failure


def test_an_expired_quote_is_refused_with_its_code_before_any_attempt(admin):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    quote = _quote(admin)

    with clock.travel(quote.expires_at), pytest.raises(StaleQuote) as refused:
        _pay(admin, quote)

    assert refused.value.code == "quote_expired"
    assert not Payment.objects.exists()


def test_a_quote_made_in_another_tab_waits_for_an_unsettled_payment(admin, closed_port_url):
    """Two reviews open; the first Pay's answer is unknown; the second is refused, not paid."""
    card_on_file(organisation=admin.organisation, acting_user=admin)
    first, second = _quote(admin), _quote(admin, "professional")
    Payment.objects.create(  # an attempt whose request died before it learned anything
        organisation=admin.organisation, quote=first, idempotency_key="quote:x:attempt:1",
        amount=first.amount_due, processor_id="pi_unknown_to_anyone",
        lease_until=clock.now())

    with override_settings(STRIPE_API_BASE=closed_port_url), pytest.raises(PaymentPending) as e:
        _pay(admin, second)

    assert e.value.code == "payment_pending"
    assert Quote.objects.get(pk=second.pk).state == Quote.State.OPEN
    assert Payment.objects.count() == 1


@pytest.fixture
def closed_port_url():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


ERRORS = [
    (stripe.APIConnectionError("down"), gateway.GatewayUnavailable),
    (stripe.APIError("boom", http_status=500), gateway.GatewayUnavailable),
    (stripe.RateLimitError("slow down", http_status=429), gateway.GatewayUnavailable),
    (stripe.CardError("declined", "card", "card_declined", http_status=402), gateway.CardRefused),
    (stripe.InvalidRequestError("No such customer", "customer", code="resource_missing",
                                http_status=404), gateway.ResourceMissing),
    (stripe.InvalidRequestError("bad amount", "amount", http_status=400), gateway.GatewayError),
    (stripe.IdempotencyError("key reused", http_status=400), gateway.GatewayError),
    (stripe.AuthenticationError("bad key", http_status=401), gateway.GatewayError),
    (stripe.PermissionError("not allowed", http_status=403), gateway.GatewayError),
    (stripe.StripeError("anything else"), gateway.GatewayError),
]


@pytest.mark.parametrize(("raised", "mapped"), ERRORS,
                         ids=[type(error).__name__ for error, _ in ERRORS])
def test_every_stripe_error_type_becomes_a_gateway_error(raised, mapped):
    """The SDK's own exception classes, raised where the SDK would raise them."""
    def call():
        raise raised

    with pytest.raises(mapped):
        gateway._call(call)


def test_a_card_refused_when_saved_is_explained_in_japanese(client, admin):
    method = _sandbox().v1.payment_methods.create(params={
        "type": "card", "card": {"number": "4000000000000002", "exp_month": 12,
                                 "exp_year": 2030, "cvc": "123"}})
    client.force_login(admin)

    response = client.post(reverse("billing:card_add"), {"payment_method": method.id},
                           HTTP_ACCEPT_LANGUAGE="ja")

    assert response.status_code == 400
    assert "カードが拒否されました" in response.json()["error"]
    assert not Subscription.objects.get(organisation=admin.organisation).default_payment_method
