"""Every sweep run twice at once, then once more (real PostgreSQL, real localstripe): each
transition, history row, email and charge happens exactly once; the third run changes nothing."""
import datetime as dt
import threading
import time
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.db import connection, transaction

from billing.models import Notification, Payment, Status, Subscription, SubscriptionStatusChange
from billing.pricing import Change
from billing.services import lifecycle
from billing.services.cards import card_add
from billing.services.payments import quote_pay
from billing.services.quotes import quote_create
from store import clock
from store.models import Plan
from tests.accounts.factories import AdminFactory
from tests.billing.helpers import (
    DECLINING_CARD,
    card_on_file,
    processor_card,
    processor_charges,
)

pytestmark = [pytest.mark.usefixtures("payment_sandbox"), pytest.mark.postgres,
              pytest.mark.django_db(transaction=True)]
BOUGHT = dt.datetime(2027, 1, 10, 9, 0, tzinfo=ZoneInfo("Asia/Tokyo"))


def _run_everything(moment):
    try:
        with clock.travel(moment):
            for sweep in lifecycle.SWEEPS.values():
                sweep()
    finally:
        connection.close()


def _snapshot(admins):
    subscriptions = Subscription.objects.filter(organisation__in=[a.organisation for a in admins])
    charges = [intent for sub in subscriptions
               for intent in processor_charges(sub.processor_customer_id)]
    return {"statuses": sorted(subscriptions.values_list("status", flat=True)),
            "history": SubscriptionStatusChange.objects.count(),
            "notifications": Notification.objects.count(), "emails": len(mail.outbox),
            "payments": Payment.objects.count(),
            "charges": sorted(intent.status for intent in charges)}


def test_sweeps_run_twice_at_once_then_again_act_exactly_once(catalog):
    admins = [AdminFactory() for _ in range(5)]
    with clock.travel(BOUGHT):
        for admin in admins:
            card_on_file(organisation=admin.organisation, acting_user=admin)
            quote = quote_create(organisation=admin.organisation, acting_user=admin,
                                 change=Change(Plan.objects.get(code="standard"), "monthly",
                                               3, 0, 0))
            assert quote_pay(organisation=admin.organisation, quote_id=quote.pk,
                             acting_user=admin).invoice
    for admin in admins[3:]:
        card_on_file(organisation=admin.organisation, acting_user=admin, number=DECLINING_CARD)
    due = Subscription.objects.get(organisation=admins[0].organisation).current_period_end
    before = _snapshot(admins)

    threads = [threading.Thread(target=_run_everything, args=(due,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    after = _snapshot(admins)
    _run_everything(due + dt.timedelta(minutes=5))

    assert _snapshot(admins) == after  # the third run changes nothing
    assert after["statuses"] == sorted([Status.ACTIVE] * 3 + [Status.PAST_DUE] * 2)
    assert after["history"] - before["history"] == 2  # active → past_due, twice
    assert after["notifications"] - before["notifications"] == 5  # 3 receipts + 2 failed
    assert after["emails"] - before["emails"] == 5
    assert after["payments"] - before["payments"] == 5  # one attempt per renewal
    assert after["charges"].count("succeeded") - before["charges"].count("succeeded") == 3


@pytest.mark.redis
def test_a_real_worker_runs_what_beat_enqueues(catalog):
    """Each beat entry's task and arguments, sent through the Redis broker as beat sends them,
    run on a real worker: a trial past its end returns to Free."""
    import importlib
    import json

    from celery.contrib.testing.worker import start_worker
    from django.apps import apps
    from django_celery_beat.models import PeriodicTask

    from billing.services.subscriptions import trial_start
    from store.celery import app

    for migration in ("0007_schedule_lifecycle_sweeps", "0008_unsent_notifications_index",
                      "0016_notification_kinds_and_reminders"):
        # a transactional test before this one flushed the tables
        importlib.import_module(f"billing.migrations.{migration}").schedule(apps, None)
    admin = AdminFactory()
    with clock.travel(BOUGHT):
        trial_start(organisation=admin.organisation, plan=Plan.objects.get(code="standard"),
                    acting_user=admin)
    entries = {json.loads(entry.args)[0]: entry for entry in
               PeriodicTask.objects.filter(task="billing.tasks.run_sweep")}
    assert set(entries) == set(lifecycle.SWEEPS) and all(e.enabled for e in entries.values())
    entry = entries["trial_ends"]
    app.conf.task_always_eager = False

    with clock.travel(BOUGHT + dt.timedelta(days=16)), start_worker(
            app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        result = app.send_task(entry.task, args=json.loads(entry.args))
        answer = result.get(timeout=30)
        # The sweep enqueued its batch's email task on commit; the same worker sends it.
        for _ in range(100):
            if Notification.objects.filter(kind="trial_ended", sent_at__isnull=False).exists():
                break
            time.sleep(0.1)

    assert answer == {"trials_ended": 1}
    assert [message.to for message in mail.outbox] == [[admin.email]]
    assert Subscription.objects.get(organisation=admin.organisation).status == Status.FREE


def _wait_for_a_lock_wait(thread, outcome: dict, timeout: float = 10) -> None:
    """Until another session of this database waits for a row lock (asked from inside a
    transaction: the statistics snapshot is cleared before each look)."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline and thread.is_alive():
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                           "current_database() AND wait_event_type = 'Lock'")
            if cursor.fetchone()[0]:
                return
            time.sleep(0.05)
    raise AssertionError(f"the renewal never waited for the subscription's row: {outcome}")


def test_a_renewal_that_waited_for_the_row_charges_the_card_made_default_meanwhile(catalog):
    """The renewal's row lock once joined the default card: waiting while the card changed,
    PostgreSQL re-checked the (outer) join against the old card's row, found none, and the
    renewal saw no card and failed the renewal. Now it charges the new default card."""
    admin = AdminFactory()
    with clock.travel(BOUGHT):
        card_on_file(organisation=admin.organisation, acting_user=admin)
        quote = quote_create(organisation=admin.organisation, acting_user=admin,
                             change=Change(Plan.objects.get(code="standard"), "monthly", 3, 0, 0))
        assert quote_pay(organisation=admin.organisation, quote_id=quote.pk,
                         acting_user=admin).invoice
        other = card_add(organisation=admin.organisation, payment_method_id=processor_card(),
                         acting_user=admin, make_default=False)
    subscription = Subscription.objects.get(organisation=admin.organisation)
    outcome = {}

    def renew():
        try:
            with clock.travel(subscription.current_period_end):
                outcome["kind"] = lifecycle.subscription_renew(subscription_id=subscription.pk)
        except Exception as error:  # noqa: BLE001 - the test reports what the renewal raised
            outcome["error"] = error
        finally:
            connection.close()

    renewal = threading.Thread(target=renew)
    with transaction.atomic():  # the admin makes the other card the default, slowly
        Subscription.objects.select_for_update().get(pk=subscription.pk)
        renewal.start()
        _wait_for_a_lock_wait(renewal, outcome)
        Subscription.objects.filter(pk=subscription.pk).update(default_payment_method=other)
    renewal.join(timeout=60)

    assert outcome == {"kind": "succeeded"}
    payment = Payment.objects.filter(invoice__kind="renewal").get()
    assert payment.card_processor_id == other.processor_id
    assert Subscription.objects.get(pk=subscription.pk).status == Status.ACTIVE
