"""`make bench`: the page-speed bar. Each portal page under 50 concurrent clients, next to
a login-required page that runs one query (`/bench/one-query/signed-in/`, tests/bench/urls.py),
both served by gunicorn with DEBUG off, in the same run.

Reuses tests/bench/api.py's server (gunicorn with tests/bench/settings.py on a free loopback
port, sync workers; BENCH_WORKERS, default 5 as the issue's 2-core setup) and its summary. The
data: the demo organisation (`demo_data`) grown to 100 users on Standard monthly, bought by a
quote applied as paid under the subscription's row lock (no processor: the card charge is not
what is measured), one card on file (a stored row, never sent to the processor) and 500 payments
in its history (bulk inserts); for the lock screen, a second organisation locked by the real
renewal (no card) and lock sweep. The clients send the admin's session cookie (a session made
with `Client.force_login`); GETs need no CSRF token. The data stays for the next run.

For each page, rounds of BENCH_SECONDS each (BENCH_ROUNDS of them): the page, then the baseline,
then the baseline first in the next round, and so on. Prints one JSON line per page: its
requests per second, p99, the baseline's requests per second in the same rounds, the ratio, the
queries one request makes (measured in-process, after a first request) and the response size.
Needs PostgreSQL and Redis: otherwise one JSON line saying why it skipped. Not a test: nothing
here asserts a figure. Naming pages (`tests/bench/pages_load.py /pricing/`) runs only those.
"""
import datetime as dt
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.bench.settings")
os.environ.setdefault("BENCH_WORKERS", "5")
# The session the clients send is signed with the secret key: the server's, as api.py starts it.
os.environ.setdefault("SECRET_KEY", "bench-" + "x" * 50)
# The invitation emails the new users get: rendered and kept in memory, never queued or printed.
os.environ["EMAIL_BACKEND"] = "django.core.mail.backends.locmem.EmailBackend"

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext, override_settings  # noqa: E402

from accounts.models import LicenceType, Role, User  # noqa: E402
from accounts.services import organisation_sign_up, user_add  # noqa: E402
from billing.models import Payment, PaymentMethod, Status, Subscription  # noqa: E402
from billing.pricing import Change  # noqa: E402
from billing.services import lifecycle  # noqa: E402
from billing.services.quotes import quote_create  # noqa: E402
from billing.services.subscriptions import subscription_apply_quote  # noqa: E402
from store import clock  # noqa: E402
from store.celery import app  # noqa: E402
from store.models import Plan  # noqa: E402
from tests.bench.api import (  # noqa: E402
    CLIENTS,
    WORKERS,
    Phase,
    free_port,
    serve,
    summary,
)

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "4"))
ADMIN = "admin@demo.kanri.test"
LOCKED_ADMIN = "admin@locked-bench.kanri.test"
USERS = 100
PAYMENTS = 500
LOCK_SCREEN = "/manage/locked/"  # as the admin of a locked organisation (locked_organisation)
# The baseline: a login-required view that runs one query (tests/bench/urls.py).
BASELINE = "/bench/one-query/signed-in/"
PAGES = ["/manage/", "/manage/plans/", "/manage/plans/standard/", "/manage/users/", "/pricing/",
         "/manage/payment-methods/", "/manage/payments/", "/manage/activity/",
         "/manage/licences/add/", LOCK_SCREEN]


def log(message: str) -> None:
    print(f"  pages load bench: {message}", file=sys.stderr, flush=True)


def grow_demo_organisation() -> User:
    """The demo organisation on Standard with 100 users, a card row and 500 payments (once)."""
    app.conf.task_always_eager = True  # invitations sent in-process, to locmem
    call_command("demo_data", stdout=open(os.devnull, "w"))
    admin = User.objects.get(email=ADMIN)
    organisation = admin.organisation
    if Subscription.objects.get(organisation=organisation).status == Status.FREE:
        quote = quote_create(organisation=organisation, acting_user=admin, change=Change(
            Plan.objects.get(code="standard"), "monthly", USERS, 5, 0))
        with transaction.atomic():
            subscription = Subscription.objects.select_for_update().get(
                organisation=organisation)
            subscription_apply_quote(quote=quote, subscription=subscription, payment=None,
                                     actor=admin)
        call_command("demo_data", stdout=open(os.devnull, "w"))  # the people waiting join
    have = organisation.users.count()
    for number in range(have, USERS):
        user_add(organisation=organisation, email=f"user{number:03d}@demo.kanri.test",
                 name=f"ベンチ {number:03d}", role=Role.MEMBER,
                 licence_type=LicenceType.REGULAR, acting_user=admin)
    subscription = Subscription.objects.get(organisation=organisation)
    if not PaymentMethod.objects.filter(organisation=organisation).exists():
        subscription.default_payment_method = PaymentMethod.objects.create(
            organisation=organisation, processor_id="pm_bench_pages_load", brand="visa",
            last4="4242", exp_month=12, exp_year=2030)
        subscription.save(update_fields=["default_payment_method"])
    have = Payment.objects.filter(organisation=organisation).count()
    invoice = organisation.invoices.order_by("-pk").first()
    if have < PAYMENTS:
        start = clock.now() - dt.timedelta(days=400)
        Payment.objects.bulk_create(
            Payment(organisation=organisation, quote_id=invoice.quote_id, invoice=invoice,
                    idempotency_key=f"bench-pages:{n}", processor_id=f"pi_bench_{n:04d}",
                    amount=invoice.total, state=Payment.State.SUCCEEDED, card_brand="visa",
                    card_last4="4242", created_at=start + dt.timedelta(hours=n),
                    settled_at=start + dt.timedelta(hours=n))
            for n in range(have, PAYMENTS))
    return admin


