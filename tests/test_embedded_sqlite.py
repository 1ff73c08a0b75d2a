"""`make run`'s embedded default takes the concurrency it is given: web, worker and beat write to
one SQLite file at once, and nothing fails with "database is locked".

The processes are the ones Procfile.dev starts, as real processes on a fresh SQLite database in a
folder of this test's (no DATABASE_URL, REDIS_URL or CELERY_BROKER_URL: SQLite, the filesystem
broker and the file cache): Django's server, a Celery worker with two pool processes, and beat
with the database scheduler, its schedules set to every second, as staff could set them in
admin. While beat sends every sweep and the worker runs them over organisations whose trials,
renewals and grace periods are due, `demo_data --card` buys the demo plan at the payment sandbox,
the CRM reports usage through the API, and the demo administrator pays a change on the portal.
The processes run on the tests' settings (a fast password hash for the world's users).
"""
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.test_multiprocess import free_port

ROOT = Path(__file__).resolve().parents[1]
DUE = 6  # organisations of each kind the sweeps have to move
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
DEMO_ADMIN, DEMO_PASSWORD = "admin@demo.kanri.test", "kanri-demo-2026"

# Run by `manage.py shell` on the fresh database: the due organisations, an API key, and beat's
# schedules at every second. Prints the key.
WORLD = f"""
import datetime as dt
from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from api.services import api_key_create
from billing.models import Status, Subscription
from store import clock
from tests.accounts.factories import AdminFactory
from tests.billing.factories import subscription_in

past = clock.now() - dt.timedelta(days=1)
due = {{Status.TRIALING: {{"trial_ends_at": past}},
        Status.ACTIVE: {{"current_period_end": past}},
        Status.PAST_DUE: {{"grace_ends_at": past, "next_retry_at": None}}}}
for _ in range({DUE}):
    for status, changes in due.items():
        with transaction.atomic():
            subscription = subscription_in(status)
        Subscription.objects.filter(pk=subscription.pk).update(**changes)
admin = AdminFactory()
every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period="seconds")
PeriodicTask.objects.update(interval=every_second, crontab=None)
print(api_key_create(organisation=admin.organisation, name="CRM", acting_user=admin)[1])
"""


