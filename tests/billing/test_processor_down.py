"""The processor down (a stopped service: a closed loopback port refuses the connection) during
card setup, a renewal and a dunning retry: a clear message, nothing half-applied, and once it is
back the next attempt charges exactly once."""
import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse

from billing.models import Invoice, Notification, Payment, Status, Subscription
from billing.pricing import Change
from billing.services import charging, lifecycle
from billing.services.payments import quote_pay
from billing.services.quotes import quote_create
from store import clock
from store.models import Plan
from tests.billing.faults import processor_down
from tests.billing.helpers import DECLINING_CARD, GOOD_CARD, card_on_file, processor_charges

pytestmark = pytest.mark.usefixtures("payment_sandbox")
BOUGHT = dt.datetime(2027, 1, 10, 9, 0, tzinfo=ZoneInfo("Asia/Tokyo"))


def sub(admin) -> Subscription:
    return Subscription.objects.get(organisation=admin.organisation)


def bought(admin, number=GOOD_CARD):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    with clock.travel(BOUGHT):
        quote = quote_create(organisation=admin.organisation, acting_user=admin, change=Change(
            Plan.objects.get(code="standard"), "monthly", 3, 0, 0))
        assert quote_pay(organisation=admin.organisation, quote_id=quote.pk,
                         acting_user=admin).charged
    if number != GOOD_CARD:
        card_on_file(organisation=admin.organisation, acting_user=admin, number=number)
    return sub(admin).current_period_end


def renewal_charges(admin) -> int:
    renewal = Invoice.objects.get(organisation=admin.organisation, kind="renewal")
    ids = set(renewal.payments.exclude(processor_id="").values_list("processor_id", flat=True))
    return sum(1 for intent in processor_charges(sub(admin).processor_customer_id)
               if intent.id in ids and intent.status == "succeeded")


def test_card_setup_with_the_processor_down_says_so_and_stores_nothing(admin_client, admin):
    with processor_down():
        response = admin_client.post(reverse("billing:card_setup"))
    assert response.status_code == 503
    assert "not reachable" in response.json()["error"]
    assert sub(admin).processor_customer_id == ""
    assert not admin.organisation.payment_methods.exists()
    assert admin_client.post(reverse("billing:card_setup")).status_code == 200  # back: works


def payment_failed_emails(admin) -> int:
    return Notification.objects.filter(organisation=admin.organisation,
                                       kind=Notification.Kind.PAYMENT_FAILED).count()


def test_a_renewal_with_the_processor_down_stays_active_and_the_next_run_charges_once(
        admin, admin_client):
    due = bought(admin)
    with processor_down():
        with clock.travel(due):
            lifecycle.sweep_renewals()
    subscription = sub(admin)
    # Nothing was charged and no card was refused: not a failed payment for the customer.
    assert subscription.status == Status.ACTIVE
    assert subscription.open_invoice is not None and subscription.payment_failed_at is None
    assert payment_failed_emails(admin) == 0
    [attempt] = Payment.objects.filter(invoice__kind="renewal")
    assert (attempt.state, attempt.failure_code, attempt.processor_id) == (
        "failed", "processor_unavailable", "")
    assert "did not answer: nothing was charged" in attempt.failure_reason
    assert subscription.next_retry_at == due + dt.timedelta(minutes=15)
    with processor_down(), clock.travel(due + dt.timedelta(minutes=5)):
        assert lifecycle.sweep_renewals() == {}  # not before its time: no attempt piles up
        page = admin_client.get(reverse("billing:details"), HTTP_ACCEPT_LANGUAGE="en")
    assert Payment.objects.filter(invoice__kind="renewal").count() == 1
    retry_at = subscription.next_retry_at.astimezone(ZoneInfo(admin.organisation.time_zone))
    assert ("could not reach the payment service, so nothing was charged. It is tried again "
            f"automatically at {retry_at:%Y-%m-%d %H:%M}") in page.content.decode()

    with clock.travel(due + dt.timedelta(minutes=15)):  # the sweep's next run: back
        assert lifecycle.sweep_renewals() == {"succeeded": 1}
        assert lifecycle.sweep_renewals() == {}  # a rerun charges nothing more
    subscription = sub(admin)
    assert subscription.status == Status.ACTIVE and subscription.open_invoice is None
    assert subscription.paid_invoice.kind == "renewal" and subscription.current_period_start == due
    assert Invoice.objects.filter(organisation=admin.organisation, kind="renewal").count() == 1
    assert renewal_charges(admin) == 1 and payment_failed_emails(admin) == 0
    with clock.travel(due + dt.timedelta(minutes=20)):
        page = admin_client.get(reverse("billing:details"), HTTP_ACCEPT_LANGUAGE="en")
    assert 'data-testid="renewal-retrying"' not in page.content.decode()


def silent_renewal(admin) -> tuple[dt.datetime, Subscription]:
    """Bought, then the renewal's charge met a stopped processor: active, invoice open."""
    due = bought(admin)
    with processor_down(), clock.travel(due):
        lifecycle.sweep_renewals()
    subscription = sub(admin)
    assert subscription.status == Status.ACTIVE and subscription.open_invoice is not None
    return due, subscription


