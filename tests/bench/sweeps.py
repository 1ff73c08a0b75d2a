"""`make bench`: the subscription-life sweeps at scale on PostgreSQL, against raw SQL, same run.

Seeds BENCH_SUBSCRIPTIONS (100,000) organisations, each with one admin and one subscription, then
for each sweep stages the subscriptions so that half of them are due and:
- runs the sweep as beat would, with Celery eager, so the email task each batch enqueues renders
  and sends its emails (to Django's locmem backend) as a worker would on the same database; the
  time inside those tasks is measured apart: `ratio` is the sweep's own time (what beat's task
  takes: every transition, history row and notification recorded, the send tasks enqueued) over
  the raw UPDATE, `ratio_with_email_delivery` adds the workers' rendering and sending;
- restores the same rows and times a raw SQL `UPDATE` of them (the floor: no history, no email);
- restores them again and times one set-based SQL statement that also writes the history and the
  notification rows (what a sweep without per-row work could approach; emails not sent).
Prints one JSON line per sweep. DEBUG is off while timing, as in production. Name sweeps to run
only those (`python tests/bench/sweeps.py trial_ends`); each takes minutes at 100,000.

Needs DATABASE_URL=postgres://... pointing at a database of its own: it migrates it, refuses to
run when subscriptions it did not make are due, and deletes its rows at the end. On SQLite it
prints a JSON line saying why it skipped. Not a test: nothing here asserts a time.
"""
import datetime as dt
import json
import logging
import os
import platform
import re
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "store.settings")

import django  # noqa: E402

django.setup()

from celery.signals import task_postrun, task_prerun  # noqa: E402
from django.core import mail  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.db.models import Q  # noqa: E402
from django.test.utils import override_settings  # noqa: E402
from djmoney.money import Money  # noqa: E402

from accounts.models import Organisation, Role, User  # noqa: E402
from billing.models import (  # noqa: E402
    Invoice,
    Notification,
    Status,
    Subscription,
    SubscriptionStatusChange,
)
from billing.services import lifecycle  # noqa: E402
from store import clock  # noqa: E402
from store.celery import app  # noqa: E402
from store.models import Plan, Price  # noqa: E402

ROWS = int(os.environ.get("BENCH_SUBSCRIPTIONS", "100000"))
PREFIX = "sweepbench "  # every organisation the bench makes is named so; nothing else is touched
NOW = clock.now().replace(microsecond=0)
DUE, LATER = NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=7)
LOCMEM = "django.core.mail.backends.locmem.EmailBackend"

ORG = Organisation._meta.db_table
USER = User._meta.db_table
SUB = Subscription._meta.db_table
INVOICE = Invoice._meta.db_table
CHANGE = SubscriptionStatusChange._meta.db_table
NOTE = Notification._meta.db_table
BENCH_ORGS = f"SELECT id FROM {ORG} WHERE name LIKE '{PREFIX}%%'"


def log(message: str) -> None:
    print(f"  sweeps bench: {message}", file=sys.stderr, flush=True)


def sql(statement: str, params=None) -> int:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.rowcount


# Seeding and staging ------------------------------------------------------------------------

def seed(standard: Plan, price: Price) -> None:
    organisations = Organisation.objects.bulk_create(
        (Organisation(name=f"{PREFIX}{i}") for i in range(ROWS)), batch_size=5000)
    User.objects.bulk_create(
        (User(email=f"admin{org.pk}@sweepbench.kanri.test", organisation=org, role=Role.ADMIN,
              password="!") for org in organisations), batch_size=5000)
    subscriptions = Subscription.objects.bulk_create(
        (Subscription(organisation=org, plan=standard, plan_price=price, currency="JPY",
                      regular_licences=3, credit_balance=Money(0, "JPY"))
         for org in organisations), batch_size=5000)
    subtotal = price.amount * 3
    tax = Money((subtotal.amount / 10).quantize(Decimal(1)), "JPY")
    zero = Money(0, "JPY")
    Invoice.objects.bulk_create(
        (Invoice(number=f"BENCH-{sub.pk:09d}", organisation_id=sub.organisation_id,
                 subscription=sub, state=Invoice.State.OPEN, kind=Invoice.Kind.RENEWAL,
                 period_start=DUE - dt.timedelta(days=15), period_end=DUE + dt.timedelta(days=15),
                 currency="JPY", subtotal=subtotal, tax_rate=Decimal("0.10"),
                 tax_rounding="ROUND_DOWN", tax=tax, total=subtotal + tax, credit_applied=zero,
                 amount_paid=zero, credit_to_account=zero, seller_name="Kanri K.K.",
                 buyer_name="bench", plan_name=standard.name, plan_name_ja=standard.name_ja,
                 issued_at=DUE - dt.timedelta(days=15))
         for sub in subscriptions), batch_size=5000)


