"""The payment processor client: the only module that imports `stripe`.

Kanri owns plans, proration, invoices and the state machine; the processor only keeps customers
and cards and moves money. Every charge carries an idempotency key made from Kanri's own row.
Local runs and tests point `STRIPE_API_BASE` at localstripe; production at Stripe.
"""
from dataclasses import dataclass

import stripe
from django.conf import settings
from djmoney.money import Money

from billing.money import to_minor_units


class GatewayUnavailable(Exception):
    """The processor could not be reached or answered with a server error: nothing is known
    about the outcome, so the caller keeps the attempt pending and retries with the same key."""


class CardRefused(Exception):
    """The processor refused the card; `str()` is its reason, fit to show."""


@dataclass(frozen=True)
class Card:
    processor_id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    customer_id: str | None


@dataclass(frozen=True)
class Charge:
    succeeded: bool
    processor_id: str
    failure_reason: str = ""


def _client() -> stripe.StripeClient:
    # No automatic retries: a retry is Kanri's decision, made with the same idempotency key.
    return stripe.StripeClient(
        settings.STRIPE_API_KEY,
        base_addresses={"api": settings.STRIPE_API_BASE},
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=settings.STRIPE_TIMEOUT_SECONDS),
    )


def _call(function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError) as error:
        raise GatewayUnavailable(str(error)) from error
    except stripe.CardError as error:
        raise CardRefused(error.user_message or str(error)) from error


def browser_script_url() -> str:
    """Where the page loads Stripe.js from: Stripe's own, or the sandbox's stand-in."""
    if settings.STRIPE_JS_URL:
        return settings.STRIPE_JS_URL
    if "api.stripe.com" in settings.STRIPE_API_BASE:
        return "https://js.stripe.com/v3/"
    return f"{settings.STRIPE_API_BASE.rstrip('/')}/js.stripe.com/v3/"


def customer_create(*, organisation_id: int, name: str, email: str) -> str:
    customer = _call(_client().v1.customers.create,
                     params={"name": name, "email": email,
                             "metadata": {"kanri_organisation": str(organisation_id)}},
                     options={"idempotency_key": f"organisation:{organisation_id}:customer"})
    return customer.id


def customer_delete(*, customer_id: str) -> None:
    try:
        _call(_client().v1.customers.delete, customer_id)
    except stripe.InvalidRequestError as error:
        if error.http_status != 404:  # already gone is what we wanted
            raise GatewayUnavailable(str(error)) from error


def setup_intent_create(*, customer_id: str) -> str:
    """A SetupIntent for the browser's card form; returns its client secret."""
    intent = _call(_client().v1.setup_intents.create,
                   params={"customer": customer_id, "payment_method_types": ["card"],
                           "usage": "off_session"})
    return intent.client_secret


def card_attach(*, payment_method_id: str, customer_id: str) -> Card:
    """Attach a card the browser confirmed to the customer (Stripe has usually done it already
    through the SetupIntent; localstripe has not) and return what may be stored of it."""
    client = _client()
    try:
        method = _call(client.v1.payment_methods.retrieve, payment_method_id)
    except stripe.InvalidRequestError as error:
        raise CardRefused(error.user_message or str(error)) from error
    if method.customer and method.customer != customer_id:
        raise CardRefused("This card belongs to another customer.")
    if not method.customer:
        try:
            method = _call(client.v1.payment_methods.attach, payment_method_id,
                           params={"customer": customer_id})
        except stripe.InvalidRequestError as error:
            raise CardRefused(error.user_message or str(error)) from error
    card = method.card
    return Card(processor_id=method.id, brand=card.brand, last4=card.last4,
                exp_month=card.exp_month, exp_year=card.exp_year, customer_id=customer_id)


def charge(*, customer_id: str, payment_method_id: str, amount: Money,
           idempotency_key: str) -> Charge:
    """Charge a saved card now, off-session. A refusal is a result, not an error."""
    try:
        intent = _call(_client().v1.payment_intents.create, params={
            "amount": to_minor_units(amount),
            "currency": str(amount.currency).lower(),
            "customer": customer_id,
            "payment_method": payment_method_id,
            "off_session": True,
            "confirm": True,
            "metadata": {"kanri_key": idempotency_key},
        }, options={"idempotency_key": idempotency_key})
    except CardRefused as refused:
        return Charge(succeeded=False, processor_id="", failure_reason=str(refused))
    except stripe.InvalidRequestError as error:
        return Charge(succeeded=False, processor_id="",
                      failure_reason=error.user_message or str(error))
    if intent.status != "succeeded":
        return Charge(succeeded=False, processor_id=intent.id,
                      failure_reason=f"payment {intent.status}")
    return Charge(succeeded=True, processor_id=intent.id)


def customer_exists(*, customer_id: str) -> bool:
    try:
        customer = _call(_client().v1.customers.retrieve, customer_id)
    except stripe.InvalidRequestError:
        return False
    return not customer.get("deleted")


def test_card_create(*, number: str = "4242424242424242") -> str:
    """A card made server-side from a public test number, for the demo data only. Refused with
    a live key: real card numbers go from the browser to the processor, never through Kanri."""
    if not settings.STRIPE_API_KEY.startswith("sk_test_"):
        raise RuntimeError("test cards need a test-mode key")
    method = _call(_client().v1.payment_methods.create, params={
        "type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2034,
                                 "cvc": "123"}})
    return method.id
