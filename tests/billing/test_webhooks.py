"""The processor's events, delivered for real: localstripe POSTs each event, signed, to the live
server, which stores it raw, then processes it once. A second endpoint at the sandbox (a
loopback recorder) keeps the same deliveries byte for byte, so tests can replay or alter them.

localstripe sends only the payment intent events of those Kanri handles; refunds and card
updates happen for real at the sandbox, and their events (which only Stripe sends) are built
from the sandbox's own objects and signed here with the endpoint's secret.
"""
import hashlib
import hmac
import io
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import stripe
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings
from django.urls import reverse

from accounts.models import AuditEvent
from billing import gateway
from billing.models import Invoice, Payment, PaymentMethod, Quote, Subscription, WebhookEvent
from tests.accounts.factories import AdminFactory
from tests.billing.helpers import DECLINING_CARD, card_on_file, processor_charges

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("payment_sandbox")]
CONFIGURE = {"cycle": "monthly", "regular_licences": "3", "team_licences": "0",
             "storage_units": "0"}
ENDPOINTS = ("kanri-tests", "kanri-tests-recorder")


@dataclass(frozen=True)
class Delivery:
    body: bytes
    signature: str

    @property
    def event(self) -> dict:
        return json.loads(self.body)


class DeliveryRecorder:
    """An endpoint on loopback that keeps every delivery as it came and answers 200. localstripe
    posts each event to its endpoints one after the other, in the order they were registered,
    waiting for each answer: once the recorder (registered second) has an event, Kanri has
    answered it."""

    def __init__(self):
        self.deliveries: list[Delivery] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                recorder.deliveries.append(Delivery(body, self.headers["Stripe-Signature"]))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, type_: str, object_id: str, timeout: float = 15) -> Delivery:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for delivery in list(self.deliveries):
                event = delivery.event
                if event["type"] == type_ and event["data"]["object"].get("id") == object_id:
                    return delivery
            time.sleep(0.05)
        raise AssertionError(f"no {type_} for {object_id} was delivered")

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def deliveries(live_server, payment_sandbox):
    """The sandbox delivers every event to the live server, and the same to a recorder; both
    endpoints are silenced afterwards (the sandbox outlives the test)."""
    recorder = DeliveryRecorder()
    recorder.endpoint = live_server.url + reverse("stripe_webhook")
    gateway.sandbox_webhook_register(endpoint_id=ENDPOINTS[0], url=recorder.endpoint,
                                     events=None)
    gateway.sandbox_webhook_register(endpoint_id=ENDPOINTS[1], url=recorder.url, events=None)
    yield recorder
    for endpoint_id in ENDPOINTS:
        gateway.sandbox_webhook_register(endpoint_id=endpoint_id, url=recorder.url, events=[])
    recorder.close()


def sign(body: bytes, *, secret: str | None = None, timestamp: int | None = None) -> str:
    """Stripe's v1 scheme, computed here rather than by the SDK under test."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    secret = settings.STRIPE_WEBHOOK_SECRET if secret is None else secret
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def post(url: str, body: bytes, signature: str | None) -> int:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def event_body(type_: str, obj: dict, *, like: dict | None = None) -> bytes:
    """A new event (fresh id) around `obj`, shaped as the sandbox shapes them."""
    base = like or {"object": "event", "api_version": "2017-08-15", "livemode": False}
    return json.dumps({**base, "id": f"evt_{uuid.uuid4().hex[:14]}", "type": type_,
                       "created": int(time.time()), "data": {"object": obj}},
                      indent=2, sort_keys=True).encode()


def sandbox() -> stripe.StripeClient:
    """The processor itself, as its dashboard or card updater would change things."""
    return stripe.StripeClient(settings.STRIPE_API_KEY,
                               base_addresses={"api": settings.STRIPE_API_BASE})


def stored(event_id: str) -> WebhookEvent:
    return WebhookEvent.objects.get(event_id=event_id)


def _configure(client, code="standard"):
    return client.post(reverse("billing:configure", args=[code]), CONFIGURE)


def _sub(admin) -> Subscription:
    return Subscription.objects.get(organisation=admin.organisation)


def _succeeded_charges(admin) -> list:
    return [i for i in processor_charges(_sub(admin).processor_customer_id)
            if i.status == "succeeded"]


def _paying(client, number=None):
    admin = AdminFactory()
    card_on_file(organisation=admin.organisation, acting_user=admin,
                 **({"number": number} if number else {}))
    client.force_login(admin)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    quote = Quote.objects.get(pk=_configure(client).url.rstrip("/").split("/")[-1])
    return admin, quote


@pytest.fixture
def paying(client, catalog, deliveries):
    return _paying(client)


@pytest.fixture
def paid(client, paying, deliveries):
    """A Standard month paid by card; the sandbox's payment_intent.succeeded delivered."""
    admin, quote = paying
    assert client.post(reverse("billing:pay", args=[quote.pk])).status_code == 302
    payment = Payment.objects.get()
    delivery = deliveries.wait_for("payment_intent.succeeded", payment.processor_id)
    return admin, payment, delivery