def forget_history() -> None:
    sql(f"DELETE FROM {NOTE} WHERE organisation_id IN ({BENCH_ORGS})")
    sql(f"DELETE FROM {CHANGE} WHERE subscription_id IN "
        f"(SELECT id FROM {SUB} WHERE organisation_id IN ({BENCH_ORGS}))")


def vacuum() -> None:
    for table in (SUB, INVOICE, CHANGE, NOTE, USER, ORG):
        sql(f"VACUUM ANALYZE {table}")


def stage(sweep: str, standard: Plan, price: Price) -> int:
    """Put every bench subscription back in the sweep's starting state (every other one due);
    returns how many are due."""
    forget_history()
    common = dict(standard=standard.pk, price=price.pk, due=DUE, later=LATER,
                  started=DUE - dt.timedelta(days=45))
    if sweep == "locks":
        # Renewal failed 15 days before grace ends; the open renewal invoice is unpaid.
        sql(f"""UPDATE {SUB} s SET status = 'past_due', plan_id = %(standard)s,
                plan_price_id = %(price)s, regular_licences = 3, team_licences = 0,
                storage_units = 0, current_period_start = %(started)s,
                current_period_end = %(started)s + interval '30 days',
                billing_anchor = %(started)s, paid_invoice_id = NULL, open_invoice_id = i.id,
                payment_failed_at = %(started)s + interval '30 days',
                grace_ends_at = CASE WHEN s.id %% 2 = 0 THEN %(due)s ELSE %(later)s END,
                next_retry_at = NULL, retries_made = 4, locked_at = NULL, trial_ends_at = NULL,
                version = 1, updated_at = %(started)s
            FROM {INVOICE} i
            WHERE i.subscription_id = s.id AND s.organisation_id IN ({BENCH_ORGS})""", common)
        state, moment = "past_due", "grace_ends_at"
    else:
        sql(f"""UPDATE {SUB} s SET status = 'trialing', plan_id = %(standard)s,
                plan_price_id = %(price)s, regular_licences = 3, team_licences = 0,
                storage_units = 0, current_period_start = NULL, current_period_end = NULL,
                billing_anchor = NULL, paid_invoice_id = NULL, open_invoice_id = NULL,
                payment_failed_at = NULL, grace_ends_at = NULL, next_retry_at = NULL,
                retries_made = 0, locked_at = NULL,
                trial_ends_at = CASE WHEN s.id %% 2 = 0 THEN %(due)s ELSE %(later)s END,
                version = 1, updated_at = %(started)s
            WHERE s.organisation_id IN ({BENCH_ORGS})""", common)
        state, moment = "trialing", "trial_ends_at"
    vacuum()
    return Subscription.objects.filter(status=state, **{f"{moment}__lte": NOW}).count()


def cleanup() -> None:
    forget_history()
    sql(f"UPDATE {SUB} SET open_invoice_id = NULL, paid_invoice_id = NULL "
        f"WHERE organisation_id IN ({BENCH_ORGS})")
    sql(f"DELETE FROM {INVOICE} WHERE organisation_id IN ({BENCH_ORGS})")
    sql(f"DELETE FROM {SUB} WHERE organisation_id IN ({BENCH_ORGS})")
    sql(f"DELETE FROM {USER} WHERE organisation_id IN ({BENCH_ORGS})")
    sql(f"DELETE FROM {ORG} WHERE name LIKE '{PREFIX}%%'")


