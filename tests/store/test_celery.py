"""Tasks go through the real Redis broker to a real worker."""
import time

import pytest
from celery.contrib.testing.worker import start_worker
from django.core import mail

from accounts import services
from accounts.models import LicenceType, Role
from store.celery import app
from tests.accounts.factories import AdminFactory


@pytest.fixture
def worker(transactional_db):
    app.conf.task_always_eager = False
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        yield


@pytest.mark.redis
def test_adding_a_user_sends_the_invitation_through_the_broker_and_a_worker(worker):
    admin = AdminFactory()

    services.user_add(organisation=admin.organisation, email="via-broker@example.test",
                      role=Role.MEMBER, licence_type=LicenceType.REGULAR, acting_user=admin)
    deadline = time.monotonic() + 20
    while not mail.outbox and time.monotonic() < deadline:
        time.sleep(0.1)

    assert [m.to for m in mail.outbox] == [["via-broker@example.test"]]
    assert "/reset/" in mail.outbox[0].body
