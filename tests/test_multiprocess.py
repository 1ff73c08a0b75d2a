"""Two web processes and two Celery workers at once: nothing one process keeps in its
own memory that the other misses.

Two real gunicorn servers (one sync worker each, on free loopback ports) and two real Celery
workers (the Redis broker) run against this test's PostgreSQL database and the same Redis, as
two hosts behind a load balancer would. Requests alternate between the servers: login
throttling, the API's entitlements cache and its rate limit, sessions and CSRF tokens must hold
across them; the two workers sweep the same due rows at once and each transition and email
happens once. The servers run with DEBUG on (plain-HTTP cookies, as a TLS-terminating proxy
would send them) and the tests' settings (a fast password hash for the factories' users). The
emails go through Django's SMTP backend to a loopback SMTP sink this test runs: the one part
that stands in for the outside world.
"""
import collections
import datetime as dt
import os
import re
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import redis
import requests
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from djmoney.money import Money

from accounts.models import LicenceType, Organisation, Role, User
from api.services import api_key_create
from billing.entitlements import Entitlements
from billing.entitlements_cache import cache_key
from billing.models import Notification, Status, Subscription, SubscriptionStatusChange
from store.celery import app
from store.models import Plan
from tests.accounts.factories import PASSWORD, AdminFactory
from tests.billing.factories import paid_quote_applied

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[1]
RATE = 20  # the servers' KANRI_API_RATE_PER_MINUTE
BATCH = 20  # the workers' KANRI_SWEEP_BATCH
WORKERS = ("mp-w1", "mp-w2")  # each also reads a queue of its own name
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SmtpSink(socketserver.ThreadingTCPServer):
    """A loopback mail server that accepts every message and keeps its recipients."""

    daemon_threads = True

    def __init__(self):
        self.recipients: list[str] = []  # one entry per recipient per message delivered
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _SmtpSession)

    def delivered(self, recipients: list[str]) -> None:
        with self.lock:
            self.recipients.extend(recipients)

    def count(self, addresses: set[str]) -> collections.Counter:
        with self.lock:
            return collections.Counter(r for r in self.recipients if r in addresses)


class _SmtpSession(socketserver.StreamRequestHandler):
    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self):
        self.reply("220 sink")
        recipients: list[str] = []
        while line := self.rfile.readline():
            verb = line[:4].upper()
            if verb == b"RCPT":
                recipients.append(line.decode().partition("<")[2].partition(">")[0].lower())
            elif verb == b"MAIL":
                recipients = []
            elif verb == b"DATA":
                self.reply("354 end with a line holding a dot")
                while self.rfile.readline() not in (b".\r\n", b""):
                    pass
                self.server.delivered(recipients)
            elif verb == b"QUIT":
                self.reply("221 bye")
                return
            self.reply("250 ok")  # EHLO, HELO, MAIL, RCPT, RSET, NOOP and the message