def test_the_admin_pays_a_renewal_the_processor_did_not_answer_without_waiting(
        admin, admin_client):
    due, subscription = silent_renewal(admin)
    with clock.travel(due + dt.timedelta(minutes=5)):
        page = admin_client.get(reverse("billing:details"), HTTP_ACCEPT_LANGUAGE="en")
        assert 'data-testid="renew"' in page.content.decode()  # inside the retrying notice
        with processor_down():  # still down: told so, still active, nothing refused
            refused = admin_client.post(reverse("billing:renew"), HTTP_ACCEPT_LANGUAGE="en")
    assert refused.status_code == 503
    assert "nothing was charged" in refused.content.decode()
    assert sub(admin).status == Status.ACTIVE and payment_failed_emails(admin) == 0
    # The admin's attempt does not put off the sweep's retry already scheduled.
    assert sub(admin).next_retry_at == subscription.next_retry_at == due + dt.timedelta(
        minutes=15)

    with clock.travel(due + dt.timedelta(minutes=6)):  # back: paid now, not at next_retry_at
        paid = admin_client.post(reverse("billing:renew"), HTTP_ACCEPT_LANGUAGE="en",
                                 follow=True)
    assert "Paid: your subscription is renewed." in paid.content.decode()
    subscription = sub(admin)
    assert subscription.status == Status.ACTIVE and subscription.open_invoice is None
    assert subscription.current_period_start == due and subscription.next_retry_at is None
    with clock.travel(due + dt.timedelta(hours=2)):
        assert lifecycle.sweep_renewals() == {}  # the sweep has nothing left to charge
    assert renewal_charges(admin) == 1 and payment_failed_emails(admin) == 0
    assert Payment.objects.filter(invoice__kind="renewal").count() == 3  # 2 unanswered, 1 paid


def test_a_processor_down_past_the_first_retry_day_starts_dunning_from_the_due_date(admin):
    due = bought(admin)
    with processor_down():
        for hours in (0, 6, 23):
            with clock.travel(due + dt.timedelta(hours=hours)):
                lifecycle.sweep_renewals()
        assert sub(admin).status == Status.ACTIVE and payment_failed_emails(admin) == 0
        with clock.travel(due + dt.timedelta(days=1, minutes=5)):
            lifecycle.sweep_renewals()
    subscription = sub(admin)
    assert subscription.status == Status.PAST_DUE
    assert subscription.grace_ends_at == due + dt.timedelta(days=15)  # from the due date
    assert payment_failed_emails(admin) == 1
    assert Payment.objects.filter(invoice__kind="renewal",
                                  failure_code="processor_unavailable").count() == 4

    with clock.travel(due + dt.timedelta(days=3)):
        lifecycle.sweep_retries()
        lifecycle.sweep_retries()
    assert sub(admin).status == Status.ACTIVE and renewal_charges(admin) == 1


def test_a_dunning_retry_with_the_processor_down_emails_nothing_and_the_next_retry_charges_once(
        admin):
    due = bought(admin, number=DECLINING_CARD)
    with clock.travel(due):
        lifecycle.sweep_renewals()  # declined: past due
    assert payment_failed_emails(admin) == 1
    card_on_file(organisation=admin.organisation, acting_user=admin, number=GOOD_CARD)
    with processor_down(), clock.travel(due + dt.timedelta(days=1)):
        lifecycle.sweep_retries()
    subscription = sub(admin)
    assert subscription.status == Status.PAST_DUE
    assert subscription.grace_ends_at == due + dt.timedelta(days=15)  # grace not restarted
    # That day's retry is spent, as a refusal's would be (no attempt every hour of an outage)...
    assert subscription.next_retry_at == due + dt.timedelta(days=3)
    assert payment_failed_emails(admin) == 1  # ...but nothing was refused: no email
    assert Payment.objects.filter(invoice__kind="renewal",
                                  failure_code="processor_unavailable").count() == 1

    with clock.travel(due + dt.timedelta(days=1, hours=1)):  # an hour later: not due again
        lifecycle.sweep_retries()
    assert sub(admin).status == Status.PAST_DUE
    with clock.travel(due + dt.timedelta(days=3)):
        lifecycle.sweep_retries()
    assert sub(admin).status == Status.ACTIVE and renewal_charges(admin) == 1


class WorkerDied(BaseException):
    """Stands in for a process that dies between committing an attempt and calling the
    processor (the real SIGKILL is tests/billing/test_worker_killed.py's; here the moment
    matters, so the call itself raises). A BaseException, like SystemExit: a sweep logs and
    skips a failing row (`except Exception`), but nothing catches a death."""


def test_a_renewal_whose_process_died_before_the_call_stays_active_and_charges_once(
        admin, monkeypatch):
    due = bought(admin)

    def died(**kwargs):
        raise WorkerDied

    with monkeypatch.context() as patch, clock.travel(due):
        patch.setattr(charging, "attempt_run", died)
        with pytest.raises(WorkerDied):
            lifecycle.sweep_renewals()
    [attempt] = Payment.objects.filter(invoice__kind="renewal")
    assert attempt.is_open and attempt.processor_id == ""  # committed, never sent

    after_lease = due + charging.lease_length() + dt.timedelta(minutes=1)
    with clock.travel(after_lease):
        charging.payments_settle_open()  # the five-minute sweep
    attempt.refresh_from_db()
    assert (attempt.state, attempt.failure_code) == ("failed", "not_sent")
    subscription = sub(admin)
    assert subscription.status == Status.ACTIVE and payment_failed_emails(admin) == 0
    assert subscription.next_retry_at == after_lease + dt.timedelta(minutes=15)

    with clock.travel(subscription.next_retry_at):
        assert lifecycle.sweep_renewals() == {"succeeded": 1}
    assert sub(admin).open_invoice is None and renewal_charges(admin) == 1
