"""The sweeps that move many rows work a batch at a time with a fixed number of statements, and
their emails go out in one task per batch, each email once even when the mail server fails."""
import datetime as dt

import pytest
from django.core import mail
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext, override_settings

from billing.models import Notification, Status, Subscription, SubscriptionStatusChange
from billing.notifications import Event, notifications_send, notify_all
from billing.services import lifecycle
from store import clock
from tests.billing.factories import subscription_in
from tests.billing.faults import closed_port

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)

# sweep, the status its rows start in, the field that makes them due, the status they end in
SWEEPS = [
    (lifecycle.sweep_trial_ends, Status.TRIALING, "trial_ends_at", Status.FREE),
    (lifecycle.sweep_locks, Status.PAST_DUE, "grace_ends_at", Status.LOCKED),
    (lifecycle.sweep_moves_to_free, Status.LOCKED, "locked_at", Status.FREE),
]


def due_rows(status: str, field: str, count: int) -> list[int]:
    """Subscriptions in `status` the way the sweeps leave them: a past-due or locked one has its
    open renewal invoice (renewed with no card on file); then made due now."""
    if status == Status.TRIALING:
        ids = [subscription_in(status).pk for _ in range(count)]
    else:
        ids = [subscription_in(Status.ACTIVE).pk for _ in range(count)]
        ends = Subscription.objects.get(pk=ids[0]).current_period_end
        with clock.travel(ends + DAY):
            lifecycle.sweep_renewals()
        if status == Status.LOCKED:
            with clock.travel(ends + 20 * DAY):
                lifecycle.sweep_locks()
        assert not Subscription.objects.filter(pk__in=ids, open_invoice=None).exists()
    assert set(Subscription.objects.filter(pk__in=ids).values_list("status", flat=True)) == {
        status}
    Subscription.objects.filter(pk__in=ids).update(**{field: clock.now() - 70 * DAY})
    return ids


def statements(sweep) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        sweep()
    return [query["sql"].split(" ", 1)[0] for query in queries.captured_queries]


@pytest.mark.parametrize("sweep, status, field, after", SWEEPS,
                         ids=[sweep.__name__ for sweep, *_ in SWEEPS])
def test_a_sweep_runs_the_same_statements_for_one_due_row_as_for_five(
        sweep, status, field, after, django_capture_on_commit_callbacks):
    one = due_rows(status, field, 1)
    with django_capture_on_commit_callbacks() as sends_for_one:
        for_one = statements(sweep)
    five = due_rows(status, field, 5)
    with django_capture_on_commit_callbacks() as sends_for_five:
        for_five = statements(sweep)

    assert for_five == for_one
    assert len(sends_for_one) == len(sends_for_five) == 1  # one email task per batch
    for ids in (one, five):
        assert set(Subscription.objects.filter(pk__in=ids)
                   .values_list("status", flat=True)) == {after}
        assert SubscriptionStatusChange.objects.filter(
            subscription__in=ids, to_status=after).count() == len(ids)
    assert statements(sweep) == statements(sweep)  # nothing due: the same few reads each time


def test_a_batch_larger_than_the_batch_size_is_worked_in_several(monkeypatch):
    ids = due_rows(Status.TRIALING, "trial_ends_at", 5)
    monkeypatch.setattr(lifecycle, "BATCH", 2)

    assert lifecycle.sweep_trial_ends() == {"trials_ended": 5}
    assert Notification.objects.filter(kind="trial_ended").count() == 5
    assert not Subscription.objects.filter(pk__in=ids).exclude(status=Status.FREE).exists()


def test_the_free_move_keeps_the_licences_up_to_the_free_plans_users():
    few, many = due_rows(Status.TRIALING, "trial_ends_at", 2)
    Subscription.objects.filter(pk=few).update(regular_licences=2)
    Subscription.objects.filter(pk=many).update(regular_licences=40, team_licences=5,
                                                storage_units=2)
    lifecycle.sweep_trial_ends()

    assert dict(Subscription.objects.filter(pk__in=[few, many])
                .values_list("pk", "regular_licences")) == {few: 2, many: 3}
    assert (Subscription.objects.filter(pk=many)
            .values_list("team_licences", "storage_units", "plan__code").get()) == (0, 0, "free")


def test_an_event_recorded_twice_is_one_notification_and_one_email(
        django_capture_on_commit_callbacks):
    organisation = subscription_in(Status.TRIALING).organisation
    event = Event(organisation.pk, Notification.Kind.TRIAL_ENDED, "trial_ended:test", {"p": 1})
    with django_capture_on_commit_callbacks(execute=True):
        assert notify_all([event, Event(organisation.pk, event.kind, "other:test", {})]) == 2
        assert notify_all([event]) == 0

    assert Notification.objects.filter(key="trial_ended:test").count() == 1
    assert len(mail.outbox) == 2
    assert notifications_send(keys=["trial_ended:test", "other:test"]) == 0  # already sent



def test_an_email_the_mail_server_refused_stays_unsent_and_the_retry_sends_it_once():
    organisation = subscription_in(Status.TRIALING).organisation
    with transaction.atomic():
        notify_all([Event(organisation.pk, Notification.Kind.TRIAL_ENDED, "trial_ended:smtp",
                          {"plan": "Standard"})])

    # A real SMTP connection to a port that refuses it: the task's retry policy catches OSError.
    with (override_settings(EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
                            EMAIL_HOST="127.0.0.1", EMAIL_PORT=closed_port()),
          pytest.raises(OSError)):
        notifications_send(keys=["trial_ended:smtp"])
    assert Notification.objects.get(key="trial_ended:smtp").sent_at is None

    assert notifications_send(keys=["trial_ended:smtp"]) == 1
    assert notifications_send(keys=["trial_ended:smtp"]) == 0
    assert len(mail.outbox) == 1
    assert Notification.objects.get(key="trial_ended:smtp").sent_at is not None


def test_emails_whose_send_task_never_ran_are_sent_by_the_unsent_emails_sweep(
        django_capture_on_commit_callbacks):
    organisation = subscription_in(Status.TRIALING).organisation
    # The fault: the send task is lost (its on-commit callbacks are captured and never run).
    with django_capture_on_commit_callbacks() as lost:
        notify_all([Event(organisation.pk, Notification.Kind.TRIAL_ENDED, "trial_ended:lost",
                          {"plan": "Standard"})])
    with clock.travel(clock.now() + dt.timedelta(minutes=4)), django_capture_on_commit_callbacks():
        notify_all([Event(organisation.pk, Notification.Kind.TRIAL_ENDED, "trial_ended:new",
                          {"plan": "Standard"})])
    assert len(lost) == 1 and mail.outbox == []

    with clock.travel(clock.now() + dt.timedelta(minutes=6)):
        assert lifecycle.SWEEPS["unsent_emails"]() == {"sent": 1, "failed_batches": 0}
        assert lifecycle.SWEEPS["unsent_emails"]() == {"sent": 0, "failed_batches": 0}
    # The newer one is left to its own task, still on its way.
    assert [message.to for message in mail.outbox] == [[organisation.users.get().email]]
    assert list(Notification.objects.filter(sent_at=None).values_list("key", flat=True)) == [
        "trial_ended:new"]