def foreign_due() -> int:
    """Subscriptions the bench did not make that the measured sweeps would move."""
    return (Subscription.objects.exclude(organisation__name__startswith=PREFIX)
            .filter(Q(status=Status.PAST_DUE, grace_ends_at__lte=NOW)
                    | Q(status=Status.TRIALING, trial_ends_at__lte=NOW)).count())


# Measuring ------------------------------------------------------------------------------------

class Meter:
    """Counts and times every statement the sweep runs through Django's cursor (BEGIN and COMMIT
    are not statements there), and apart from them what ran inside the email tasks it enqueued."""

    def __init__(self):
        self.kinds: Counter[str] = Counter()
        self.kind_seconds: Counter[str] = Counter()
        self.db_seconds = 0.0
        self.tasks = self.task_statements = self.emails = 0
        self.task_seconds = 0.0
        self._task_started: float | None = None
        task_prerun.connect(self.task_start, weak=False)
        task_postrun.connect(self.task_end, weak=False)

    def close(self) -> None:
        task_prerun.disconnect(self.task_start)
        task_postrun.disconnect(self.task_end)

    def task_start(self, **kwargs) -> None:
        self._task_started = time.perf_counter()

    def task_end(self, **kwargs) -> None:
        self.task_seconds += time.perf_counter() - self._task_started
        self._task_started = None
        self.tasks += 1
        self.emails += len(getattr(mail, "outbox", []))
        mail.outbox = []  # 50,000 messages need not stay in memory

    def __call__(self, execute, statement, params, many, context):
        start = time.perf_counter()
        try:
            return execute(statement, params, many, context)
        finally:
            elapsed, kind = time.perf_counter() - start, label(statement)
            if self._task_started is not None:  # the email tasks' own, counted apart
                self.task_statements += 1
            else:
                self.db_seconds += elapsed
                self.kinds[kind] += 1
                self.kind_seconds[kind] += elapsed


def label(statement: str) -> str:
    verb = statement.lstrip().split(None, 1)[0].upper()
    if verb in {"SAVEPOINT", "RELEASE", "ROLLBACK"}:
        return "SAVEPOINT" if verb == "SAVEPOINT" else f"{verb} SAVEPOINT"
    match = re.search(r'(?:FROM|INTO|UPDATE)\s+"(\w+)"', statement)
    suffix = " FOR UPDATE" if verb == "SELECT" and " FOR UPDATE" in statement else ""
    return f"{verb} {match.group(1) if match else '?'}{suffix}"


def timed_sql(statement: str, params: dict) -> tuple[float, int]:
    start = time.perf_counter()
    with transaction.atomic():
        rows = sql(statement, params)
    return time.perf_counter() - start, rows


RAW = {
    "locks": f"""UPDATE {SUB} SET status = 'locked', locked_at = %(now)s, next_retry_at = NULL,
                 version = version + 1, updated_at = %(now)s
                 WHERE status = 'past_due' AND grace_ends_at <= %(now)s""",
    "trial_ends": f"""UPDATE {SUB} SET status = 'free', plan_id = %(free)s,
                 regular_licences = GREATEST(1, LEAST(regular_licences, %(free_users)s)),
                 team_licences = 0, storage_units = 0, plan_price_id = NULL,
                 team_price_id = NULL, storage_price_id = NULL, current_period_start = NULL,
                 current_period_end = NULL, billing_anchor = NULL, paid_invoice_id = NULL,
                 open_invoice_id = NULL, payment_failed_at = NULL, grace_ends_at = NULL,
                 next_retry_at = NULL, locked_at = NULL, trial_ends_at = NULL,
                 version = version + 1, updated_at = %(now)s
                 WHERE status = 'trialing' AND trial_ends_at <= %(now)s""",
}

# The same moves with their history and notification rows, each in one statement.
_ADMINS = (f"(SELECT coalesce(jsonb_agg(u.email ORDER BY u.email), '[]') FROM {USER} u "
           "WHERE u.organisation_id = m.organisation_id AND u.role = 'admin' AND u.is_active)")