# Real deliveries ------------------------------------------------------------------------------

def test_a_delivery_is_stored_raw_and_processed_once(paid):
    """Pay recorded the charge itself; the event that follows finds it settled."""
    admin, payment, delivery = paid

    event = stored(delivery.event["id"])
    assert event.type == "payment_intent.succeeded"
    assert event.payload == delivery.event  # as delivered
    assert event.processed_at is not None
    assert (event.outcome, event.detail) == (
        WebhookEvent.Outcome.UNCHANGED, f"Payment {payment.idempotency_key} is succeeded already.")
    assert Payment.objects.get().state == Payment.State.SUCCEEDED
    assert Invoice.objects.count() == 1


def test_a_pending_attempt_is_resolved_by_its_webhook(client, paying, deliveries, proxy):
    """The sandbox charges, the answer is lost: Pay leaves the attempt open. The sandbox's
    payment_intent.succeeded then settles it, with no sweep and no second Pay."""
    admin, quote = paying
    proxy.drop_answers_to(r"POST /v1/payment_intents/\w+/confirm")

    with override_settings(STRIPE_API_BASE=proxy.url):
        lost = client.post(reverse("billing:pay", args=[quote.pk]))

    assert proxy.dropped and lost.status_code == 202
    pending = Payment.objects.get()
    assert pending.state == Payment.State.PENDING

    delivery = deliveries.wait_for("payment_intent.succeeded", pending.processor_id)

    payment = Payment.objects.get()
    assert (payment.pk, payment.state) == (pending.pk, Payment.State.SUCCEEDED)
    assert Quote.objects.get(pk=quote.pk).state == Quote.State.PAID
    assert Invoice.objects.get().payments.get() == payment
    assert _sub(admin).plan.code == "standard"
    assert [c.id for c in _succeeded_charges(admin)] == [payment.processor_id]
    event = stored(delivery.event["id"])
    assert (event.outcome, event.detail) == (
        WebhookEvent.Outcome.APPLIED, f"Payment {payment.idempotency_key} succeeded.")


def test_a_declined_attempt_whose_answer_was_lost_is_failed_by_its_webhook(
        client, catalog, deliveries, proxy):
    admin, quote = _paying(client, number=DECLINING_CARD)
    proxy.drop_answers_to(r"/confirm")
    with override_settings(STRIPE_API_BASE=proxy.url):
        assert client.post(reverse("billing:pay", args=[quote.pk])).status_code == 202
    pending = Payment.objects.get()

    delivery = deliveries.wait_for("payment_intent.payment_failed", pending.processor_id)

    payment = Payment.objects.get()
    assert (payment.state, payment.failure_code) == (Payment.State.FAILED, "card_declined")
    assert stored(delivery.event["id"]).outcome == WebhookEvent.Outcome.APPLIED
    assert Quote.objects.get(pk=quote.pk).state == Quote.State.OPEN
    assert (_sub(admin).plan.code, Invoice.objects.count()) == ("free", 0)


