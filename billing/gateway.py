"""The payment processor client: the only module that imports `stripe`.

Kanri owns plans, proration, invoices and the state machine; the processor only keeps customers
and cards and moves money. Every charge carries an idempotency key made from Kanri's own row.
Local runs and tests point `STRIPE_API_BASE` at localstripe; production at Stripe.

Every stripe error type is mapped to one of this module's errors, so none escapes as a 500:
unreachable or 5xx → GatewayUnavailable (outcome unknown); a card refusal → CardRefused; an
unknown customer or card → ResourceMissing; anything else refused → GatewayError.
"""
import json
import urllib.error
import urllib.request
from dataclasses import dataclass

import stripe
from django.conf import settings
from djmoney.money import Money

from store.money import from_minor_units, to_minor_units


class GatewayError(Exception):
    """The processor refused the request for a reason that is not the card's (a bad request,
    a key clash, wrong credentials). Nothing was charged by this request."""


class GatewayUnavailable(GatewayError):
    """The processor could not be reached, timed out or answered with a server error: nothing
    is known about the outcome, so the caller must ask the processor before saying anything."""


class CardRefused(GatewayError):
    """The processor refused the card; `str()` is its own wording, `code` its reason code."""

    def __init__(self, message: str, *, code: str = ""):
        super().__init__(message)
        self.code = code


class ResourceMissing(GatewayError):
    """The processor does not know the customer or card (deleted there, or never made)."""


@dataclass(frozen=True)
class Card:
    processor_id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    customer_id: str | None


@dataclass(frozen=True)
class Intent:
    """A PaymentIntent as Kanri needs it. `status` is Stripe's: requires_confirmation,
    requires_action, processing, succeeded, requires_payment_method (failed), canceled."""

    processor_id: str
    status: str
    amount: int
    currency: str
    payment_method_id: str
    failure_code: str = ""
    failure_message: str = ""


_clients: dict[tuple, stripe.StripeClient] = {}


def _client() -> stripe.StripeClient:
    """One client per key, address and timeout, kept: its HTTP session (one per thread, made by
    RequestsClient) keeps its connection open, so a charge's create and confirm do not each
    open a new one. Tests that point the settings elsewhere get a client of their own."""
    # No automatic retries: a retry is Kanri's decision, made with the same idempotency key.
    config = (settings.STRIPE_API_KEY, settings.STRIPE_API_BASE, settings.STRIPE_TIMEOUT_SECONDS)
    client = _clients.get(config)
    if client is None:
        client = _clients[config] = stripe.StripeClient(
            config[0], base_addresses={"api": config[1]}, max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=config[2]))
    return client


def _call(function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError) as error:
        raise GatewayUnavailable(str(error)) from error
    except stripe.CardError as error:
        detail = error.error
        code = (detail.decline_code or detail.code) if detail else ""
        raise CardRefused(error.user_message or str(error), code=code or error.code or "") \
            from error
    except stripe.StripeError as error:  # invalid request, authentication, idempotency, ...
        status = error.http_status or 0
        if status >= 500:
            raise GatewayUnavailable(str(error)) from error
        if status == 404 or (error.error and error.error.code == "resource_missing"):
            raise ResourceMissing(error.user_message or str(error)) from error
        raise GatewayError(error.user_message or str(error)) from error


def browser_script_url() -> str:
    """Where the page loads Stripe.js from: Stripe's own, or the sandbox's stand-in."""
    if settings.STRIPE_JS_URL:
        return settings.STRIPE_JS_URL
    if "api.stripe.com" in settings.STRIPE_API_BASE:
        return "https://js.stripe.com/v3/"
    return f"{settings.STRIPE_API_BASE.rstrip('/')}/js.stripe.com/v3/"


def ping(*, timeout: float) -> None:
    """Ask the processor something harmless, within `timeout`: raises if it cannot answer."""
    client = stripe.StripeClient(
        settings.STRIPE_API_KEY, base_addresses={"api": settings.STRIPE_API_BASE},
        max_network_retries=0, http_client=stripe.RequestsClient(timeout=timeout))
    _call(client.v1.customers.list, params={"limit": 1})


