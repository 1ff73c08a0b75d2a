"""Refunds follow the three-step rule like charges (SPEC "The books" 1): the
attempt is committed with its key before the processor is called, the processor is called
outside any transaction, the answer recorded; an unknown outcome is settled by asking the
processor for the refunds of that charge. Real faults: a proxy that lets localstripe refund and
drops its answer, a PostgreSQL trigger failing the record's commit. At the end of each test the
books balance and Kanri's records equal the processor's."""
import hashlib
import hmac
import importlib
import json
import time
import uuid

import pytest
from django.apps import apps as django_apps
from django.conf import settings
from django.contrib.auth.models import Group
from django.db import DatabaseError, connection
from django.test import override_settings
from djmoney.money import Money

from accounts.models import User
from billing import gateway
from billing.books import books_discrepancies
from billing.errors import ProcessorUnavailable
from billing.models import CreditNote, Payment, Refund, Subscription, WebhookEvent
from billing.pricing import Change
from billing.reconcile import processor_differences
from billing.services.charging import payments_settle_open
from billing.services.payments import quote_pay
from billing.services.quotes import quote_create
from billing.services.support import support_refund
from billing.services.webhooks import webhook_receive
from store.models import Plan
from tests.accounts.factories import AdminFactory
from tests.billing.faults import processor_down
from tests.billing.helpers import _sandbox, card_on_file
from tests.store.helpers import admin_login

pytestmark = pytest.mark.usefixtures("payment_sandbox")


def yen(amount) -> Money:
    return Money(amount, "JPY")


@pytest.fixture
def staff(db):
    user = User.objects.create_user("support@kanri.example", "pw-not-used", is_staff=True)
    user.groups.add(Group.objects.get_or_create(name="support")[0])
    return user


def paid_payment() -> Payment:
    """Standard for 3 users, ¥6,732 paid by card."""
    admin = AdminFactory()
    card_on_file(organisation=admin.organisation, acting_user=admin)
    quote = quote_create(organisation=admin.organisation, acting_user=admin,
                         change=Change(Plan.objects.get(code="standard"), "monthly", 3, 0, 0))
    result = quote_pay(organisation=admin.organisation, quote_id=quote.pk, acting_user=admin)
    assert result.invoice is not None, result.failure
    return Payment.objects.get(invoice=result.invoice)


def refunds_at_processor(payment: Payment) -> list[int]:
    listed = _sandbox().v1.refunds.list(params={"payment_intent": payment.processor_id})
    return sorted(refund.amount for refund in listed.auto_paging_iter())


def assert_books_and_processor_agree() -> None:
    assert books_discrepancies() == []
    assert processor_differences() == []


def test_a_refund_whose_answer_is_lost_is_recorded_once_by_the_settle_job(staff, proxy):
    payment = paid_payment()
    proxy.drop_answers_to(r"POST /v1/refunds")

    with override_settings(STRIPE_API_BASE=proxy.url), pytest.raises(ProcessorUnavailable) as lost:
        support_refund(payment_id=payment.pk, amount=yen(1000), staff=staff,
                       reason="A seat never used", confirmation="once-1")

    assert proxy.dropped and "did not answer" in str(lost.value)
    payments_settle_open()

    payment.refresh_from_db()
    assert refunds_at_processor(payment) == [1000]
    [note] = CreditNote.objects.filter(payment=payment)
    assert (note.total, payment.amount_refunded, payment.state) == (
        yen(1000), yen(1000), Payment.State.SUCCEEDED)
    assert payments_settle_open() == []  # nothing left to settle, nothing recorded again
    assert CreditNote.objects.filter(payment=payment).count() == 1
    assert_books_and_processor_agree()


def test_the_support_screen_says_a_refund_with_a_lost_answer_is_being_confirmed(
        client, staff, proxy):
    payment = paid_payment()
    admin_login(client, staff)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    url = f"/admin/billing/payment/{payment.pk}/support/refund/"
    reviewed = client.post(url, {"amount": "1000", "reason": "A seat never used"})
    proxy.drop_answers_to(r"POST /v1/refunds")

    with override_settings(STRIPE_API_BASE=proxy.url):
        lost = client.post(url, {**reviewed.context["carried"], "confirm": "1"})

    body = lost.content.decode()
    assert lost.status_code == 400
    assert "the refund is being confirmed" in body and "nothing was refunded" not in body
    again = client.post(url, {**lost.context["carried"], "confirm": "1"})  # asks, then records
    assert again.status_code == 302
    assert refunds_at_processor(payment) == [1000]
    assert CreditNote.objects.filter(payment=payment).count() == 1
    assert_books_and_processor_agree()


@pytest.mark.django_db(transaction=True)
def test_a_refund_whose_record_fails_after_the_processor_refunded_is_completed_by_the_job(
        staff, catalog):
    payment = paid_payment()
    with connection.cursor() as cursor:
        cursor.execute("""
            CREATE FUNCTION kanri_test_refuse() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION 'injected commit failure'; END $$ LANGUAGE plpgsql;
            CREATE CONSTRAINT TRIGGER kanri_test_refuse AFTER INSERT ON billing_creditnote
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION kanri_test_refuse();
        """)
    try:
        with pytest.raises((ProcessorUnavailable, DatabaseError)):  # today: the DB's error
            support_refund(payment_id=payment.pk, amount=yen(1000), staff=staff,
                           reason="A seat never used", confirmation="once-1")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER kanri_test_refuse ON billing_creditnote;"
                           "DROP FUNCTION kanri_test_refuse();")
    assert not CreditNote.objects.exists()
    assert refunds_at_processor(payment) == [1000]

    payments_settle_open()

    payment.refresh_from_db()
    [note] = CreditNote.objects.filter(payment=payment)
    assert (note.total, payment.amount_refunded) == (yen(1000), yen(1000))
    assert refunds_at_processor(payment) == [1000]
    assert_books_and_processor_agree()