def test_an_unknown_event_type_is_stored_and_ignored(client, catalog, deliveries):
    admin = AdminFactory()
    card_on_file(organisation=admin.organisation, acting_user=admin)
    customer_id = _sub(admin).processor_customer_id

    delivery = deliveries.wait_for("customer.created", customer_id)

    event = stored(delivery.event["id"])
    assert event.type == "customer.created" and event.processed_at is not None
    assert event.outcome == WebhookEvent.Outcome.IGNORED


def test_a_replayed_delivery_changes_nothing(paid, deliveries):
    admin, payment, delivery = paid
    first = stored(delivery.event["id"])

    status = post(deliveries.endpoint, delivery.body, delivery.signature)  # byte for byte

    assert status == 200
    again = stored(delivery.event["id"])
    assert (again.pk, again.processed_at, again.outcome, again.detail) == (
        first.pk, first.processed_at, first.outcome, first.detail)
    assert WebhookEvent.objects.filter(event_id=delivery.event["id"]).count() == 1
    assert Payment.objects.get().state == Payment.State.SUCCEEDED
    assert Invoice.objects.count() == 1 and len(_succeeded_charges(admin)) == 1


def test_a_replay_of_an_event_that_settled_an_attempt_settles_nothing_again(
        client, paying, deliveries, proxy):
    admin, quote = paying
    proxy.drop_answers_to(r"/confirm")
    with override_settings(STRIPE_API_BASE=proxy.url):
        client.post(reverse("billing:pay", args=[quote.pk]))
    delivery = deliveries.wait_for("payment_intent.succeeded", Payment.objects.get().processor_id)
    audit_rows = AuditEvent.objects.count()

    assert post(deliveries.endpoint, delivery.body, delivery.signature) == 200

    assert stored(delivery.event["id"]).outcome == WebhookEvent.Outcome.APPLIED
    assert AuditEvent.objects.count() == audit_rows
    assert Invoice.objects.count() == 1 and len(_succeeded_charges(admin)) == 1


def _forged(delivery: Delivery) -> bytes:
    """The real delivery as a new event (a fresh id): one that would be stored if signed."""
    return json.dumps({**delivery.event, "id": "evt_forged" + uuid.uuid4().hex[:8]},
                      indent=2, sort_keys=True).encode()


@pytest.mark.parametrize("case", ["tampered body", "wrong secret", "stale timestamp",
                                  "missing header", "malformed header"])
def test_a_delivery_without_a_good_signature_is_refused_and_nothing_is_written(paid, deliveries,
                                                                                case):
    admin, payment, delivery = paid
    body = _forged(delivery)
    if case == "tampered body":  # signed, then changed in transit
        signature = sign(body)
        body = body.replace(b'"status": "succeeded"', b'"status": "canceled"')
        assert b'"canceled"' in body
    else:
        signature = {
            "wrong secret": sign(body, secret="whsec_not_the_endpoints"),
            "stale timestamp": sign(body, timestamp=int(time.time()) - 301),
            "missing header": None,
            "malformed header": "v1=" + sign(body).split("v1=")[1],
        }[case]
    events_before = set(WebhookEvent.objects.values_list("pk", "processed_at", "outcome"))
    audit_rows = AuditEvent.objects.count()

    status = post(deliveries.endpoint, body, signature)

    assert status == 400
    assert not WebhookEvent.objects.filter(event_id=json.loads(body)["id"]).exists()
    assert set(WebhookEvent.objects.values_list("pk", "processed_at", "outcome")) >= events_before
    assert AuditEvent.objects.count() == audit_rows
    assert Payment.objects.get().state == Payment.State.SUCCEEDED
    # The same body, signed as the processor signs, now, is accepted: only the signature failed.
    good = _forged(delivery)
    assert post(deliveries.endpoint, good, sign(good)) == 200


def test_the_endpoint_takes_posts_only(client):
    assert client.get(reverse("stripe_webhook")).status_code == 405


