"""A Celery worker SIGKILLed in the middle of a sweep, then restarted: every due transition and
every email happens once. A real worker process on the Redis broker, the test's
PostgreSQL database, batches of 40 rows so the kill lands between commits."""
import datetime as dt
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from djmoney.money import Money

from accounts.models import Organisation, Role, User
from billing.models import Notification, Status, Subscription, SubscriptionStatusChange
from billing.services import lifecycle
from store import clock
from store.celery import app
from store.models import Plan

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]
ROWS, BATCH = 600, 40
ROOT = Path(__file__).resolve().parents[2]


def trials_ended_long_ago(standard: Plan) -> list[int]:
    organisations = Organisation.objects.bulk_create(
        Organisation(name=f"killed worker {n}") for n in range(ROWS))
    User.objects.bulk_create(
        User(email=f"admin{org.pk}@killed.test", organisation=org, role=Role.ADMIN, password="!")
        for org in organisations)
    # Due on any clock: the worker process reads the real one, this process the test clock.
    ended = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    return [subscription.pk for subscription in Subscription.objects.bulk_create(
        Subscription(organisation=org, plan=standard, currency="JPY", regular_licences=3,
                     status=Status.TRIALING, trial_ends_at=ended,
                     credit_balance=Money(0, "JPY")) for org in organisations)]


LOGS: list[Path] = []


def worker() -> subprocess.Popen:
    database = settings.DATABASES["default"]
    env = {**os.environ, "KANRI_SWEEP_BATCH": str(BATCH),
           "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:"
                           f"{database['PORT']}/{database['NAME']}",
           "CELERY_BROKER_URL": settings.CELERY_BROKER_URL, "DEBUG": "1",
           "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend"}
    log = Path(tempfile.mkstemp(prefix="killed-worker-", suffix=".log")[1])
    LOGS.append(log)
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "store", "worker", "--pool=solo",
         "--without-heartbeat", "--without-mingle", "--without-gossip", "--loglevel=INFO"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    # Ready when it answers a ping (the task is sent only then).
    wait_for(lambda: process.poll() is None and bool(app.control.ping(timeout=0.5)),
             timeout=90)
    return process


def moved() -> int:
    return SubscriptionStatusChange.objects.filter(to_status=Status.FREE).count()


def wait_for(condition, timeout=90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        logs = "\n".join(log.read_text()[-3000:] for log in LOGS if log.exists())
        assert time.monotonic() < deadline, f"timed out; the workers said:\n{logs}"
        time.sleep(0.01)


def test_a_worker_killed_mid_sweep_then_restarted_moves_and_emails_each_row_once(catalog):
    ids = trials_ended_long_ago(Plan.objects.get(code="standard"))
    app.control.purge()  # nothing another run left queued on this broker
    first = worker()
    try:
        app.send_task("billing.tasks.run_sweep", args=["trial_ends"])
        wait_for(lambda: moved() >= BATCH)  # a batch or more committed...
        first.send_signal(signal.SIGKILL)  # ...and the worker dies wherever it is
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    partly = moved()
    assert BATCH <= partly < ROWS, partly  # killed mid-sweep
    connection.close()

    second = worker()
    try:
        app.send_task("billing.tasks.run_sweep", args=["trial_ends"])  # beat's next run
        wait_for(lambda: moved() >= ROWS)
        with clock.travel(clock.now() + dt.timedelta(minutes=6)):
            lifecycle.SWEEPS["unsent_emails"]()  # what the killed batch's email task missed
        wait_for(lambda: not Notification.objects.filter(sent_at=None).exists())
    finally:
        second.terminate()
        second.wait(timeout=10)

    assert moved() == ROWS  # each row moved once
    assert set(Subscription.objects.filter(pk__in=ids).values_list("status", flat=True)) == {
        Status.FREE}
    assert SubscriptionStatusChange.objects.filter(subscription_id__in=ids).count() == ROWS
    notes = Notification.objects.filter(kind="trial_ended")
    assert notes.count() == ROWS and not notes.filter(sent_at=None).exists()
