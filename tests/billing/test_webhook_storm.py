"""1,000 webhook deliveries: 50 events, each delivered 20 times in a shuffled order, leave the
database as one delivery of each would. The events are made from real objects at the
sandbox (payments, refunds, card updates) and signed with the endpoint's secret."""
import json
import random
from collections import Counter

import pytest
from django.urls import reverse

from accounts.models import AuditEvent
from billing.models import Payment, PaymentMethod, WebhookEvent
from billing.pricing import Change
from billing.services.payments import quote_pay
from billing.services.quotes import quote_create
from store.models import Plan
from tests.accounts.factories import AdminFactory
from tests.billing.helpers import card_on_file
from tests.billing.test_webhooks import _charge_of, event_body, sandbox, sign

pytestmark = pytest.mark.usefixtures("payment_sandbox")
ORGANISATIONS, DUPLICATES = 10, 20


def paid_organisation() -> tuple[Payment, PaymentMethod]:
    admin = AdminFactory()
    card = card_on_file(organisation=admin.organisation, acting_user=admin)
    quote = quote_create(organisation=admin.organisation, acting_user=admin, change=Change(
        Plan.objects.get(code="standard"), "monthly", 3, 0, 0))
    assert quote_pay(organisation=admin.organisation, quote_id=quote.pk,
                     acting_user=admin).charged
    return Payment.objects.get(organisation=admin.organisation, paid_with="card"), card


def snapshot() -> dict:
    return {
        "events": sorted(WebhookEvent.objects.values_list("event_id", "outcome")),
        "unprocessed": WebhookEvent.objects.filter(processed_at=None).count(),
        "payments": sorted(Payment.objects.values_list("pk", "state", "refund_id")),
        "cards": sorted(PaymentMethod.objects.values_list("pk", "exp_month", "exp_year")),
        "audit": Counter(AuditEvent.objects.values_list("action", flat=True)),
    }


def test_fifty_events_delivered_twenty_times_shuffled_act_once_each(client, db):
    paid = [paid_organisation() for _ in range(ORGANISATIONS)]
    bodies = []
    for number, (payment, card) in enumerate(paid):
        intent = sandbox().v1.payment_intents.retrieve(payment.processor_id).to_dict()
        bodies.append(event_body("payment_intent.succeeded", intent))  # settled already
        if number % 2 == 0:  # refunded at the processor's dashboard
            sandbox().v1.refunds.create(params={"payment_intent": payment.processor_id})
            bodies.append(event_body("charge.refunded", _charge_of(payment.processor_id)))
        else:  # the card updater's new expiry
            sandbox().v1.payment_methods.update(card.processor_id, params={"card": {
                "brand": "visa", "last4": card.last4, "exp_month": 4, "exp_year": 2034}})
            bodies.append(event_body("payment_method.updated", sandbox().v1.payment_methods
                                     .retrieve(card.processor_id).to_dict()))
        bodies.append(event_body("customer.created", {"id": f"cus_other_{number}",
                                                      "object": "customer"}))
    bodies += [event_body("balance.available", {"object": "balance"}) for _ in range(20)]
    assert len(bodies) == 50

    deliveries = [body for body in bodies for _ in range(DUPLICATES)]
    random.Random(12).shuffle(deliveries)
    url = reverse("stripe_webhook")
    statuses = Counter(
        client.post(url, body, content_type="application/json",
                    HTTP_STRIPE_SIGNATURE=sign(body)).status_code for body in deliveries)

    assert statuses == {200: 1000}
    after_storm = snapshot()
    ids = {json.loads(body)["id"] for body in bodies}
    assert {event_id for event_id, _ in after_storm["events"]} == ids
    assert after_storm["unprocessed"] == 0
    outcomes = Counter(outcome for _, outcome in after_storm["events"])
    assert outcomes == {WebhookEvent.Outcome.UNCHANGED: 10, WebhookEvent.Outcome.APPLIED: 10,
                        WebhookEvent.Outcome.IGNORED: 30}
    assert after_storm["audit"]["payment.refunded"] == 5
    assert after_storm["audit"]["card.updated"] == 5
    assert Payment.objects.filter(state=Payment.State.REFUNDED).count() == 5
    assert PaymentMethod.objects.filter(exp_year=2034).count() == 5

    for body in bodies:  # one more delivery of each: nothing moves
        client.post(url, body, content_type="application/json",
                    HTTP_STRIPE_SIGNATURE=sign(body))
    assert snapshot() == after_storm