def test_a_failure_arriving_after_the_success_changes_nothing(paid, deliveries):
    """Out of order: the intent's payment_failed, delivered after its succeeded, is stored and
    found to change nothing (the attempt is settled; the intent says succeeded anyway)."""
    admin, payment, delivery = paid
    intent = {**delivery.event["data"]["object"], "status": "requires_payment_method",
              "last_payment_error": {"code": "card_declined", "message": "Declined."}}
    body = event_body("payment_intent.payment_failed", intent, like=delivery.event)

    assert post(deliveries.endpoint, body, sign(body)) == 200

    event = stored(json.loads(body)["id"])
    assert event.outcome == WebhookEvent.Outcome.UNCHANGED and event.processed_at
    payment.refresh_from_db()
    assert payment.state == Payment.State.SUCCEEDED and not payment.failure_code
    assert _sub(admin).plan.code == "standard" and Invoice.objects.count() == 1


def test_a_payment_event_is_settled_by_the_intent_not_by_its_copy(client, paying, deliveries,
                                                                   proxy):
    """A payment_failed for an open attempt whose intent in fact charged (a late, stale copy):
    the processor's record decides, and the charge is applied."""
    admin, quote = paying
    for endpoint_id in ENDPOINTS:  # no real delivery this time
        gateway.sandbox_webhook_register(endpoint_id=endpoint_id, url=deliveries.url, events=[])
    proxy.drop_answers_to(r"/confirm")
    with override_settings(STRIPE_API_BASE=proxy.url):
        client.post(reverse("billing:pay", args=[quote.pk]))
    pending = Payment.objects.get()
    intent = sandbox().v1.payment_intents.retrieve(pending.processor_id).to_dict()
    body = event_body("payment_intent.payment_failed",
                      {**intent, "status": "requires_payment_method"})

    assert post(deliveries.endpoint, body, sign(body)) == 200

    assert stored(json.loads(body)["id"]).outcome == WebhookEvent.Outcome.APPLIED
    assert Payment.objects.get().state == Payment.State.SUCCEEDED
    assert _sub(admin).plan.code == "standard"


# Events only Stripe sends, about real changes at the sandbox -----------------------------------

def _charge_of(intent_id: str) -> dict:
    latest = sandbox().v1.payment_intents.retrieve(intent_id).latest_charge
    charge_id = latest if isinstance(latest, str) else latest.id
    return sandbox().v1.charges.retrieve(charge_id).to_dict()


def test_a_refund_made_at_the_processor_marks_the_payment_refunded_once(paid, deliveries):
    admin, payment, _delivery = paid
    refund = sandbox().v1.refunds.create(params={"payment_intent": payment.processor_id})
    body = event_body("charge.refunded", _charge_of(payment.processor_id))

    assert post(deliveries.endpoint, body, sign(body)) == 200

    payment.refresh_from_db()
    assert (payment.state, payment.refund_id) == (Payment.State.REFUNDED, refund.id)
    assert stored(json.loads(body)["id"]).outcome == WebhookEvent.Outcome.APPLIED
    audit = AuditEvent.objects.get(action="payment.refunded", target_id=str(payment.pk))
    assert audit.reason == "refunded at the payment service"

    again = event_body("charge.refunded", _charge_of(payment.processor_id))  # Stripe's retry
    assert post(deliveries.endpoint, body, sign(body)) == 200
    assert post(deliveries.endpoint, again, sign(again)) == 200

    assert stored(json.loads(again)["id"]).outcome == WebhookEvent.Outcome.UNCHANGED
    assert AuditEvent.objects.filter(action="payment.refunded").count() == 1


def test_a_partial_refund_leaves_the_payment_succeeded(paid, deliveries):
    admin, payment, _delivery = paid
    sandbox().v1.refunds.create(params={"payment_intent": payment.processor_id, "amount": 100})
    body = event_body("charge.refunded", _charge_of(payment.processor_id))

    assert post(deliveries.endpoint, body, sign(body)) == 200

    # Recorded (every refund at the processor has its record and credit note); the
    # payment stays succeeded with the part refunded.
    assert stored(json.loads(body)["id"]).outcome == WebhookEvent.Outcome.APPLIED
    payment = Payment.objects.get()
    assert payment.state == Payment.State.SUCCEEDED
    assert payment.amount_refunded.amount == 100 and payment.credit_notes.count() == 1


