"""The processor down, silent, or losing its answer; a failure after it answered. Each time:
one charge at most, one Payment row with the processor's id, the change applied once, and the
customer told the truth ("nothing was charged" only when that is known).

Real faults, no fakes: a closed loopback port (connection refused), a listening socket that
never answers (read timeout), a proxy that lets the sandbox charge and drops its answer
(tests/billing/faults.py), a PostgreSQL trigger that makes the commit fail after the charge.
"""
import datetime as dt
import socket
import time

import pytest
from django.db import connection
from django.test import override_settings
from django.urls import reverse

from billing.models import Invoice, Payment, Quote, Subscription
from billing.services.charging import payments_settle_open
from store import clock
from tests.accounts.factories import AdminFactory
from tests.billing import faults
from tests.billing.helpers import card_on_file, processor_charges

pytestmark = pytest.mark.usefixtures("payment_sandbox")
CONFIGURE = {"cycle": "monthly", "regular_licences": "3", "team_licences": "0",
             "storage_units": "0"}


def _configure(client, code="standard", **data):
    return client.post(reverse("billing:configure", args=[code]), {**CONFIGURE, **data})


@pytest.fixture
def paying(client, db):
    admin = AdminFactory()
    card_on_file(organisation=admin.organisation, acting_user=admin)
    client.force_login(admin)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    response = _configure(client)
    quote = Quote.objects.get(pk=response.url.rstrip("/").split("/")[-1])
    return client, admin, quote


@pytest.fixture
def closed_port():
    return faults.closed_port()


