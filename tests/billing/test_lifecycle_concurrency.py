"""Every sweep run twice at once, then once more (real PostgreSQL, real localstripe): each
transition, history row, email and charge happens exactly once; the third run changes nothing."""
import datetime as dt
import threading
import time
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.db import connection

from billing.models import Notification, Payment, Status, Subscription, SubscriptionStatusChange
from billing.pricing import Change
from billing.services import lifecycle
from billing.services.payments import quote_pay
from billing.services.quotes import quote_create
from store import clock
from store.models import Plan
from tests.accounts.factories import AdminFactory
from tests.billing.helpers import DECLINING_CARD, card_on_file, processor_charges

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