def test_a_card_updated_at_the_processor_is_stored_and_a_late_copy_changes_nothing(
        catalog, deliveries):
    admin = AdminFactory()
    method = card_on_file(organisation=admin.organisation, acting_user=admin)
    old_copy = sandbox().v1.payment_methods.retrieve(method.processor_id).to_dict()
    # The card updater's new expiry. localstripe replaces the whole card object on update
    # (Stripe merges), so the facts Kanri reads are sent with it.
    sandbox().v1.payment_methods.update(method.processor_id, params={"card": {
        "brand": "visa", "last4": "4242", "exp_month": 3, "exp_year": 2033}})
    updated = event_body("payment_method.updated",
                         sandbox().v1.payment_methods.retrieve(method.processor_id).to_dict())

    assert post(deliveries.endpoint, updated, sign(updated)) == 200

    method.refresh_from_db()
    assert (method.brand, method.last4, method.exp_month, method.exp_year) == (
        "visa", "4242", 3, 2033)
    assert stored(json.loads(updated)["id"]).outcome == WebhookEvent.Outcome.APPLIED
    assert AuditEvent.objects.get(action="card.updated").before["exp_year"] == 2030

    late = event_body("payment_method.updated", old_copy)  # an older event, delivered last
    assert post(deliveries.endpoint, late, sign(late)) == 200

    assert stored(json.loads(late)["id"]).outcome == WebhookEvent.Outcome.UNCHANGED
    method.refresh_from_db()
    assert (method.exp_month, method.exp_year) == (3, 2033)


def test_a_card_detached_at_the_processor_is_forgotten_and_the_default_moves(catalog,
                                                                            deliveries):
    admin = AdminFactory()
    older = card_on_file(organisation=admin.organisation, acting_user=admin)
    default = card_on_file(organisation=admin.organisation, acting_user=admin,
                           number="5555555555554444")
    assert _sub(admin).default_payment_method == default
    detached = sandbox().v1.payment_methods.detach(default.processor_id).to_dict()
    body = event_body("payment_method.detached", detached)

    assert post(deliveries.endpoint, body, sign(body)) == 200

    assert list(PaymentMethod.objects.all()) == [older]
    assert _sub(admin).default_payment_method == older
    assert stored(json.loads(body)["id"]).outcome == WebhookEvent.Outcome.APPLIED
    again = event_body("payment_method.detached", detached)
    assert post(deliveries.endpoint, again, sign(again)) == 200
    assert stored(json.loads(again)["id"]).outcome == WebhookEvent.Outcome.UNCHANGED


# make run -------------------------------------------------------------------------------------

def test_make_runs_registration_delivers_the_handled_event_types(client, catalog, deliveries):
    """`manage.py register_sandbox_webhook` (Procfile.dev runs it once the sandbox is up)
    subscribes the site to the types Kanri handles, and to nothing else."""
    from billing.services.webhooks import HANDLERS

    admin = AdminFactory()
    card_on_file(organisation=admin.organisation, acting_user=admin)
    deliveries.wait_for("customer.created", _sub(admin).processor_customer_id)
    for endpoint_id in ENDPOINTS:
        gateway.sandbox_webhook_register(endpoint_id=endpoint_id, url=deliveries.url, events=[])
    earlier = set(WebhookEvent.objects.values_list("pk", flat=True))
    client.force_login(admin)
    quote_id = _configure(client).url.rstrip("/").split("/")[-1]

    call_command("register_sandbox_webhook", url=deliveries.endpoint, stdout=io.StringIO())
    try:
        assert client.post(reverse("billing:pay", args=[quote_id])).status_code == 302
        deadline = time.monotonic() + 15
        while not WebhookEvent.objects.filter(type="payment_intent.succeeded").exists():
            assert time.monotonic() < deadline, "the registered endpoint got nothing"
            time.sleep(0.05)
        time.sleep(1.5)  # what else the payment made (balance.available, ...) would be here
    finally:
        gateway.sandbox_webhook_register(endpoint_id="kanri", url=deliveries.url, events=[])

    event = WebhookEvent.objects.get(type="payment_intent.succeeded")
    assert event.payload["data"]["object"]["id"] == Payment.objects.get().processor_id
    new_types = set(WebhookEvent.objects.exclude(pk__in=earlier).values_list("type", flat=True))
    assert new_types <= set(HANDLERS)