def _sign(body: bytes) -> str:
    timestamp = int(time.time())
    digest = hmac.new(settings.STRIPE_WEBHOOK_SECRET.encode(), f"{timestamp}.".encode() + body,
                      hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def _charge_refunded(payment: Payment) -> bytes:
    latest = _sandbox().v1.payment_intents.retrieve(payment.processor_id).latest_charge
    charge = _sandbox().v1.charges.retrieve(latest if isinstance(latest, str) else latest.id)
    return json.dumps({"object": "event", "api_version": "2017-08-15", "livemode": False,
                       "id": f"evt_{uuid.uuid4().hex[:14]}", "type": "charge.refunded",
                       "created": int(time.time()), "data": {"object": charge.to_dict()}}).encode()


def test_a_dashboard_refund_delivered_twice_is_recorded_once_with_its_credit_note(staff):
    payment = paid_payment()
    _sandbox().v1.refunds.create(params={"payment_intent": payment.processor_id,
                                         "amount": 1500})

    first, again = _charge_refunded(payment), _charge_refunded(payment)  # Stripe's retry
    assert webhook_receive(payload=first, signature=_sign(first)).status == 200
    assert webhook_receive(payload=again, signature=_sign(again)).status == 200
    payments_settle_open()

    payment.refresh_from_db()
    [note] = CreditNote.objects.filter(payment=payment)
    assert (note.total, payment.amount_refunded, payment.state) == (
        yen(1500), yen(1500), Payment.State.SUCCEEDED)
    assert [event.outcome for event in WebhookEvent.objects.order_by("received_at", "pk")] == [
        WebhookEvent.Outcome.APPLIED, WebhookEvent.Outcome.UNCHANGED]
    assert_books_and_processor_agree()


def test_refunds_recorded_before_refund_rows_existed_get_one_row_each_from_the_migration(staff):
    """Migration 0021 backfills a succeeded Refund row for each refund credit note (and each
    payment refunded whole without one), so the books' refund rule holds on old data."""
    backfill = importlib.import_module("billing.migrations.0021_refund_attempts").backfill
    payment = paid_payment()
    support_refund(payment_id=payment.pk, amount=yen(1000), staff=staff, reason="A seat")
    note = CreditNote.objects.get(payment=payment)
    Refund.objects.all().delete()

    backfill(django_apps, None)

    [row] = Refund.objects.filter(payment=payment)
    assert (row.state, row.amount, row.processor_refund_id) == (
        "succeeded", yen(1000), note.processor_refund_id)
    assert_books_and_processor_agree()


def unapplied_charge() -> Payment:
    """A real ¥6,732 charge at the processor whose attempt paid for nothing Kanri could apply
    (its quote or invoice gone under it): the settle job refunds such a charge in full."""
    admin = AdminFactory()
    method = card_on_file(organisation=admin.organisation, acting_user=admin)
    customer_id = Subscription.objects.get(organisation=admin.organisation).processor_customer_id
    key = f"test:{uuid.uuid4().hex}"
    intent = gateway.intent_create(customer_id=customer_id, payment_method_id=method.processor_id,
                                   amount=yen(6732), idempotency_key=key)
    assert gateway.intent_confirm(intent_id=intent.processor_id,
                                  idempotency_key=key).status == "succeeded"
    return Payment.objects.create(organisation=admin.organisation, idempotency_key=key,
                                  amount=yen(6732), processor_id=intent.processor_id,
                                  state=Payment.State.SUCCEEDED,
                                  card_processor_id=method.processor_id)


def test_an_unapplied_charge_whose_refund_answer_is_lost_is_refunded_once_and_recorded(
        db, proxy):
    payment = unapplied_charge()
    proxy.drop_answers_to(r"POST /v1/refunds")

    with override_settings(STRIPE_API_BASE=proxy.url):
        [lost] = payments_settle_open()
    assert proxy.dropped and lost.kind == "unrecorded"
    payments_settle_open()  # the next run asks the processor
    payments_settle_open()

    payment.refresh_from_db()
    assert refunds_at_processor(payment) == [6732]
    assert payment.state == Payment.State.REFUNDED and payment.refund_id
    assert Refund.objects.get(payment=payment).processor_refund_id == payment.refund_id
    assert_books_and_processor_agree()


def test_a_refund_the_processor_never_received_is_failed_by_the_job_and_may_be_sent_again(
        staff):
    payment = paid_payment()
    with processor_down(), pytest.raises(ProcessorUnavailable):
        support_refund(payment_id=payment.pk, amount=yen(1000), staff=staff,
                       reason="A seat never used", confirmation="once-1")

    payments_settle_open()  # asks: the processor has no refund under the attempt's key

    attempt = Refund.objects.get(payment=payment)
    assert attempt.state == Refund.State.FAILED and "nothing was refunded" in \
        attempt.failure_reason
    assert refunds_at_processor(payment) == [] and not CreditNote.objects.exists()
    note = support_refund(payment_id=payment.pk, amount=yen(1000), staff=staff,
                          reason="A seat never used", confirmation="once-1")
    assert note.total == yen(1000) and refunds_at_processor(payment) == [1000]
    assert Refund.objects.get(payment=payment).state == Refund.State.SUCCEEDED
    assert_books_and_processor_agree()