def locked_organisation() -> User:
    """A second organisation whose admin sees the lock screen (once): Standard bought, its
    renewal due with no card on file (the real renewal: invoiced, failed, past due), then its
    grace period over and the real lock sweep run."""
    admin = User.objects.filter(email=LOCKED_ADMIN).first()
    if admin is None:
        admin = organisation_sign_up(org_name="ロック ベンチ株式会社", email=LOCKED_ADMIN,
                                     password="bench-password-not-used-2026")
        quote = quote_create(organisation=admin.organisation, acting_user=admin, change=Change(
            Plan.objects.get(code="standard"), "monthly", 3, 0, 0))
        with transaction.atomic():
            subscription = Subscription.objects.select_for_update().get(
                organisation=admin.organisation)
            subscription_apply_quote(quote=quote, subscription=subscription, payment=None,
                                     actor=admin)
    subscription = Subscription.objects.get(organisation=admin.organisation)
    if subscription.status == Status.ACTIVE:
        Subscription.objects.filter(pk=subscription.pk).update(
            current_period_end=clock.now() - dt.timedelta(hours=1))
        lifecycle.subscription_renew(subscription_id=subscription.pk)
    if Subscription.objects.get(pk=subscription.pk).status == Status.PAST_DUE:
        Subscription.objects.filter(pk=subscription.pk).update(
            grace_ends_at=clock.now() - dt.timedelta(minutes=1))
        lifecycle.sweep_locks()
    status = Subscription.objects.get(pk=subscription.pk).status
    if status != Status.LOCKED:
        raise SystemExit(f"the lock screen's organisation is {status}, not locked")
    return admin


def in_process(admin: User, pages: list[str]) -> tuple[str, dict]:
    """The admin's session id, and each page's status, queries and bytes after a first request."""
    client = Client(SERVER_NAME="127.0.0.1")
    client.force_login(admin)
    facts = {}
    for page in pages:
        client.get(page)
        with CaptureQueriesContext(connection) as queries:
            response = client.get(page)
        facts[page] = {"status": response.status_code, "queries": len(queries),
                       "bytes": len(response.content)}
    return client.cookies[settings.SESSION_COOKIE_NAME].value, facts


def page_phase(port: int, path: str, cookie: str, seconds: float) -> Phase:
    """GETs of one page with the admin's session cookie."""
    return Phase(port, "GET", path, seconds,
                 headers={"Cookie": f"{settings.SESSION_COOKIE_NAME}={cookie}"})


def main() -> None:
    if connection.vendor != "postgresql" or not settings.REDIS_URL:
        print(json.dumps({"bench": "pages_load", "skipped": (
            f"needs PostgreSQL and Redis, as production runs (database: {connection.vendor}, "
            f"REDIS_URL {'set' if settings.REDIS_URL else 'unset'}): set "
            "DATABASE_URL=postgres://... and REDIS_URL=redis://...")}))
        return
    pages = sys.argv[1:] or PAGES
    call_command("migrate", verbosity=0)
    admin = grow_demo_organisation()
    cookie, facts = in_process(admin, [page for page in pages if page != LOCK_SCREEN])
    cookies = dict.fromkeys(pages, cookie)
    if LOCK_SCREEN in pages:
        cookies[LOCK_SCREEN], lock_facts = in_process(locked_organisation(), [LOCK_SCREEN])
        facts.update(lock_facts)
    for page, fact in facts.items():
        if fact["status"] != 200:
            raise SystemExit(f"{page} answers {fact['status']} to the bench's admin")
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        server_version = cursor.fetchone()[0].split()[0]
    # DEBUG off serves the hashed, compressed files: collect them as a release would.
    with override_settings(STORAGES={**settings.STORAGES, "staticfiles": {
            "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}}):
        call_command("collectstatic", interactive=False, verbosity=0)
    port = free_port()
    log_file = tempfile.NamedTemporaryFile("w", prefix="kanri-pages-bench-", suffix=".log",
                                           delete=False)
    log(f"gunicorn with {WORKERS} workers on port {port}; {CLIENTS} clients, {len(pages)} "
        f"pages, {ROUNDS} rounds of {SECONDS:g} s each way")
    server = serve(port, log_file)
    machine = {"cpus": os.cpu_count(), "arch": platform.machine(),
               "python": platform.python_version(), "postgres": server_version,
               "gunicorn_workers": WORKERS, "clients": CLIENTS, "debug": False}
    try:
        page_phase(port, BASELINE, cookie, 1).run()  # warm-up: connections, caches
        for page in pages:
            page_phase(port, page, cookies[page], 1).run()
            runs: dict[str, list[Phase]] = {"page": [], "baseline": []}
            for number in range(ROUNDS):
                order = ["page", "baseline"] if number % 2 == 0 else ["baseline", "page"]
                for kind in order:
                    runs[kind].append(page_phase(port, page if kind == "page" else BASELINE,
                                                 cookies[page], SECONDS).run())
            measured, baseline = summary(runs["page"]), summary(runs["baseline"])
            print(json.dumps({
                "page": page, "req_s": measured["rps"], "p99_ms": measured["p99_ms"],
                "baseline_req_s": baseline["rps"], "baseline_p99_ms": baseline["p99_ms"],
                "ratio": round(measured["rps"] / baseline["rps"], 2),
                "queries": facts[page]["queries"], "bytes": facts[page]["bytes"],
                "errors": {**measured["errors"], **{f"baseline {name}": count for name, count
                                                    in baseline["errors"].items()}},
                "rounds": ROUNDS, "seconds_each": SECONDS, "machine": machine,
                "date": dt.date.today().isoformat(),
            }, ensure_ascii=False), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log_file.close()


if __name__ == "__main__":
    main()
