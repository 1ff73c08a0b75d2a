"""`make bench`: Kanri's cost per payment next to the processor's own, in the same run.

Starts the payment sandbox (`python -m billing.sandbox`, localstripe) on a free loopback port and
points Kanri at it, signs up a new bench organisation (the sandbox starts empty every run, so its
customer and card are new too) and puts a card on file as the browser's form would
(tests/billing/helpers.py's `card_on_file`). Then, in alternating blocks:

- Kanri: a plan change through the real path, `quote_create` then `quote_pay` (claim, commit the
  attempt, create and confirm the PaymentIntent at the sandbox, record the answer, apply the
  quote, issue the invoice, enqueue the receipt). Each change adds one regular licence to
  Standard monthly (the first buys Standard), so each one is a real card charge: a change that
  lowers the price is settled by credit, with no charge to compare.
- bare: the same two processor calls with the stripe SDK and nothing else, a PaymentIntent
  created, then confirmed, for the same customer and card, through one client kept for the run.

Both sides make the same two calls per payment: Kanri creates the intent unconfirmed and stores
its id before confirming it (billing.services.charging: an intent whose id Kanri never stored was
never confirmed), so it cannot fold them into one create with `confirm=True`; the bare side does
not either, so the ratio compares the same processor work. Kanri keeps its client between calls
(billing.gateway), as the bare side does.

Prints one JSON line: both totals, milliseconds per payment and the ratio (Kanri / bare), plus
Kanri's time in `quote_pay` alone, the SQL statements per plan change (counted as they run;
BEGIN and COMMIT are not statements here) and the processor calls per payment on each side (the
PaymentIntent requests in the sandbox's own log; the bare side makes exactly two a payment, so
the rest are Kanri's). Celery's broker is in memory here: the receipt task is
enqueued, as in production, and not run (a worker sends it, off the payment's path). Needs
PostgreSQL (on SQLite it prints a JSON line saying it skipped); the bench organisations stay in
the database. BENCH_PAYMENTS (default 200) changes the count. Not a test: nothing is asserted.
"""
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.sandbox import free_port  # noqa: E402
from tests.bench.sandbox import start as start_sandbox  # noqa: E402

PORT = free_port()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "store.settings")
os.environ["STRIPE_API_BASE"] = f"http://127.0.0.1:{PORT}"
os.environ["CELERY_BROKER_URL"] = "memory://"
os.environ["EMAIL_BACKEND"] = "django.core.mail.backends.locmem.EmailBackend"

import django  # noqa: E402

django.setup()

import stripe  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import override_settings  # noqa: E402

from accounts.services import organisation_sign_up  # noqa: E402
from billing.models import Payment, Subscription  # noqa: E402
from billing.pricing import Change  # noqa: E402
from billing.services.payments import quote_pay  # noqa: E402
from billing.services.quotes import quote_create  # noqa: E402
from store.models import Plan  # noqa: E402
from tests.billing.helpers import card_on_file  # noqa: E402

PAYMENTS = int(os.environ.get("BENCH_PAYMENTS", "200"))
BLOCKS = 4  # Kanri, bare, Kanri, bare...: drift in the sandbox or the machine hits both alike


def log(message: str) -> None:
    print(f"  payments bench: {message}", file=sys.stderr, flush=True)