class Site:
    """Two web servers (A and B) and two workers, their logs, and how to wait for them."""

    def __init__(self, sink: SmtpSink):
        self.sink = sink
        database = settings.DATABASES["default"]
        self.env = {
            **os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT),
            "DEBUG": "1", "SECRET_KEY": "multiprocess-" + "k" * 50,
            "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:"
                            f"{database['PORT']}/{database['NAME']}",
            "REDIS_URL": settings.REDIS_URL, "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "KANRI_API_RATE_PER_MINUTE": str(RATE), "KANRI_SWEEP_BATCH": str(BATCH),
            "AXES_FAILURE_LIMIT": str(settings.AXES_FAILURE_LIMIT),
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(sink.server_address[1])}
        self.processes: list[subprocess.Popen] = []
        self.logs: list[Path] = []
        self.a, self.b = (f"http://127.0.0.1:{port}" for port in (free_port(), free_port()))

    def start(self, name: str, command: list[str]) -> None:
        log = Path(tempfile.mkstemp(prefix=f"multiprocess-{name}-", suffix=".log")[1])
        self.logs.append(log)
        with log.open("w") as out:
            self.processes.append(subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=out,
                                                   stderr=subprocess.STDOUT))

    def start_all(self) -> None:
        for url in (self.a, self.b):
            self.start("web", [sys.executable, "-m", "gunicorn", "store.wsgi",
                               "--bind", url.removeprefix("http://"), "--workers", "1",
                               "--worker-class", "sync", "--log-level", "warning"])
        for name in WORKERS:
            self.start(name, [sys.executable, "-m", "celery", "-A", "store", "worker",
                              "--pool=solo", "-n", f"{name}@kanri", "-Q", f"celery,{name}",
                              "--without-heartbeat", "--without-mingle", "--without-gossip",
                              "--loglevel=INFO"])
        # Polled together: they start side by side.
        self.wait_for(lambda: all(self.answers(url) for url in (self.a, self.b))
                      and len(app.control.ping([f"{name}@kanri" for name in WORKERS],
                                               timeout=0.5)) == len(WORKERS), timeout=60)

    def answers(self, url: str) -> bool:
        try:
            return requests.get(f"{url}/healthz", timeout=5).status_code == 200
        except (requests.ConnectionError, requests.Timeout):  # not listening, or still loading
            return False

    def wait_for(self, condition, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            exited = [process.args[2] for process in self.processes if process.poll() is not None]
            if exited or time.monotonic() > deadline:
                said = "\n".join(log.read_text()[-2000:] for log in self.logs)
                pytest.fail(f"{'exited: ' + ', '.join(exited) if exited else 'timed out'}; "
                            f"the processes said:\n{said}")
            time.sleep(0.02)

    def stop(self) -> None:
        # The quick stop (SIGQUIT) of gunicorn and Celery: the tests are over, nothing is owed.
        for process in self.processes:
            process.send_signal(signal.SIGQUIT)
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self.logs:
            log.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def site(django_db_setup):
    sink = SmtpSink()
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    app.control.purge()  # nothing another run left queued on this broker
    running = Site(sink)
    try:
        running.start_all()
        yield running
    finally:
        running.stop()
        sink.shutdown()
        sink.server_close()


class Browser:
    """One person's browser, its requests spread over both servers as a load balancer would:
    one cookie jar (cookies belong to the host, whatever its port)."""

    def __init__(self):
        self.session = requests.Session()
        self.session.headers["Accept-Language"] = "en"
        self.login_token = ""

    def get(self, server: str, path: str) -> requests.Response:
        return self.session.get(server + path, allow_redirects=False, timeout=30)

    def form_token(self, server: str, path: str) -> str:
        page = self.get(server, path)
        assert page.status_code == 200, page.text[:500]
        return CSRF.search(page.text).group(1)

    def post(self, server: str, path: str, data: dict, *, token: str) -> requests.Response:
        return self.session.post(server + path, {**data, "csrfmiddlewaretoken": token},
                                 headers={"Referer": server + path}, allow_redirects=False,
                                 timeout=30)

    def log_in(self, server: str, email: str, password: str = PASSWORD) -> requests.Response:
        """A login with the token of the first login page this browser opened (on `server`)."""
        self.login_token = self.login_token or self.form_token(server, "/login/")
        return self.post(server, "/login/", {"username": email, "password": password},
                         token=self.login_token)


class Crm:
    """The CRM calling the API with one key, on the server it is told."""

    def __init__(self, key: str):
        self.headers = {"Authorization": f"Bearer {key}"}

    def get(self, server: str, path: str) -> requests.Response:
        return requests.get(f"{server}/api/v1/{path}", headers=self.headers, timeout=30)

    def post(self, server: str, path: str, body: dict) -> dict:
        answer = requests.post(f"{server}/api/v1/{path}", json=body, headers=self.headers,
                               timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def regular_users(self, server: str) -> int:
        answer = self.get(server, "entitlements")
        assert answer.status_code == 200, answer.text
        return answer.json()["usage"]["users"][LicenceType.REGULAR]


def test_wrong_passwords_spread_over_both_servers_lock_out_at_the_same_count_as_on_one(site):
    alone, spread = AdminFactory(), AdminFactory()
    limit = settings.AXES_FAILURE_LIMIT
    on_one, on_both = Browser(), Browser()

    one = [on_one.log_in(site.a, alone.email, "guess").status_code for _ in range(limit + 1)]
    both = [on_both.log_in((site.a, site.b)[n % 2], spread.email, "guess").status_code
            for n in range(limit + 1)]
    right_password_on_b = on_both.log_in(site.b, spread.email)
    right_password_on_a = on_both.log_in(site.a, spread.email)

    # Refused from the limit-th wrong password on, wherever the attempts went.
    assert one == both == [200] * (limit - 1) + [429, 429]
    assert right_password_on_b.status_code == right_password_on_a.status_code == 429
    assert "sessionid" not in on_both.session.cookies


def settled(organisation: Organisation) -> None:
    """As if the last change's "forgotten" marker had expired: answers are kept again."""
    cache.delete(cache_key(organisation.pk))


def standard_admin() -> User:
    """The administrator of an organisation on a Standard month with three licences."""
    admin = AdminFactory()
    with transaction.atomic():
        paid_quote_applied(admin=admin, plan="standard", regular=3)
    return admin


def test_a_change_made_through_one_server_is_in_the_other_servers_next_api_answer(site):
    admin = standard_admin()
    crm = Crm(api_key_create(organisation=admin.organisation, name="CRM",
                             acting_user=admin)[1])
    portal = Browser()
    assert portal.log_in(site.a, admin.email).status_code == 302

    def kept_on_b() -> int:
        """B's answer, now in the cache for every process to read."""
        settled(admin.organisation)
        users = crm.regular_users(site.b)
        assert isinstance(cache.get(cache_key(admin.organisation.pk)), Entitlements)
        return users

    assert kept_on_b() == 1
    added = portal.post(site.a, "/manage/users/add/",
                        {"email": "new@multiprocess.test", "name": "New", "role": Role.MEMBER,
                         "licence_type": LicenceType.REGULAR},
                        token=portal.form_token(site.a, "/manage/users/add/"))
    assert added.status_code == 302, added.text[:2000]
    assert crm.regular_users(site.b) == 2

    assert kept_on_b() == 2
    person = User.objects.get(email="new@multiprocess.test")
    path = f"/manage/users/{person.pk}/deactivate/"
    assert portal.post(site.a, path, {}, token=portal.form_token(site.a, path)).status_code == 302
    assert crm.regular_users(site.b) == 1

    kept_on_b()
    limit = crm.get(site.b, "entitlements").json()["limits"]["records"]
    assert crm.post(site.b, "authorize", {"action": "create", "resource": "records",
                                          "amount": 10})["allowed"] is True
    crm.post(site.a, "usage", {"records": limit - 5, "storage_mb": 0,
                               "reported_at": dt.datetime.now(dt.UTC).isoformat()})
    refused = crm.post(site.b, "authorize", {"action": "create", "resource": "records",
                                             "amount": 10})
    assert refused["allowed"] is False, refused


def test_the_api_rate_is_counted_across_both_servers(site):
    admin = AdminFactory()
    for attempt in range(2):  # the count restarts when the minute turns: then once more
        crm = Crm(api_key_create(organisation=admin.organisation, name=f"CRM {attempt}",
                                 acting_user=admin)[1])
        minute = int(time.time()) // 60
        statuses = [crm.get((site.a, site.b)[n % 2], "entitlements").status_code
                    for n in range(RATE + 6)]
        if int(time.time()) // 60 == minute:
            break

    assert statuses == [200] * RATE + [429] * 6


def test_a_session_and_a_form_token_from_one_server_are_accepted_by_the_other(site):
    admin = standard_admin()
    browser = Browser()

    logged_in = browser.log_in(site.a, admin.email)
    manage_on_b = browser.get(site.b, "/manage/users/")
    token_from_a = browser.form_token(site.a, "/manage/users/add/")
    form = {"email": "via-b@multiprocess.test", "name": "Via B", "role": Role.MEMBER,
            "licence_type": LicenceType.REGULAR}
    forged = browser.post(site.b, "/manage/users/add/", form, token="x" * 64)
    added_on_b = browser.post(site.b, "/manage/users/add/", form, token=token_from_a)

    assert logged_in.status_code == 302
    assert manage_on_b.status_code == 200
    assert admin.email in manage_on_b.text
    assert Browser().get(site.b, "/manage/users/").status_code == 302  # no session: to login
    assert forged.status_code == 403
    assert added_on_b.status_code == 302, added_on_b.text[:2000]
    assert User.objects.get(email="via-b@multiprocess.test").organisation == admin.organisation


def due_rows(plan: Plan, count: int, status: str, **due) -> set[str]:
    """`count` organisations, each with one admin and a subscription in `status` that became due
    long ago (on any clock: the workers read the real one); their admins' emails."""
    organisations = Organisation.objects.bulk_create(
        Organisation(name=f"{status} {n}") for n in range(count))
    admins = User.objects.bulk_create(
        User(email=f"admin{org.pk}@{status}.multiprocess.test", organisation=org,
             role=Role.ADMIN, password="!") for org in organisations)
    Subscription.objects.bulk_create(
        Subscription(organisation=org, plan=plan, currency="JPY", regular_licences=3,
                     status=status, credit_balance=Money(0, "JPY"), **due)
        for org in organisations)
    return {admin.email for admin in admins}


def both_workers_sweep(site: Site, sweep: str) -> list[dict]:
    """Send the sweep to each worker and hold both mid-batch (the history table locked here)
    until each has locked a batch of its own: the two runs overlap for certain. Their results."""
    table = SubscriptionStatusChange._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f'LOCK TABLE "{table}" IN SHARE ROW EXCLUSIVE MODE')
        runs = [app.send_task("billing.tasks.run_sweep", args=[sweep], queue=name)
                for name in WORKERS]

        def both_waiting() -> bool:
            cursor.execute("SELECT count(*) FROM pg_locks WHERE relation = %s::regclass "
                           "AND NOT granted", [table])
            return cursor.fetchone()[0] == len(WORKERS)

        site.wait_for(both_waiting)
    return [run.get(timeout=60, interval=0.05) for run in runs]


def idle(active: dict | None) -> bool:
    """Both workers answered and neither is running a task."""
    return active is not None and len(active) == len(WORKERS) and not any(active.values())


def test_two_workers_sweeping_the_same_due_rows_move_and_email_each_once(site, catalog):
    app.conf.task_always_eager = False  # the workers run the tasks; their results are read here
    long_ago = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    trials = due_rows(catalog["standard"], 200, Status.TRIALING, trial_ends_at=long_ago)
    overdue = due_rows(catalog["standard"], 120, Status.PAST_DUE, grace_ends_at=long_ago,
                       payment_failed_at=long_ago)

    trial_runs = both_workers_sweep(site, "trial_ends")
    lock_runs = both_workers_sweep(site, "locks")
    site.wait_for(lambda: not Notification.objects.filter(sent_at=None).exists()
                  and sum(site.sink.count(trials | overdue).values()) >= len(trials | overdue))
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    site.wait_for(lambda: broker.llen("celery") == 0 and idle(app.control.inspect(
        [f"{name}@kanri" for name in WORKERS], timeout=0.5).active()))

    ended = [run["trials_ended"] for run in trial_runs]
    locked = [run["locked"] for run in lock_runs]
    assert 0 not in ended and 0 not in locked, (ended, locked)  # each worker moved rows
    assert (sum(ended), sum(locked)) == (len(trials), len(overdue))  # and none twice
    statuses = collections.Counter(Subscription.objects.filter(
        organisation__users__email__in=trials | overdue).values_list("status", flat=True))
    assert statuses == {Status.FREE: len(trials), Status.LOCKED: len(overdue)}
    changes = SubscriptionStatusChange.objects.filter(
        subscription__organisation__users__email__in=trials | overdue)
    assert changes.count() == changes.values("subscription").distinct().count() == len(
        trials | overdue)
    assert collections.Counter(Notification.objects.values_list("kind", flat=True)) == {
        Notification.Kind.TRIAL_ENDED: len(trials), Notification.Kind.LOCKED: len(overdue)}
    assert site.sink.count(trials | overdue) == {email: 1 for email in trials | overdue}