class Embedded:
    """A fresh var/ folder and the processes that write to its SQLite file."""

    def __init__(self, var: Path, sandbox: str):
        self.var = var
        self.url = f"http://127.0.0.1:{free_port()}"
        self.env = {key: value for key, value in os.environ.items()
                    if key not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}}
        self.env.update({"DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT),
                         "DEBUG": "1", "KANRI_VAR_DIR": str(var), "STRIPE_API_BASE": sandbox,
                         "KANRI_BASE_URL": self.url})
        self.processes: dict[str, subprocess.Popen] = {}

    def manage(self, *arguments: str) -> str:
        done = subprocess.run([sys.executable, str(ROOT / "manage.py"), *arguments], cwd=self.var,
                              env=self.env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def start(self, name: str, *command: str) -> None:
        with (self.var / f"{name}.log").open("w") as log:
            self.processes[name] = subprocess.Popen(command, cwd=self.var, env=self.env,
                                                    stdout=log, stderr=subprocess.STDOUT)

    def log(self, name: str) -> str:
        return (self.var / f"{name}.log").read_text()

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{self.log(name)[-3000:]}" for name in self.processes)

    def wait_for(self, what: str, condition, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            died = [name for name, process in self.processes.items()
                    if name != "demo" and process.poll() is not None]
            if died or time.monotonic() > deadline:
                why = f"exited: {', '.join(died)}" if died else "timed out"
                pytest.fail(f"waiting for {what}: {why}\n{self.logs()}")
            time.sleep(0.2)

    def query(self, sql: str) -> list[tuple]:
        """A read of the SQLite file, beside the processes (WAL: it waits for no writer)."""
        with sqlite3.connect(f"file:{self.var / 'kanri.sqlite3'}?mode=ro", uri=True,
                             timeout=30) as database:
            return database.execute(sql).fetchall()

    def serves(self) -> bool:
        try:
            return requests.get(f"{self.url}/healthz", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def embedded(tmp_path, payment_sandbox):
    site = Embedded(tmp_path, payment_sandbox)
    site.manage("migrate", "--no-input")
    site.manage("seed_catalog")
    site.manage("demo_data")  # what `make run` prepares before its processes start
    site.key = site.manage("shell", "-c", WORLD).strip().splitlines()[-1]
    try:
        yield site
    finally:
        site.stop()


def statuses(site: Embedded) -> dict[str, int]:
    return dict(site.query("SELECT status, count(*) FROM billing_subscription "
                           "GROUP BY status"))


def pay_a_change(site: Embedded) -> requests.Response:
    """The demo administrator adds a regular licence on the portal and pays it."""
    browser = requests.Session()
    browser.headers["Accept-Language"] = "en"

    def post(path: str, data: dict, *, form: str = "") -> requests.Response:
        """Submit the form on the page at `form` (`path` itself by default) to `path`."""
        page = browser.get(site.url + (form or path), timeout=60)
        assert page.status_code == 200, page.text[:500]
        return browser.post(site.url + path, {**data, "csrfmiddlewaretoken":
                                              CSRF.search(page.text).group(1)},
                            headers={"Referer": site.url + path}, timeout=60,
                            allow_redirects=False)

    assert post("/login/", {"username": DEMO_ADMIN, "password": DEMO_PASSWORD}
                ).status_code == 302
    review = post("/manage/plans/standard/", {"cycle": "monthly", "regular_licences": 6,
                                              "team_licences": 2, "storage_units": 0})
    assert review.status_code == 302, review.text[:2000]
    return post(review.headers["Location"] + "pay/", {}, form=review.headers["Location"])


def test_web_worker_and_beat_write_to_one_sqlite_file_at_once_without_a_lock_error(embedded):
    site = embedded
    before = statuses(site)
    assert before == {"free": 1 + 1, "trialing": DUE, "active": DUE, "past_due": DUE}

    # Beat and the worker start sweeping at once; the web process starts with the demo card and
    # plan, as Procfile.dev's web entry does.
    celery = [sys.executable, "-m", "celery", "-A", "store"]
    site.start("worker", *celery, "worker", "--loglevel", "INFO", "--concurrency", "2")
    site.start("beat", *celery, "beat", "--loglevel", "INFO",
               "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler")
    site.start("demo", sys.executable, str(ROOT / "manage.py"), "demo_data", "--card")
    site.start("web", sys.executable, str(ROOT / "manage.py"), "runserver", "--noreload",
               site.url.removeprefix("http://"))
    site.wait_for("the web server", site.serves)

    crm = {"Authorization": f"Bearer {site.key}"}
    reports = [requests.post(f"{site.url}/api/v1/usage", json={
        "records": n, "storage_mb": 0, "reported_at": f"2026-01-01T00:00:{n:02d}Z"},
        headers=crm, timeout=60).status_code for n in range(20)]
    site.wait_for("demo_data --card", lambda: site.processes["demo"].poll() is not None)
    paid = pay_a_change(site)
    site.wait_for("the sweeps", lambda: statuses(site) == {
        "free": 1 + DUE, "active": 1, "past_due": DUE, "locked": DUE})
    sweeps = site.query("SELECT count(*) FROM django_celery_beat_periodictask "
                        "WHERE task = 'billing.tasks.run_sweep'")[0][0]
    site.wait_for("every sweep run three times", lambda: [
        count >= 3 for _, count in site.query(
            "SELECT task_args, count(*) FROM django_celery_results_taskresult "
            "WHERE task_name = 'billing.tasks.run_sweep' GROUP BY task_args")
    ] == [True] * sweeps)

    assert site.processes["demo"].returncode == 0, site.log("demo")
    assert "Demo plan bought: Standard" in site.log("demo")
    assert reports == [200] * 20
    assert paid.status_code == 302 and "/manage/invoices/" in paid.headers["Location"], (
        paid.status_code, paid.text[:2000])
    assert site.query("SELECT regular_licences FROM billing_subscription WHERE status = "
                      "'active'") == [(6,)]
    assert site.query("SELECT count(*) FROM billing_invoice JOIN billing_subscription USING "
                      "(organisation_id) WHERE billing_subscription.status = 'active' AND "
                      "billing_invoice.state = 'paid'") == [(2,)]
    assert site.query("SELECT status, count(*) FROM django_celery_results_taskresult "
                      "GROUP BY status") == [("SUCCESS", site.query(
                          "SELECT count(*) FROM django_celery_results_taskresult")[0][0])]
    assert [name for name, process in site.processes.items()
            if name != "demo" and process.poll() is not None] == []
    for name in site.processes:
        assert "database is locked" not in site.log(name), site.log(name)
        assert "OperationalError" not in site.log(name), site.log(name)