@pytest.fixture
def silent_port():
    """Accepts connections into its backlog and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1]
    server.close()


def _sub(admin):
    return Subscription.objects.get(organisation=admin.organisation)


def _succeeded_charges(admin):
    return [i for i in processor_charges(_sub(admin).processor_customer_id)
            if i.status == "succeeded"]


def _assert_nothing_applied(admin, quote):
    sub = _sub(admin)
    assert (sub.plan.code, sub.status) == ("free", "free")
    assert not Invoice.objects.exists()
    assert Quote.objects.get(pk=quote.pk).state == Quote.State.OPEN


def test_processor_down_says_nothing_was_charged_and_the_retry_charges_once(paying, closed_port):
    client, admin, quote = paying

    with override_settings(STRIPE_API_BASE=f"http://127.0.0.1:{closed_port}"):
        down = client.post(reverse("billing:pay", args=[quote.pk]))

    assert down.status_code == 503
    assert "nothing was charged" in down.content.decode()
    _assert_nothing_applied(admin, quote)
    first = Payment.objects.get()
    assert (first.state, first.failure_code, first.processor_id) == (
        Payment.State.FAILED, "processor_unavailable", "")

    retried = client.post(reverse("billing:pay", args=[quote.pk]))

    assert retried.status_code == 302
    second = Payment.objects.exclude(pk=first.pk).get()
    assert second.state == Payment.State.SUCCEEDED and second.processor_id.startswith("pi_")
    assert [c.id for c in _succeeded_charges(admin)] == [second.processor_id]
    assert _sub(admin).plan.code == "standard"


def test_a_processor_that_never_answers_times_out_into_the_same_message(paying, silent_port):
    client, admin, quote = paying

    with override_settings(STRIPE_API_BASE=f"http://127.0.0.1:{silent_port}",
                           STRIPE_TIMEOUT_SECONDS=1):
        response = client.post(reverse("billing:pay", args=[quote.pk]))

    assert response.status_code == 503
    assert "did not answer: nothing was charged" in response.content.decode()
    _assert_nothing_applied(admin, quote)


def test_a_lost_answer_is_never_called_nothing_charged_and_is_settled_by_asking(paying, proxy):
    """The sandbox charges the card, the answer is lost; the quote then expires. The next Pay
    asks the processor for the stored intent and applies the change: one charge, one row."""
    client, admin, quote = paying
    proxy.drop_answers_to(r"POST /v1/payment_intents/\w+/confirm")

    with override_settings(STRIPE_API_BASE=proxy.url):
        lost = client.post(reverse("billing:pay", args=[quote.pk]))

    assert proxy.dropped and lost.status_code == 202
    body = lost.content.decode()
    assert "did not tell us whether your card was charged" in body
    assert "nothing was charged" not in body
    pending = Payment.objects.get()
    assert pending.state == Payment.State.PENDING and pending.processor_id.startswith("pi_")
    _assert_nothing_applied(admin, quote)

    with clock.travel(quote.expires_at + dt.timedelta(minutes=5)):
        settled = client.post(reverse("billing:pay", args=[quote.pk]))

    assert settled.status_code == 302
    payment = Payment.objects.get()
    assert (payment.pk, payment.state) == (pending.pk, Payment.State.SUCCEEDED)
    assert [c.id for c in _succeeded_charges(admin)] == [payment.processor_id]
    assert Invoice.objects.get().payments.get() == payment
    assert _sub(admin).plan.code == "standard"


def test_an_unsettled_payment_blocks_a_second_change_until_the_processor_is_asked(
        paying, proxy, closed_port):
    client, admin, quote = paying
    proxy.drop_answers_to(r"/confirm")
    with override_settings(STRIPE_API_BASE=proxy.url):
        client.post(reverse("billing:pay", args=[quote.pk]))

    with override_settings(STRIPE_API_BASE=f"http://127.0.0.1:{closed_port}"):
        blocked = _configure(client, "professional")

    assert blocked.status_code == 400
    assert "is still being confirmed with the payment service" in blocked.content.decode()
    assert Quote.objects.count() == 1

    second = _configure(client, "professional")  # the processor answers again

    assert second.status_code == 302
    assert Quote.objects.get(pk=quote.pk).state == Quote.State.PAID  # the first change applied
    new_quote = Quote.objects.exclude(pk=quote.pk).get()
    assert (new_quote.from_plan.code, new_quote.plan.code) == ("standard", "professional")
    assert new_quote.lines.filter(kind="credit").exists()  # the paid Standard time credited
    assert len(_succeeded_charges(admin)) == 1


def test_a_resend_after_the_card_changed_uses_the_attempts_own_card(paying, proxy):
    client, admin, quote = paying
    proxy.drop_answers_to(r"/confirm")
    with override_settings(STRIPE_API_BASE=proxy.url):
        client.post(reverse("billing:pay", args=[quote.pk]))
    first_card = Payment.objects.get().card_processor_id
    card_on_file(organisation=admin.organisation, acting_user=admin, number="5555555555554444")

    response = client.post(reverse("billing:pay", args=[quote.pk]))

    assert response.status_code == 302
    payment = Payment.objects.get()
    assert (payment.card_processor_id, payment.card_last4) == (first_card, "4242")
    [charge] = _succeeded_charges(admin)
    assert charge.payment_method == first_card


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_commit_that_fails_after_the_charge_keeps_the_record_and_is_completed(
        client, catalog):
    """A deferred constraint trigger makes the commit of the invoice fail, after the processor
    charged. The attempt stays on record with its intent id; the next settlement applies it."""
    admin = AdminFactory()
    card_on_file(organisation=admin.organisation, acting_user=admin)
    client.force_login(admin)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    quote = Quote.objects.get(pk=_configure(client).url.rstrip("/").split("/")[-1])
    with connection.cursor() as cursor:
        cursor.execute("""
            CREATE FUNCTION kanri_test_refuse() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION 'injected commit failure'; END $$ LANGUAGE plpgsql;
            CREATE CONSTRAINT TRIGGER kanri_test_refuse AFTER INSERT ON billing_invoice
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION kanri_test_refuse();
        """)
    try:
        response = client.post(reverse("billing:pay", args=[quote.pk]))
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER kanri_test_refuse ON billing_invoice;"
                           "DROP FUNCTION kanri_test_refuse();")

    body = response.content.decode()
    assert response.status_code == 202
    assert "Your card was charged" in body and "nothing was charged" not in body
    payment = Payment.objects.get()
    assert payment.state == Payment.State.PENDING and payment.processor_id in body
    assert not Invoice.objects.exists()

    [outcome] = payments_settle_open()

    assert outcome.kind == "succeeded"
    payment.refresh_from_db()
    assert payment.state == Payment.State.SUCCEEDED
    assert Invoice.objects.get().payments.get() == payment
    assert [c.id for c in _succeeded_charges(admin)] == [payment.processor_id]
    assert _sub(admin).plan.code == "standard"


def test_the_sweep_settles_a_lost_answer_once_and_is_scheduled(paying, proxy):
    from django_celery_beat.models import PeriodicTask

    from billing.tasks import settle_open_payments

    client, admin, quote = paying
    proxy.drop_answers_to(r"/confirm")
    with override_settings(STRIPE_API_BASE=proxy.url):
        client.post(reverse("billing:pay", args=[quote.pk]))

    first = settle_open_payments.delay().get()
    again = settle_open_payments.delay().get()

    assert (first, again) == ({"succeeded": 1}, {})
    assert Quote.objects.get(pk=quote.pk).state == Quote.State.PAID
    assert len(_succeeded_charges(admin)) == 1
    assert PeriodicTask.objects.get(task="billing.tasks.settle_open_payments").enabled


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_no_row_lock_is_held_while_the_processor_is_asked(client, catalog, silent_port):
    """While Pay waits on a silent processor, another connection can lock the subscription
    and the quote at once (NOWAIT): the call happens outside any transaction."""
    import threading

    from django.db import transaction

    admin = AdminFactory()
    card_on_file(organisation=admin.organisation, acting_user=admin)
    client.force_login(admin)
    quote_id = _configure(client).url.rstrip("/").split("/")[-1]
    answers = []

    def pay():
        try:
            answers.append(client.post(reverse("billing:pay", args=[quote_id])).status_code)
        finally:
            connection.close()

    with override_settings(STRIPE_API_BASE=f"http://127.0.0.1:{silent_port}",
                           STRIPE_TIMEOUT_SECONDS=3):
        paying = threading.Thread(target=pay)
        paying.start()
        deadline = clock.now() + dt.timedelta(seconds=10)
        while not Payment.objects.exists() and clock.now() < deadline:
            time.sleep(0.02)
        with transaction.atomic():  # raises OperationalError if Pay held either row
            Subscription.objects.select_for_update(nowait=True).get(
                organisation=admin.organisation)
            Quote.objects.select_for_update(nowait=True).get(pk=quote_id)
            in_flight = paying.is_alive()
        paying.join(timeout=30)

    assert in_flight  # the locks were free while the processor was being asked
    assert answers == [503]


def test_a_confirm_refused_because_it_already_charged_is_recorded_as_the_charge(paying, proxy):
    """Someone confirmed the intent just before us (the sandbox answers the second confirm
    with a 400). The refusal is not a failure: the intent says it succeeded."""
    client, admin, quote = paying
    proxy.send_twice(r"POST /v1/payment_intents/\w+/confirm")

    with override_settings(STRIPE_API_BASE=proxy.url):
        response = client.post(reverse("billing:pay", args=[quote.pk]))

    assert response.status_code == 302
    payment = Payment.objects.get()
    assert payment.state == Payment.State.SUCCEEDED
    assert [c.id for c in _succeeded_charges(admin)] == [payment.processor_id]
    assert _sub(admin).plan.code == "standard"