SET_BASED = {
    "locks": f"""WITH moved AS (
            UPDATE {SUB} SET status = 'locked', locked_at = %(now)s, next_retry_at = NULL,
                version = version + 1, updated_at = %(now)s
            WHERE status = 'past_due' AND grace_ends_at <= %(now)s
            RETURNING id, organisation_id, open_invoice_id, locked_at),
        history AS (
            INSERT INTO {CHANGE} (subscription_id, from_status, to_status, actor_id, actor_kind,
                                  reason, created_at)
            SELECT id, 'past_due', 'locked', NULL, 'system',
                   'grace period over, renewal unpaid', %(now)s FROM moved)
        INSERT INTO {NOTE} (organisation_id, kind, key, context, recipients, created_at)
        SELECT m.organisation_id, 'locked', 'locked:' || m.id || ':' || m.open_invoice_id,
               jsonb_build_object(
                   'amount', '¥' || to_char(i.total - i.credit_applied, 'FM999,999,999,990'),
                   'free_on', to_char((m.locked_at AT TIME ZONE o.time_zone)
                                      + interval '2 months', 'YYYY-MM-DD')),
               {_ADMINS}, %(now)s
        FROM moved m JOIN {INVOICE} i ON i.id = m.open_invoice_id
                     JOIN {ORG} o ON o.id = m.organisation_id
        ON CONFLICT (key) DO NOTHING""",
    "trial_ends": f"""WITH due AS (
            SELECT s.id, s.plan_id FROM {SUB} s
            WHERE s.status = 'trialing' AND s.trial_ends_at <= %(now)s FOR UPDATE),
        moved AS (
            UPDATE {SUB} s SET status = 'free', plan_id = %(free)s,
                regular_licences = GREATEST(1, LEAST(regular_licences, %(free_users)s)),
                team_licences = 0, storage_units = 0, plan_price_id = NULL,
                team_price_id = NULL, storage_price_id = NULL, current_period_start = NULL,
                current_period_end = NULL, billing_anchor = NULL, paid_invoice_id = NULL,
                open_invoice_id = NULL, payment_failed_at = NULL, grace_ends_at = NULL,
                next_retry_at = NULL, locked_at = NULL, trial_ends_at = NULL,
                version = version + 1, updated_at = %(now)s
            FROM due WHERE s.id = due.id
            RETURNING s.id, s.organisation_id, due.plan_id AS was),
        history AS (
            INSERT INTO {CHANGE} (subscription_id, from_status, to_status, actor_id, actor_kind,
                                  reason, created_at)
            SELECT id, 'trialing', 'free', NULL, 'system', 'trial ended without a purchase',
                   %(now)s FROM moved)
        INSERT INTO {NOTE} (organisation_id, kind, key, context, recipients, created_at)
        SELECT m.organisation_id, 'trial_ended', 'trial_ended:' || m.id || ':' || p.code,
               jsonb_build_object('plan', CASE WHEN o.language = 'ja' THEN p.name_ja
                                          ELSE p.name END),
               {_ADMINS}, %(now)s
        FROM moved m JOIN {Plan._meta.db_table} p ON p.id = m.was
                     JOIN {ORG} o ON o.id = m.organisation_id
        ON CONFLICT (key) DO NOTHING""",
}
SWEEPS = {"locks": (lifecycle.sweep_locks, "locked", Status.LOCKED),
          "trial_ends": (lifecycle.sweep_trial_ends, "trials_ended", Status.FREE)}