def customer_create(*, organisation_id: int, name: str, email: str) -> str:
    customer = _call(_client().v1.customers.create,
                     params={"name": name, "email": email,
                             "metadata": {"kanri_organisation": str(organisation_id)}},
                     options={"idempotency_key": f"organisation:{organisation_id}:customer"})
    return customer.id


def customer_delete(*, customer_id: str) -> None:
    try:
        _call(_client().v1.customers.delete, customer_id)
    except ResourceMissing:
        pass  # already gone is what we wanted


def customer_exists(*, customer_id: str) -> bool:
    try:
        customer = _call(_client().v1.customers.retrieve, customer_id)
    except ResourceMissing:
        return False
    return not customer.to_dict().get("deleted")


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
    method = _call(client.v1.payment_methods.retrieve, payment_method_id)
    if method.customer and method.customer != customer_id:
        raise CardRefused("This card belongs to another customer.", code="card_not_owned")
    if not method.customer:
        method = _call(client.v1.payment_methods.attach, payment_method_id,
                       params={"customer": customer_id})
    card = method.card
    return Card(processor_id=method.id, brand=card.brand, last4=card.last4,
                exp_month=card.exp_month, exp_year=card.exp_year, customer_id=customer_id)


def card_detach(*, payment_method_id: str) -> None:
    """Detach a card from its customer: it can no longer be charged. Already detached or
    unknown is what we wanted."""
    try:
        _call(_client().v1.payment_methods.detach, payment_method_id)
    except ResourceMissing:
        pass


def _intent(resource) -> Intent:
    intent = resource.to_dict()
    error = intent.get("last_payment_error") or {}
    method = intent.get("payment_method") or ""
    return Intent(processor_id=intent["id"], status=intent["status"], amount=intent["amount"],
                  currency=intent["currency"],
                  payment_method_id=method if isinstance(method, str) else method["id"],
                  failure_code=error.get("decline_code") or error.get("code") or "",
                  failure_message=error.get("message") or "")


def intent_create(*, customer_id: str, payment_method_id: str, amount: Money,
                  idempotency_key: str) -> Intent:
    """The first half of a charge: a PaymentIntent that is not confirmed, so creating it moves
    no money. Its id is stored before `intent_confirm`; an intent whose id Kanri never learned
    is never confirmed, so creating one can always be retried safely."""
    return _intent(_call(_client().v1.payment_intents.create, params={
        "amount": to_minor_units(amount),
        "currency": str(amount.currency).lower(),
        "customer": customer_id,
        "payment_method": payment_method_id,
        "payment_method_types": ["card"],
        "metadata": {"kanri_key": idempotency_key},
    }, options={"idempotency_key": f"{idempotency_key}:create"}))


def intent_confirm(*, intent_id: str, idempotency_key: str) -> Intent:
    """Confirm a stored intent: this is what charges the card. A refusal is a result (the
    intent's status says so), not an error; a lost answer raises GatewayUnavailable."""
    try:
        return _intent(_call(_client().v1.payment_intents.confirm, intent_id,
                             options={"idempotency_key": f"{idempotency_key}:confirm"}))
    except CardRefused as refused:
        intent = intent_retrieve(intent_id=intent_id)
        return Intent(processor_id=intent.processor_id, status="requires_payment_method",
                      amount=intent.amount, currency=intent.currency,
                      payment_method_id=intent.payment_method_id,
                      failure_code=refused.code or intent.failure_code,
                      failure_message=str(refused))


def intent_retrieve(*, intent_id: str) -> Intent:
    """The processor's own record of an intent: how an unknown outcome is settled."""
    return _intent(_call(_client().v1.payment_intents.retrieve, intent_id))


def intent_cancel(*, intent_id: str) -> Intent:
    """Cancel an intent that has not charged, so that nobody can confirm it later."""
    return _intent(_call(_client().v1.payment_intents.cancel, intent_id))


