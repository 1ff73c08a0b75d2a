"""The processor down or silent: a clear "try again", nothing half-applied, never two charges.

Real faults, no fakes: a closed loopback port (connection refused) and a listening socket that
never answers (read timeout), then the real sandbox again for the retry.
"""
import datetime as dt
import socket

import pytest
from django.test import override_settings
from django.urls import reverse

from billing.models import Invoice, Payment, Quote, Subscription
from store import clock
from tests.accounts.factories import AdminFactory
from tests.billing.helpers import card_on_file, processor_charges

pytestmark = pytest.mark.usefixtures("payment_sandbox")
CONFIGURE = {"cycle": "monthly", "regular_licences": "3", "team_licences": "0",
             "storage_units": "0"}


@pytest.fixture
def paying(client, db):
    admin = AdminFactory()
    card_on_file(organisation=admin.organisation, acting_user=admin)
    client.force_login(admin)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    response = client.post(reverse("billing:configure", args=["standard"]), CONFIGURE)
    quote = Quote.objects.get(pk=response.url.rstrip("/").split("/")[-1])
    return client, admin, quote


@pytest.fixture
def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the block ends


@pytest.fixture
def silent_port():
    """Accepts connections into its backlog and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1]
    server.close()


def _assert_nothing_applied(admin, quote):
    sub = Subscription.objects.get(organisation=admin.organisation)
    assert (sub.plan.code, sub.status) == ("free", "free")
    assert not Invoice.objects.exists()
    assert Quote.objects.get(pk=quote.pk).state == Quote.State.OPEN


def test_processor_down_asks_to_try_again_and_the_retry_charges_once(paying, closed_port):
    client, admin, quote = paying

    with override_settings(STRIPE_API_BASE=f"http://127.0.0.1:{closed_port}"):
        down = client.post(reverse("billing:pay", args=[quote.pk]))

    assert down.status_code == 503
    assert "Try again: you will not be charged twice." in down.content.decode()
    _assert_nothing_applied(admin, quote)
    pending = Payment.objects.get()
    assert pending.state == Payment.State.PENDING

    retried = client.post(reverse("billing:pay", args=[quote.pk]))

    assert retried.status_code == 302
    payment = Payment.objects.get()  # the same attempt, re-sent with the same key
    assert (payment.pk, payment.idempotency_key, payment.state) == (
        pending.pk, pending.idempotency_key, Payment.State.SUCCEEDED)
    sub = Subscription.objects.get(organisation=admin.organisation)
    assert len(processor_charges(sub.processor_customer_id)) == 1
    assert sub.plan.code == "standard"


def test_a_processor_that_never_answers_times_out_into_the_same_message(paying, silent_port):
    client, admin, quote = paying

    with override_settings(STRIPE_API_BASE=f"http://127.0.0.1:{silent_port}",
                           STRIPE_TIMEOUT_SECONDS=1):
        response = client.post(reverse("billing:pay", args=[quote.pk]))

    assert response.status_code == 503
    assert "did not answer" in response.content.decode()
    _assert_nothing_applied(admin, quote)


def test_an_unanswered_attempt_is_resent_even_after_the_quote_expired(paying, closed_port):
    """The first attempt's outcome is unknown; refusing it as "expired" could hide a charge."""
    client, admin, quote = paying
    with override_settings(STRIPE_API_BASE=f"http://127.0.0.1:{closed_port}"):
        client.post(reverse("billing:pay", args=[quote.pk]))

    with clock.travel(quote.expires_at + dt.timedelta(minutes=5)):
        response = client.post(reverse("billing:pay", args=[quote.pk]))

    assert response.status_code == 302
    assert Payment.objects.get().state == Payment.State.SUCCEEDED
    sub = Subscription.objects.get(organisation=admin.organisation)
    assert len(processor_charges(sub.processor_customer_id)) == 1