def measure(name: str, standard: Plan, price: Price, free: Plan, machine: dict,
            seed_seconds: float) -> dict:
    sweep, result_key, after = SWEEPS[name]
    params = {"now": NOW, "free": free.pk, "free_users": free.max_users or 1}

    due = stage(name, standard, price)
    log(f"{name}: sweeping {due:,} due of {ROWS:,}")
    meter = Meter()
    try:
        with (override_settings(DEBUG=False, EMAIL_BACKEND=LOCMEM), clock.travel(NOW),
              connection.execute_wrapper(meter)):
            start = time.perf_counter()
            result = sweep()
            seconds = time.perf_counter() - start
    finally:
        meter.close()
    moved = Subscription.objects.filter(organisation__name__startswith=PREFIX,
                                        status=after).count()
    history = SubscriptionStatusChange.objects.filter(
        subscription__organisation__name__startswith=PREFIX).count()
    notes = Notification.objects.filter(organisation__name__startswith=PREFIX,
                                        sent_at__isnull=False).count()
    assert result[result_key] == moved == history == notes == meter.emails == due, (
        result, moved, history, notes, meter.emails, due)

    with override_settings(DEBUG=False):
        stage(name, standard, price)
        raw_seconds, raw_rows = timed_sql(RAW[name], params)
        stage(name, standard, price)
        set_seconds, set_rows = timed_sql(SET_BASED[name], params)
    assert raw_rows == set_rows == due, (raw_rows, set_rows, due)

    statements = sum(meter.kinds.values())
    batches = meter.kinds[f"SELECT {SUB} FOR UPDATE"]
    sweep_seconds = seconds - meter.task_seconds
    return {
        "sweep": name, "rows": due, "subscriptions": ROWS, "batch": lifecycle.BATCH,
        "seconds": round(sweep_seconds, 2), "raw_update_seconds": round(raw_seconds, 3),
        "ratio": round(sweep_seconds / raw_seconds, 1),
        "seconds_with_email_delivery": round(seconds, 2),
        "ratio_with_email_delivery": round(seconds / raw_seconds, 1),
        "statements": statements,
        "statements_per_1000_rows": round(statements * 1000 / due, 1),
        "batches": batches, "statements_per_batch": round(statements / max(batches - 1, 1), 1),
        "db_seconds": round(meter.db_seconds, 2),
        "email_tasks": meter.tasks, "emails_sent": meter.emails,
        "email_task_seconds": round(meter.task_seconds, 2),
        "email_task_statements": meter.task_statements,
        "set_based_sql_seconds": round(set_seconds, 3),
        "statement_kinds": {kind: {"count": count,
                                   "seconds": round(meter.kind_seconds[kind], 2)}
                            for kind, count in meter.kinds.most_common()},
        "seed_seconds": round(seed_seconds, 1),
        "machine": machine, "date": dt.date.today().isoformat(),
    }


def main() -> None:
    names = sys.argv[1:] or list(SWEEPS)
    if unknown := set(names) - set(SWEEPS):
        sys.exit(f"unknown sweeps {sorted(unknown)}; choose from {list(SWEEPS)}")
    if connection.vendor != "postgresql":
        print(json.dumps({"bench": "sweeps", "skipped": f"needs PostgreSQL, not "
                          f"{connection.vendor}: set DATABASE_URL=postgres://... (a database "
                          "of its own; the bench seeds 100,000 subscriptions)"}))
        return
    call_command("migrate", verbosity=0)
    # 100,000 "sent …" and "Task … succeeded" lines would time the terminal, not the sweep.
    logging.disable(logging.INFO)
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    cleanup()  # rows a crashed run left behind
    if foreign := foreign_due():
        print(json.dumps({"bench": "sweeps", "skipped": f"the database holds {foreign} due "
                          "subscriptions the bench did not make (the sweeps would move them); "
                          "point DATABASE_URL at a database of its own"}))
        return
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        server = cursor.fetchone()[0]
    machine = {"cpus": os.cpu_count(), "arch": platform.machine(),
               "python": platform.python_version(), "postgres": server.split()[0],
               "debug": False}
    standard, free = Plan.objects.get(code="standard"), Plan.objects.get(code="free")
    price = (Price.objects.filter(plan=standard, cycle="monthly", amount_currency="JPY")
             .order_by("-effective_from").first())
    log(f"seeding {ROWS:,} organisations, admins, subscriptions and open invoices")
    start = time.perf_counter()
    try:
        with override_settings(DEBUG=False):
            seed(standard, price)
        seed_seconds = time.perf_counter() - start
        for name in names:
            print(json.dumps(measure(name, standard, price, free, machine, seed_seconds)),
                  flush=True)
    finally:
        with override_settings(DEBUG=False):
            cleanup()


if __name__ == "__main__":
    main()
