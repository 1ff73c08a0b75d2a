"""Tasks go through the real Redis broker to a real worker; the local filesystem broker keeps
every file it writes under the var directory, whatever directory a process starts in."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from django.core import mail

from accounts import services
from accounts.models import LicenceType, Role
from store.celery import app
from tests.accounts.factories import AdminFactory

ROOT = Path(__file__).resolve().parents[2]


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


def test_the_filesystem_broker_writes_nothing_into_the_working_directory(tmp_path):
    """kombu's exchange tables (a `control/` folder) used to land wherever a worker, beat or a
    ping was started, and got committed from the repository root."""
    workdir, var_dir = tmp_path / "anywhere", tmp_path / "var"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in {"CELERY_BROKER_URL", "DATABASE_URL"}}
    env.update(DEBUG="1", KANRI_VAR_DIR=str(var_dir), PYTHONPATH=str(ROOT),
               DJANGO_SETTINGS_MODULE="store.settings")
    # A broadcast binds its reply queue; sending a task binds the default queue.
    script = ("import django; django.setup(); from store.celery import app; "
              "app.control.ping(timeout=0.1); app.send_task('kanri.nobody_listens')")

    result = subprocess.run([sys.executable, "-c", script], cwd=workdir, env=env,
                            capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert list(workdir.iterdir()) == []
    tables = {path.name for path in (var_dir / "broker" / "control").iterdir()}
    assert {"celery.exchange", "reply.celery.pidbox.exchange"} <= tables
