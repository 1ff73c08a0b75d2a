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
`grace_reminders` is staged and measured the same way; a reminder moves no row, so its "raw"
statement is one `INSERT … SELECT` of the notification rows (which is also its set-based form).

Renewals and dunning retries charge a card, one processor round trip per due row, which no raw
UPDATE makes; so they are measured differently. The bench starts the payment sandbox
(`python -m billing.sandbox`, localstripe) on a free loopback port and, at the sandbox through
Kanri's gateway, gives BENCH_CHARGES (200) subscriptions a processor customer and a good card and
as many a card that every charge declines (Kanri's rows for them in bulk: setting up is not
timed). Each per-row sweep stages all 100,000 active, paid to a week ahead, with only its
BENCH_CHARGES rows due, and runs the sweep as beat would:
- `renewals` (charged, succeeds), `renewals_declined` (charged, declined → past due),
  `renewals_no_card` (no card: past due without a processor call), `renewals_by_credit` (account
  credit covers the invoice: paid, no processor call): `sweep_renewals`;
- `retries` (past due, the retry day come, charged, succeeds → active) and `retries_declined`
  (declined again → the next retry): `sweep_retries`.
Every call to the processor (`billing.gateway._call`, the SDK request and the sandbox's answer)
is timed: `processor_seconds`. `kanri_seconds` is the sweep's wall time less that and less the
email tasks; `ratio` is `kanri_seconds` over a raw SQL `UPDATE` of the same rows setting the
columns the move sets (period dates, status and dunning dates, version, updated_at; no invoice,
payment or history), `ratio_with_processor` the whole wall time over it. The raw UPDATE is the
floor, not a fair rival: it issues no invoice, records no payment and asks no processor. For
`renewals_no_card` the rows are restored once more and the renewal's writes timed as one
set-based statement (invoices, lines, attempts, status, history, notifications; checked to have
done what the sweep did): `set_based_sql_seconds` and `set_based_ratio`, what a renewal with no
per-row Python could approach. The sandbox runs on the same machine, so its share is also this
machine's CPU.

Prints one JSON line per sweep. DEBUG is off while timing, as in production. Name sweeps to run
only those (`python tests/bench/sweeps.py renewals retries`). The whole run takes about 12 minutes
on a busy 2-core machine: seeding 1–2, each set-based sweep 1–2 (its 50,000 emails), each per-row
one under a minute at 200 due (a paid one's receipts, with their PDFs, take as long again).

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
import tempfile
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.sandbox import free_port  # noqa: E402
from tests.bench.sandbox import start as start_sandbox  # noqa: E402

PORT = free_port()  # the payment sandbox's, started only when a charging sweep runs
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "store.settings")
os.environ["STRIPE_API_BASE"] = f"http://127.0.0.1:{PORT}"

import django  # noqa: E402

django.setup()

from celery.signals import task_postrun, task_prerun  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core import mail  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.db.models import Q  # noqa: E402
from django.test.utils import override_settings  # noqa: E402
from djmoney.money import Money  # noqa: E402

from accounts.models import AuditEvent, Organisation, Role, User  # noqa: E402
from billing import gateway  # noqa: E402
from billing.models import (  # noqa: E402
    CreditEntry,
    Invoice,
    InvoiceLine,
    InvoiceSequence,
    Notification,
    Payment,
    PaymentMethod,
    Status,
    Subscription,
    SubscriptionStatusChange,
)
from billing.services import lifecycle  # noqa: E402
from store import clock  # noqa: E402
from store.celery import app  # noqa: E402
from store.models import Plan, Price  # noqa: E402
from tests.billing.helpers import DECLINING_CARD, GOOD_CARD  # noqa: E402

ROWS = int(os.environ.get("BENCH_SUBSCRIPTIONS", "100000"))
CHARGES = int(os.environ.get("BENCH_CHARGES", "200"))  # due rows of each per-row sweep
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
LINE = InvoiceLine._meta.db_table
PAYMENT = Payment._meta.db_table
CREDIT = CreditEntry._meta.db_table
CARD = PaymentMethod._meta.db_table
AUDIT = AuditEvent._meta.db_table
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
    """Forget what earlier sweeps wrote: history, notifications, audit events, payments, credit
    entries and the renewal invoices they issued; the seeded invoices are open again."""
    sql(f"DELETE FROM {NOTE} WHERE organisation_id IN ({BENCH_ORGS})")
    sql(f"DELETE FROM {CHANGE} WHERE subscription_id IN "
        f"(SELECT id FROM {SUB} WHERE organisation_id IN ({BENCH_ORGS}))")
    sql(f"DELETE FROM {AUDIT} WHERE organisation_id IN ({BENCH_ORGS})")
    sql(f"DELETE FROM {PAYMENT} WHERE organisation_id IN ({BENCH_ORGS})")
    sql(f"DELETE FROM {CREDIT} WHERE organisation_id IN ({BENCH_ORGS})")
    issued = (f"SELECT id FROM {INVOICE} WHERE organisation_id IN ({BENCH_ORGS}) "
              "AND number NOT LIKE 'BENCH-%%'")
    sql(f"UPDATE {SUB} SET open_invoice_id = NULL, paid_invoice_id = NULL "
        f"WHERE open_invoice_id IN ({issued}) OR paid_invoice_id IN ({issued})")
    sql(f"DELETE FROM {LINE} WHERE invoice_id IN ({issued})")
    sql(f"DELETE FROM {INVOICE} WHERE id IN ({issued})")
    sql(f"UPDATE {INVOICE} SET state = 'open', paid_at = NULL, amount_paid = 0 "
        f"WHERE organisation_id IN ({BENCH_ORGS}) AND state <> 'open'")


def vacuum() -> None:
    for table in (SUB, INVOICE, CHANGE, NOTE, USER, ORG, PAYMENT):
        sql(f"VACUUM ANALYZE {table}")


# The per-row sweeps' due rows: BENCH_CHARGES subscriptions each, by place among the bench's.
GROUPS = ("card", "declining", "no_card", "credit")


def group(name: str) -> str:
    return (f"SELECT id FROM {SUB} WHERE organisation_id IN ({BENCH_ORGS}) ORDER BY id "
            f"LIMIT {CHARGES} OFFSET {GROUPS.index(name) * CHARGES}")


def stage(sweep: str, standard: Plan, price: Price) -> int:
    """Put every bench subscription back in the sweep's starting state (every other one due, or
    one group of BENCH_CHARGES for a per-row sweep); returns how many are due."""
    forget_history()
    common = dict(standard=standard.pk, price=price.pk, due=DUE, later=LATER,
                  started=DUE - dt.timedelta(days=45), soon=NOW + dt.timedelta(days=2),
                  far=NOW + dt.timedelta(days=30))
    if sweep in ("locks", "grace_reminders"):
        # Renewal failed; the open renewal invoice is unpaid. Locks: grace over for half;
        # reminders: grace ending in two days for half (a month away for the rest).
        due, later = ("due", "later") if sweep == "locks" else ("soon", "far")
        sql(f"""UPDATE {SUB} s SET status = 'past_due', plan_id = %(standard)s,
                plan_price_id = %(price)s, regular_licences = 3, team_licences = 0,
                storage_units = 0, current_period_start = %(started)s,
                current_period_end = %(started)s + interval '30 days',
                billing_anchor = %(started)s, paid_invoice_id = NULL, open_invoice_id = i.id,
                payment_failed_at = %(started)s + interval '30 days',
                grace_ends_at = CASE WHEN s.id %% 2 = 0 THEN %({due})s ELSE %({later})s END,
                next_retry_at = NULL, retries_made = 4, locked_at = NULL, trial_ends_at = NULL,
                version = 1, updated_at = %(started)s
            FROM {INVOICE} i
            WHERE i.subscription_id = s.id AND s.organisation_id IN ({BENCH_ORGS})""", common)
    elif sweep == "trial_ends":
        sql(f"""UPDATE {SUB} s SET status = 'trialing', plan_id = %(standard)s,
                plan_price_id = %(price)s, regular_licences = 3, team_licences = 0,
                storage_units = 0, current_period_start = NULL, current_period_end = NULL,
                billing_anchor = NULL, paid_invoice_id = NULL, open_invoice_id = NULL,
                payment_failed_at = NULL, grace_ends_at = NULL, next_retry_at = NULL,
                retries_made = 0, locked_at = NULL,
                trial_ends_at = CASE WHEN s.id %% 2 = 0 THEN %(due)s ELSE %(later)s END,
                version = 1, updated_at = %(started)s
            WHERE s.organisation_id IN ({BENCH_ORGS})""", common)
    else:
        stage_per_row(sweep, common)
    vacuum()
    return Subscription.objects.filter(DUE_ROWS[sweep]).count()


def stage_per_row(sweep: str, common: dict) -> None:
    """Every bench subscription active and paid to a week ahead; then the sweep's group due: its
    period ended a day ago (a renewal), or past due on its open invoice with a retry day come
    and grace ending in a week (a retry)."""
    sql(f"""UPDATE {SUB} s SET status = 'active', plan_id = %(standard)s,
            plan_price_id = %(price)s, regular_licences = 3, team_licences = 0,
            storage_units = 0, current_period_start = %(later)s - interval '1 month',
            current_period_end = %(later)s, billing_anchor = %(later)s - interval '1 month',
            paid_invoice_id = NULL, open_invoice_id = NULL, payment_failed_at = NULL,
            grace_ends_at = NULL, next_retry_at = NULL, retries_made = 0, locked_at = NULL,
            trial_ends_at = NULL, credit_balance = 0, version = 1, updated_at = %(started)s
        WHERE s.organisation_id IN ({BENCH_ORGS})""", common)
    function, name = PER_ROW[sweep][:2]
    if function is lifecycle.sweep_renewals:
        credit = ", credit_balance = 100000" if name == "credit" else ""
        sql(f"""UPDATE {SUB} SET current_period_start = %(due)s - interval '1 month',
                current_period_end = %(due)s, billing_anchor = %(due)s - interval '1 month'
                {credit}
            WHERE id IN ({group(name)})""", common)
    else:
        sql(f"""UPDATE {SUB} s SET status = 'past_due', open_invoice_id = i.id,
                current_period_start = i.period_start - interval '1 month',
                current_period_end = i.period_start,
                billing_anchor = i.period_start - interval '1 month',
                payment_failed_at = i.period_start, grace_ends_at = %(later)s,
                next_retry_at = %(due)s
            FROM {INVOICE} i
            WHERE i.subscription_id = s.id AND s.id IN ({group(name)})""", common)


def put_cards_on_file() -> float:
    """A processor customer and card for each subscription of the `card` and `declining` groups,
    made at the sandbox through Kanri's gateway as adding a card does; Kanri's rows for them in
    bulk (setting up is not what is measured). Returns the seconds it took."""
    start = time.perf_counter()
    customers, methods = {}, {}
    for name, number in (("card", GOOD_CARD), ("declining", DECLINING_CARD)):
        for subscription_id, organisation_id in Subscription.objects.filter(
                pk__in=[row[0] for row in rows(group(name))]).values_list("pk", "organisation"):
            customer = gateway.customer_create(
                organisation_id=organisation_id, name=f"{PREFIX}{organisation_id}",
                email=f"admin{organisation_id}@sweepbench.kanri.test")
            card = gateway.card_attach(payment_method_id=gateway.test_card_create(number=number),
                                       customer_id=customer)
            customers[subscription_id] = customer
            methods[subscription_id] = PaymentMethod(
                organisation_id=organisation_id, processor_id=card.processor_id,
                brand=card.brand, last4=card.last4, exp_month=card.exp_month,
                exp_year=card.exp_year)
    PaymentMethod.objects.bulk_create(methods.values())
    Subscription.objects.bulk_update(
        [Subscription(pk=pk, processor_customer_id=customers[pk],
                      default_payment_method_id=method.pk) for pk, method in methods.items()],
        ["processor_customer_id", "default_payment_method"], batch_size=1000)
    return time.perf_counter() - start


def rows(statement: str) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(statement)
        return cursor.fetchall()


def cleanup() -> None:
    forget_history()
    sql(f"UPDATE {SUB} SET open_invoice_id = NULL, paid_invoice_id = NULL, "
        f"default_payment_method_id = NULL WHERE organisation_id IN ({BENCH_ORGS})")
    sql(f"DELETE FROM {INVOICE} WHERE organisation_id IN ({BENCH_ORGS})")
    sql(f"DELETE FROM {CARD} WHERE organisation_id IN ({BENCH_ORGS})")
    sql(f"DELETE FROM {SUB} WHERE organisation_id IN ({BENCH_ORGS})")
    sql(f"DELETE FROM {USER} WHERE organisation_id IN ({BENCH_ORGS})")
    sql(f"DELETE FROM {ORG} WHERE name LIKE '{PREFIX}%%'")


def foreign_due() -> int:
    """Subscriptions the bench did not make that the measured sweeps would move."""
    due = Q()
    for rule in DUE_ROWS.values():
        due |= rule
    return (Subscription.objects.exclude(organisation__name__startswith=PREFIX)
            .filter(due).count())


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

RENEWAL_DUE = "status = 'active' AND open_invoice_id IS NULL AND current_period_end <= %(now)s"
RETRY_DUE = ("s.status = 'past_due' AND s.next_retry_at <= %(now)s "
             "AND s.grace_ends_at > %(now)s")
RENEWAL_FAILED = f"""UPDATE {SUB} SET status = 'past_due', payment_failed_at = %(now)s,
                 grace_ends_at = current_period_end + interval '15 days',
                 next_retry_at = current_period_end + interval '1 day', retries_made = 0,
                 version = version + 1, updated_at = %(now)s
                 WHERE {RENEWAL_DUE}"""
RAW.update({
    "renewals": f"""UPDATE {SUB} SET current_period_start = current_period_end,
                 current_period_end = current_period_end + interval '1 month',
                 version = version + 1, updated_at = %(now)s
                 WHERE {RENEWAL_DUE}""",
    "renewals_declined": RENEWAL_FAILED,
    "renewals_no_card": RENEWAL_FAILED,
    "renewals_by_credit": f"""UPDATE {SUB} SET current_period_start = current_period_end,
                 current_period_end = current_period_end + interval '1 month',
                 credit_balance = credit_balance - %(renewal_total)s,
                 version = version + 1, updated_at = %(now)s
                 WHERE {RENEWAL_DUE}""",
    "retries": f"""UPDATE {SUB} s SET status = 'active', current_period_start = i.period_start,
                 current_period_end = i.period_end, paid_invoice_id = i.id,
                 open_invoice_id = NULL, payment_failed_at = NULL, grace_ends_at = NULL,
                 next_retry_at = NULL, retries_made = 0, version = s.version + 1,
                 updated_at = %(now)s
                 FROM {INVOICE} i WHERE i.id = s.open_invoice_id AND {RETRY_DUE}""",
    "retries_declined": f"""UPDATE {SUB} s SET retries_made = s.retries_made + 1,
                 next_retry_at = NULL, version = s.version + 1, updated_at = %(now)s
                 WHERE {RETRY_DUE}""",
})

# What each sweep finds due (the bench refuses to run when rows it did not make match).
_RENEWAL_DUE = Q(status=Status.ACTIVE, open_invoice=None, current_period_end__lte=NOW)
_RETRY_DUE = Q(status=Status.PAST_DUE, next_retry_at__lte=NOW, grace_ends_at__gt=NOW)
DUE_ROWS = {
    "locks": Q(status=Status.PAST_DUE, grace_ends_at__lte=NOW),
    "trial_ends": Q(status=Status.TRIALING, trial_ends_at__lte=NOW),
    "grace_reminders": Q(status=Status.PAST_DUE, grace_ends_at__gt=NOW, grace_ends_at__lte=NOW
                         + dt.timedelta(days=settings.KANRI_GRACE_REMINDER_DAYS)),
    **{name: _RENEWAL_DUE for name in ("renewals", "renewals_declined", "renewals_no_card",
                                       "renewals_by_credit")},
    "retries": _RETRY_DUE, "retries_declined": _RETRY_DUE,
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
# A reminder moves no row: its raw statement records the reminders, and is its set-based one.
RAW["grace_reminders"] = SET_BASED["grace_reminders"] = f"""
        INSERT INTO {NOTE} (organisation_id, kind, key, context, recipients, created_at)
        SELECT m.organisation_id, 'grace_ending',
               'grace_ending:' || m.id || ':' || m.open_invoice_id,
               jsonb_build_object(
                   'grace_ends', to_char(m.grace_ends_at AT TIME ZONE o.time_zone, 'YYYY-MM-DD'),
                   'amount', '¥' || to_char(i.total - i.credit_applied, 'FM999,999,999,990')),
               {_ADMINS}, %(now)s
        FROM {SUB} m JOIN {INVOICE} i ON i.id = m.open_invoice_id
                     JOIN {ORG} o ON o.id = m.organisation_id
        WHERE m.status = 'past_due' AND m.grace_ends_at > %(now)s
          AND m.grace_ends_at <= %(now)s + %(reminder_days)s * interval '1 day'
        ON CONFLICT (key) DO NOTHING"""

# A renewal's writes with no Python between them: the no-card renewal as one statement (the due
# rows locked, a gapless block of invoice numbers taken, the invoices and their lines issued, the
# failed attempts recorded, the subscriptions past due, the history and the emails' rows). It
# prices the bench's one shape (the plan's price × regular licences, 10% tax rounded down): the
# floor a renewal that issues invoices could approach, not a second implementation of pricing.
SEQUENCE = InvoiceSequence._meta.db_table
NO_CARD = "There is no card on file."
SET_BASED["renewals_no_card"] = f"""WITH due AS (
            SELECT s.id, s.organisation_id, s.plan_id, s.plan_price_id, s.regular_licences,
                   s.current_period_end, s.cycle
            FROM {SUB} s WHERE {RENEWAL_DUE} FOR UPDATE),
        taken AS (
            UPDATE {SEQUENCE} SET last = last + (SELECT count(*) FROM due) WHERE name = 'invoice'
            RETURNING last - (SELECT count(*) FROM due) AS base),
        priced AS (
            SELECT d.*, 'INV-' || lpad((t.base + row_number() OVER (ORDER BY d.id))::text, 6, '0')
                       AS number,
                   p.amount AS unit, p.amount * d.regular_licences AS subtotal,
                   floor(p.amount * d.regular_licences * %(tax_rate)s) AS tax,
                   pl.name AS plan_name, pl.name_ja AS plan_name_ja, o.name AS buyer_name
            FROM due d CROSS JOIN taken t
                 JOIN {Price._meta.db_table} p ON p.id = d.plan_price_id
                 JOIN {Plan._meta.db_table} pl ON pl.id = d.plan_id
                 JOIN {ORG} o ON o.id = d.organisation_id),
        invoices AS (
            INSERT INTO {INVOICE} (number, state, kind, currency, subtotal_currency, subtotal,
                tax_rate, tax_rounding, tax_breakdown, tax_currency, tax, total_currency, total,
                credit_applied_currency, credit_applied, amount_paid_currency, amount_paid,
                credit_to_account_currency, credit_to_account, issuer_registration, issued_at,
                organisation_id, subscription_id, seller_name, buyer_name, plan_name,
                plan_name_ja, cycle, period_start, period_end, paid_by)
            SELECT number, 'open', 'renewal', 'JPY', 'JPY', subtotal, %(tax_rate)s,
                'ROUND_DOWN', jsonb_build_array(jsonb_build_object(
                    'rate', %(tax_rate)s::text, 'subtotal', subtotal::text, 'tax', tax::text)),
                'JPY', tax, 'JPY', subtotal + tax, 'JPY', 0, 'JPY', 0, 'JPY', 0,
                %(registration)s, %(now)s, organisation_id, id, %(seller)s, buyer_name,
                plan_name, plan_name_ja, cycle, current_period_end,
                current_period_end + interval '1 month', ''
            FROM priced
            RETURNING id, subscription_id, organisation_id, total, period_start, period_end),
        lines AS (
            INSERT INTO {LINE} (invoice_id, kind, price_id, plan_id, quantity,
                unit_amount_currency, unit_amount, fraction, amount_currency, amount,
                period_start, period_end, tax_rate, item_name, item_name_ja)
            SELECT i.id, 'charge', p.plan_price_id, p.plan_id, p.regular_licences, 'JPY', p.unit,
                1, 'JPY', p.subtotal, i.period_start, i.period_end, %(tax_rate)s, p.plan_name,
                p.plan_name_ja
            FROM invoices i JOIN priced p ON p.id = i.subscription_id),
        attempts AS (
            INSERT INTO {PAYMENT} (organisation_id, invoice_id, idempotency_key, amount_currency,
                amount, state, failure_code, failure_reason, settled_at, created_at,
                processor_id, card_brand, card_last4, card_processor_id, refund_id, paid_with)
            SELECT organisation_id, id, 'invoice:' || id || ':attempt:1', 'JPY', total, 'failed',
                'no_card', %(no_card)s, %(now)s, %(now)s, '', '', '', '', '', 'card'
            FROM invoices
            RETURNING organisation_id, idempotency_key, amount),
        moved AS (
            UPDATE {SUB} s SET status = 'past_due', open_invoice_id = i.id,
                payment_failed_at = %(now)s, grace_ends_at = i.period_start + interval '15 days',
                next_retry_at = i.period_start + interval '1 day', retries_made = 0,
                version = s.version + 1, updated_at = %(now)s
            FROM invoices i WHERE s.id = i.subscription_id
            RETURNING s.id, s.organisation_id, s.grace_ends_at, s.next_retry_at),
        history AS (
            INSERT INTO {CHANGE} (subscription_id, from_status, to_status, actor_id, actor_kind,
                                  reason, created_at)
            SELECT id, 'active', 'past_due', NULL, 'system', 'renewal failed: no_card', %(now)s
            FROM moved)
        INSERT INTO {NOTE} (organisation_id, kind, key, context, recipients, created_at)
        SELECT m.organisation_id, 'payment_failed', 'payment_failed:' || a.idempotency_key,
               jsonb_build_object(
                   'amount', '¥' || to_char(a.amount, 'FM999,999,999,990'),
                   'reason', %(no_card)s,
                   'grace_ends', to_char(m.grace_ends_at AT TIME ZONE o.time_zone, 'YYYY-MM-DD'),
                   'next_retry', to_char(m.next_retry_at AT TIME ZONE o.time_zone, 'YYYY-MM-DD')),
               {_ADMINS}, %(now)s
        FROM moved m JOIN attempts a ON a.organisation_id = m.organisation_id
                     JOIN {ORG} o ON o.id = m.organisation_id
        ON CONFLICT (key) DO NOTHING"""

# sweep: (function, result key, status after or None when it moves none)
SWEEPS = {"locks": (lifecycle.sweep_locks, "locked", Status.LOCKED),
          "trial_ends": (lifecycle.sweep_trial_ends, "trials_ended", Status.FREE),
          "grace_reminders": (lifecycle.sweep_grace_reminders, "reminded", None)}
# Per-row sweeps: (function, due group, the outcome each due row must report, what each due row
# must look like afterwards).
PER_ROW = {
    "renewals": (lifecycle.sweep_renewals, "card", "succeeded",
                 Q(status=Status.ACTIVE, open_invoice=None, paid_invoice__isnull=False)),
    "renewals_declined": (lifecycle.sweep_renewals, "declining", "failed",
                          Q(status=Status.PAST_DUE, open_invoice__isnull=False)),
    "renewals_no_card": (lifecycle.sweep_renewals, "no_card", "failed",
                         Q(status=Status.PAST_DUE, open_invoice__isnull=False)),
    "renewals_by_credit": (lifecycle.sweep_renewals, "credit", "paid_by_credit",
                           Q(status=Status.ACTIVE, open_invoice=None,
                             paid_invoice__isnull=False)),
    "retries": (lifecycle.sweep_retries, "card", "retried",
                Q(status=Status.ACTIVE, open_invoice=None, paid_invoice__isnull=False)),
    "retries_declined": (lifecycle.sweep_retries, "declining", "retried",
                         Q(status=Status.PAST_DUE, retries_made=1)),
}
CHARGED = {"card", "declining"}  # the groups whose rows have a card at the processor


def measure(name: str, standard: Plan, price: Price, free: Plan, machine: dict,
            seed_seconds: float) -> dict:
    sweep, result_key, after = SWEEPS[name]
    params = {"now": NOW, "free": free.pk, "free_users": free.max_users or 1,
              "reminder_days": settings.KANRI_GRACE_REMINDER_DAYS}

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
    moved = (Subscription.objects.filter(organisation__name__startswith=PREFIX,
                                         status=after).count() if after else due)
    history = SubscriptionStatusChange.objects.filter(
        subscription__organisation__name__startswith=PREFIX).count()
    notes = Notification.objects.filter(organisation__name__startswith=PREFIX,
                                        sent_at__isnull=False).count()
    assert result[result_key] == moved == notes == meter.emails == due, (
        result, moved, notes, meter.emails, due)
    assert history == (due if after else 0), (history, due)

    with override_settings(DEBUG=False):
        stage(name, standard, price)
        raw_seconds, raw_rows = timed_sql(RAW[name], params)
        stage(name, standard, price)
        set_seconds, set_rows = timed_sql(SET_BASED[name], params)
    assert raw_rows == set_rows == due, (raw_rows, set_rows, due)

    statements = sum(meter.kinds.values())
    # A moving sweep locks each batch (and a last time, finding none); a reminder records each.
    batches = (meter.kinds[f"SELECT {SUB} FOR UPDATE"] - 1 if after
               else meter.kinds[f"INSERT {NOTE}"])
    sweep_seconds = seconds - meter.task_seconds
    return {
        "sweep": name, "rows": due, "subscriptions": ROWS, "batch": lifecycle.BATCH,
        "seconds": round(sweep_seconds, 2), "raw_update_seconds": round(raw_seconds, 3),
        "ratio": round(sweep_seconds / raw_seconds, 1),
        "seconds_with_email_delivery": round(seconds, 2),
        "ratio_with_email_delivery": round(seconds / raw_seconds, 1),
        "statements": statements,
        "statements_per_1000_rows": round(statements * 1000 / due, 1),
        "batches": batches, "statements_per_batch": round(statements / max(batches, 1), 1),
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


class ProcessorClock:
    """Times every call Kanri makes to the processor: the gateway's one place that sends a request
    (`billing.gateway._call`), so the SDK's request, the sandbox's work and the answer."""

    def __init__(self):
        self.seconds, self.calls = 0.0, 0

    def __enter__(self):
        self._call = gateway._call
        gateway._call = self.timed
        return self

    def __exit__(self, *exc) -> None:
        gateway._call = self._call

    def timed(self, function, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self._call(function, *args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1


def measure_per_row(name: str, standard: Plan, price: Price, machine: dict,
                    setup_seconds: dict) -> dict:
    sweep, group_name, outcome, after = PER_ROW[name]
    renewal_total = price.amount.amount * 3 + (price.amount.amount * 3 / 10).quantize(Decimal(1))
    params = {"now": NOW, "renewal_total": renewal_total, "tax_rate": Decimal("0.10"),
              "no_card": NO_CARD, "seller": settings.KANRI_SELLER_NAME,
              "registration": settings.KANRI_INVOICE_ISSUER_REGISTRATION}

    due = stage(name, standard, price)
    log(f"{name}: sweeping {due:,} due of {ROWS:,}")
    meter = Meter()
    try:
        with (override_settings(DEBUG=False, EMAIL_BACKEND=LOCMEM), clock.travel(NOW),
              connection.execute_wrapper(meter), ProcessorClock() as processor):
            start = time.perf_counter()
            result = sweep()
            seconds = time.perf_counter() - start
    finally:
        meter.close()
    moved = Subscription.objects.filter(after,
                                        pk__in=[row[0] for row in rows(group(group_name))]
                                        ).count()
    assert result == {outcome: due} == {outcome: moved} == {outcome: meter.emails}, (
        result, due, moved, meter.emails)

    with override_settings(DEBUG=False):
        stage(name, standard, price)
        raw_seconds, raw_rows = timed_sql(RAW[name], params)
        set_based = {}
        if name in SET_BASED:
            stage(name, standard, price)
            set_seconds, set_rows = timed_sql(SET_BASED[name], params)
            # It did what the sweep did: every due row past due on a new invoice, one line and
            # one failed attempt each.
            issued = Invoice.objects.filter(subscription__in=[row[0] for row in rows(
                group(group_name))], number__startswith="INV-")
            assert (set_rows == due == issued.count()
                    == InvoiceLine.objects.filter(invoice__in=issued).count()
                    == Payment.objects.filter(invoice__in=issued, failure_code="no_card").count()
                    == Subscription.objects.filter(after, open_invoice__in=issued).count()), (
                set_rows, due)
            set_based = {"set_based_sql_seconds": round(set_seconds, 3),
                         "set_based_ratio": round(set_seconds / raw_seconds, 1)}
    assert raw_rows == due, (raw_rows, due)

    statements = sum(meter.kinds.values())
    sweep_seconds = seconds - meter.task_seconds  # beat's share: the emails are the workers'
    kanri_seconds = sweep_seconds - processor.seconds
    return {
        "sweep": name, "rows": due, "subscriptions": ROWS, "outcomes": result,
        "seconds": round(sweep_seconds, 2), "processor_seconds": round(processor.seconds, 2),
        "processor_calls": processor.calls, "kanri_seconds": round(kanri_seconds, 2),
        "raw_update_seconds": round(raw_seconds, 3),
        "ratio": round(kanri_seconds / raw_seconds, 1),
        "ratio_with_processor": round(sweep_seconds / raw_seconds, 1),
        "kanri_ms_per_row": round(kanri_seconds * 1000 / due, 2),
        "processor_ms_per_row": round(processor.seconds * 1000 / due, 2),
        "raw_update_ms_per_row": round(raw_seconds * 1000 / due, 3), **set_based,
        "seconds_with_email_delivery": round(seconds, 2),
        "ratio_with_email_delivery": round(seconds / raw_seconds, 1),
        "statements": statements, "statements_per_row": round(statements / due, 1),
        "db_seconds": round(meter.db_seconds, 2),
        "email_tasks": meter.tasks, "emails_sent": meter.emails,
        "email_task_seconds": round(meter.task_seconds, 2),
        "email_task_statements": meter.task_statements,
        "statement_kinds": {kind: {"count": count,
                                   "seconds": round(meter.kind_seconds[kind], 2)}
                            for kind, count in meter.kinds.most_common()},
        **{key: round(value, 1) for key, value in setup_seconds.items()},
        "machine": machine, "date": dt.date.today().isoformat(),
    }


def main() -> None:
    names = sys.argv[1:] or [*SWEEPS, *PER_ROW]
    if unknown := set(names) - set(SWEEPS) - set(PER_ROW):
        sys.exit(f"unknown sweeps {sorted(unknown)}; choose from {[*SWEEPS, *PER_ROW]}")
    if ROWS < len(GROUPS) * CHARGES:
        sys.exit(f"BENCH_SUBSCRIPTIONS ({ROWS}) must be at least {len(GROUPS)} × BENCH_CHARGES")
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
    processor = None
    try:
        with override_settings(DEBUG=False):
            seed(standard, price)
        seed_seconds = time.perf_counter() - start
        setup = {"seed_seconds": seed_seconds}
        if any(PER_ROW[name][1] in CHARGED for name in names if name in PER_ROW):
            log_file = tempfile.NamedTemporaryFile(
                "w", prefix="kanri-sweeps-bench-sandbox-", suffix=".log", delete=False)
            processor = start_sandbox(PORT, log_file)
            log(f"putting {2 * CHARGES:,} cards on file at the sandbox on port {PORT}")
            setup["card_setup_seconds"] = put_cards_on_file()
        for name in names:
            if name in PER_ROW:
                figures = measure_per_row(name, standard, price, machine, setup)
            else:
                figures = measure(name, standard, price, free, machine, seed_seconds)
            print(json.dumps(figures), flush=True)
    finally:
        if processor is not None:
            processor.terminate()
            processor.wait(timeout=30)
        with override_settings(DEBUG=False):
            cleanup()


if __name__ == "__main__":
    main()