def main() -> None:
    if connection.vendor != "postgresql":
        print(json.dumps({"bench": "payments", "skipped": (
            f"needs PostgreSQL (database: {connection.vendor}): set DATABASE_URL=postgres://...")}))
        return
    call_command("migrate", verbosity=0)
    log_file = tempfile.NamedTemporaryFile("w", prefix="kanri-payments-bench-", suffix=".log",
                                           delete=False)
    process = start_sandbox(PORT, log_file)
    try:
        admin = organisation_sign_up(
            org_name="Payments bench K.K.",
            email=f"pay-{uuid.uuid4().hex[:12]}@paybench.kanri.test",
            password="bench-password-not-used-2026", currency="JPY")
        organisation = admin.organisation
        card = card_on_file(organisation=organisation, acting_user=admin)
        customer_id = Subscription.objects.get(organisation=organisation).processor_customer_id
        client = stripe.StripeClient(settings.STRIPE_API_KEY,
                                     base_addresses={"api": settings.STRIPE_API_BASE},
                                     max_network_retries=0)
        standard = Plan.objects.get(code="standard")
        log(f"{PAYMENTS} plan changes and {PAYMENTS} bare PaymentIntents on port {PORT}")
        kanri, kanri_pay, bare = [], [], []
        licences = 3
        per_block = PAYMENTS // BLOCKS
        failures = []
        statements = 0

        def count_statement(execute, sql, params, many, context):
            nonlocal statements
            statements += 1
            return execute(sql, params, many, context)

        timing = override_settings(DEBUG=False)  # as production: no query log kept
        timing.enable()
        for block in range(BLOCKS):
            count = per_block if block < BLOCKS - 1 else PAYMENTS - per_block * (BLOCKS - 1)
            for _ in range(count):
                licences += 1
                began = time.perf_counter()
                with connection.execute_wrapper(count_statement):
                    quote = quote_create(organisation=organisation, acting_user=admin,
                                         change=Change(standard, "monthly", licences, 0, 0))
                    paying = time.perf_counter()
                    result = quote_pay(organisation=organisation, quote_id=quote.pk,
                                       acting_user=admin)
                ended = time.perf_counter()
                kanri.append(ended - began)
                kanri_pay.append(ended - paying)
                if not (result.charged and result.invoice):
                    failures.append(result.failure or result.code)
            for number in range(count):
                began = time.perf_counter()
                intent = client.v1.payment_intents.create(params={
                    "amount": 1000 + number, "currency": "jpy", "customer": customer_id,
                    "payment_method": card.processor_id, "payment_method_types": ["card"]},
                    options={"idempotency_key": f"bare:{uuid.uuid4().hex}:create"})
                confirmed = client.v1.payment_intents.confirm(
                    intent.id, options={"idempotency_key": f"bare:{intent.id}:confirm"})
                bare.append(time.perf_counter() - began)
                if confirmed.status != "succeeded":
                    failures.append(f"bare {confirmed.status}")
        timing.disable()
    finally:
        process.terminate()
        process.wait(timeout=30)
        log_file.close()
    intent_calls = sum("/v1/payment_intents" in line
                       for line in Path(log_file.name).read_text().splitlines())
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        server_version = cursor.fetchone()[0].split()[0]
    charged = Payment.objects.filter(organisation=organisation,
                                     state=Payment.State.SUCCEEDED).count()
    kanri_ms = sum(kanri) / len(kanri) * 1000
    bare_ms = sum(bare) / len(bare) * 1000
    print(json.dumps({
        "bench": "payments", "payments": PAYMENTS, "blocks": BLOCKS,
        "kanri_total_s": round(sum(kanri), 2), "kanri_ms_per_payment": round(kanri_ms, 1),
        "kanri_quote_pay_ms_per_payment": round(sum(kanri_pay) / len(kanri_pay) * 1000, 1),
        "bare_total_s": round(sum(bare), 2), "bare_ms_per_payment": round(bare_ms, 1),
        "ratio": round(kanri_ms / bare_ms, 2), "kanri_card_charges": charged,
        "kanri_sql_statements_per_payment": round(statements / PAYMENTS, 1),
        "processor_calls_per_payment": {"kanri": round(intent_calls / PAYMENTS - 2, 2),
                                        "bare": 2},
        "failures": failures[:5], "failure_count": len(failures),
        "machine": {"cpus": os.cpu_count(), "arch": platform.machine(),
                    "python": platform.python_version(), "postgres": server_version,
                    "debug": False},
        "date": dt.date.today().isoformat(),
    }), flush=True)


if __name__ == "__main__":
    main()