def refund_create(*, intent_id: str, idempotency_key: str, amount: Money | None = None) -> str:
    """Refund a succeeded intent, in full or `amount` of it; returns the refund's id."""
    params = {"payment_intent": intent_id, "metadata": {"kanri_key": idempotency_key}}
    if amount is not None:
        params["amount"] = to_minor_units(amount)
    refund = _call(_client().v1.refunds.create, params=params,
                   options={"idempotency_key": f"{idempotency_key}:refund"})
    return refund.id


@dataclass(frozen=True)
class ProcessorRefund:
    """A refund the processor holds for a PaymentIntent; `kanri_key` is the key Kanri sent in
    its metadata (empty for a refund made elsewhere, e.g. the processor's dashboard)."""

    processor_id: str
    amount: Money
    status: str  # pending, succeeded, failed, canceled
    kanri_key: str


def refunds_list(*, intent_id: str) -> list[ProcessorRefund]:
    """Every refund of one PaymentIntent, every page: how a refund whose answer was lost is
    settled (found by its key: made; not found: never made)."""
    page = _call(_client().v1.refunds.list, params={"payment_intent": intent_id, "limit": 100})
    refunds = []
    for resource in _call(lambda: list(page.auto_paging_iter())):
        refund = resource.to_dict()
        refunds.append(ProcessorRefund(
            processor_id=refund["id"],
            amount=from_minor_units(refund["amount"], refund["currency"]),
            status=refund.get("status") or "succeeded",
            kanri_key=(refund.get("metadata") or {}).get("kanri_key") or ""))
    return refunds


@dataclass(frozen=True)
class Charge:
    """A charge the processor made for a customer: what reconciliation compares with Kanri's
    payments (`intent_id` is the PaymentIntent Kanri stored as the payment's processor id)."""

    processor_id: str
    intent_id: str
    succeeded: bool
    amount: Money
    refunded: Money


def charges_list(*, customer_id: str, since: int | None = None) -> list[Charge]:
    """Every charge of one customer (since a Unix time), every page of them. A customer the
    processor no longer knows raises ResourceMissing."""
    params = {"customer": customer_id, "limit": 100}
    if since is not None:
        params["created"] = {"gt": since}
    page = _call(_client().v1.charges.list, params=params)
    charges = []
    for resource in _call(lambda: list(page.auto_paging_iter())):
        charge = resource.to_dict()
        currency = charge["currency"]
        charges.append(Charge(
            processor_id=charge["id"], intent_id=charge.get("payment_intent") or "",
            succeeded=charge["status"] == "succeeded",
            amount=from_minor_units(charge["amount"], currency),
            refunded=from_minor_units(charge.get("amount_refunded") or 0, currency)))
    return charges


def test_card_create(*, number: str = "4242424242424242") -> str:
    """A card made server-side from a public test number, for the demo data only. Refused with
    a live key: real card numbers go from the browser to the processor, never through Kanri."""
    if not settings.STRIPE_API_KEY.startswith("sk_test_"):
        raise RuntimeError("test cards need a test-mode key")
    method = _call(_client().v1.payment_methods.create, params={
        "type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2034,
                                 "cvc": "123"}})
    return method.id


def card_retrieve(*, payment_method_id: str) -> Card | None:
    """The processor's current record of a card, None when it no longer knows it. A card's
    webhook is settled by this, never by the event's copy, so late events change nothing."""
    try:
        method = _call(_client().v1.payment_methods.retrieve, payment_method_id)
    except ResourceMissing:
        return None
    card = method.card
    customer = method.customer
    return Card(processor_id=method.id, brand=card.brand, last4=card.last4,
                exp_month=int(card.exp_month), exp_year=int(card.exp_year),
                customer_id=customer if isinstance(customer, str) or customer is None
                else customer.id)


# Webhooks -------------------------------------------------------------------------------------

WEBHOOK_TOLERANCE_SECONDS = 300  # Stripe's default: an older signature is a replay


class SignatureInvalid(Exception):
    """A delivery that does not prove it came from the processor just now: no signature, a
    malformed one, another secret, another body, a timestamp over five minutes old, or a
    signed body that is not an event."""


