"""Redis restarted while tasks are queued: a restart without persistence loses the
queue, which FLUSHDB on the test's broker database does to the letter. Nothing is lost for good:
the next beat run of the sweep moves what is due, and the unsent_emails sweep sends what the lost
email tasks would have."""
import datetime as dt

import pytest
import redis
from django.conf import settings
from django.core import mail

from billing.models import Notification, Status, Subscription
from billing.services import lifecycle
from store import clock
from store.celery import app
from tests.billing.factories import subscription_in

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def queued() -> int:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL).llen("celery")


def test_tasks_lost_with_a_restarted_redis_are_done_by_the_next_sweeps(catalog):
    trials = [subscription_in(Status.TRIALING) for _ in range(3)]
    Subscription.objects.filter(pk__in=[t.pk for t in trials]).update(
        trial_ends_at=clock.now() - dt.timedelta(hours=1))
    app.control.purge()
    app.conf.task_always_eager, eager = False, app.conf.task_always_eager
    try:
        app.send_task("billing.tasks.run_sweep", args=["trial_ends"])  # beat's message...
        assert queued() == 1
        redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()  # ...lost in the restart
        assert queued() == 0

        # Beat's next run, done here by a web process while no worker runs: the trials end and
        # their email task is queued after commit, then lost in a second restart.
        assert lifecycle.SWEEPS["trial_ends"]() == {"trials_ended": 3}
        assert queued() == 1
        redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    finally:
        app.conf.task_always_eager = eager

    assert Notification.objects.filter(kind="trial_ended", sent_at=None).count() == 3
    with clock.travel(clock.now() + dt.timedelta(minutes=6)):
        assert lifecycle.SWEEPS["unsent_emails"]() == {"sent": 3, "failed_batches": 0}
        assert lifecycle.SWEEPS["unsent_emails"]() == {"sent": 0, "failed_batches": 0}
        assert lifecycle.SWEEPS["trial_ends"]() == {"trials_ended": 0}
    assert len(mail.outbox) == 3
    assert set(Subscription.objects.filter(pk__in=[t.pk for t in trials])
               .values_list("status", flat=True)) == {Status.FREE}