@dataclass(frozen=True)
class WebhookEvent:
    id: str
    type: str
    created: int
    object: dict  # data.object: the resource as it was when the event happened
    payload: dict  # the whole event, as delivered


def webhook_event_verify(*, payload: bytes, signature: str) -> WebhookEvent:
    """The event in a delivery, once its `Stripe-Signature` header is verified with
    STRIPE_WEBHOOK_SECRET (HMAC-SHA256 of "<t>.<body>", scheme v1; `t` at most five minutes old
    by the real clock, never Kanri's test clock). Raises SignatureInvalid.

    What localstripe (1.15) really sends, read from its source (localstripe/webhooks.py and
    resources.py), where Stripe differs:
    - Registration: `POST /_config/webhooks/<id>` with `{"url", "secret", "events"?}`, no key;
      posting the same id again replaces it; `events` filters by type (an empty list silences
      the endpoint: there is no delete). Kept in memory only: a restarted sandbox forgets it.
    - Of the types Kanri handles it sends only `payment_intent.succeeded` (a confirm that
      charged) and `payment_intent.payment_failed` (a declined confirm). A refund, a card update
      or detach sends nothing: `charge.refunded` and `payment_method.*` come only from Stripe.
      It also sends customer.*, invoice.*, customer.subscription.*, plan/product.created,
      payout.* and balance.available, which Kanri stores as ignored.
    - Shape: `{"id": "evt_...", "object": "event", "type", "created", "livemode": false,
      "api_version": "2017-08-15", "data": {"object": ...}}`, with no `previous_attributes` or
      `request`. An intent's `data.object` has `id`, `status`, `amount`, `currency`,
      `customer`, `payment_method` (an id), `metadata` (our `kanri_key`),
      `last_payment_error`, and its charge expanded in `latest_charge` (Stripe: an id).
    - Delivery: one second after the event, one POST per endpoint, the body
      `json.dumps(event, indent=2, sort_keys=True)`, signed like Stripe (t = the event's
      `created`, not the delivery time). No retry: a non-2xx answer is only logged, so an event
      deferred here is settled by the sweep instead (Stripe retries for three days).
    """
    try:
        stripe.WebhookSignature.verify_header(payload, signature, settings.STRIPE_WEBHOOK_SECRET,
                                              WEBHOOK_TOLERANCE_SECONDS)
        event = json.loads(payload)
        return WebhookEvent(id=event["id"], type=event["type"], created=int(event["created"]),
                            object=event["data"]["object"], payload=event)
    except stripe.SignatureVerificationError as error:
        raise SignatureInvalid(str(error)) from error
    except (ValueError, KeyError, TypeError) as error:  # UnicodeDecodeError is a ValueError
        raise SignatureInvalid(f"not an event: {error!r}") from error


def sandbox_webhook_register(*, endpoint_id: str, url: str, events: list[str] | None) -> None:
    """Tell the local sandbox to deliver events of these types (None: all, []: none) to `url`,
    signed with STRIPE_WEBHOOK_SECRET. localstripe only: Stripe's endpoints are made in its
    dashboard, so this refuses Stripe's own API base."""
    if "api.stripe.com" in settings.STRIPE_API_BASE:
        raise GatewayError("webhooks are registered in Stripe's dashboard, not by Kanri")
    body = {"url": url, "secret": settings.STRIPE_WEBHOOK_SECRET}
    if events is not None:
        body["events"] = events
    request = urllib.request.Request(
        f"{settings.STRIPE_API_BASE.rstrip('/')}/_config/webhooks/{endpoint_id}",
        data=json.dumps(body).encode(), headers={"Content-Type": "application/json"},
        method="POST")
    try:
        with urllib.request.urlopen(request, timeout=settings.STRIPE_TIMEOUT_SECONDS):
            pass
    except urllib.error.HTTPError as error:
        raise GatewayError(f"the sandbox refused the webhook: HTTP {error.code}") from error
    except OSError as error:
        raise GatewayUnavailable(str(error)) from error
