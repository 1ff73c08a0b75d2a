"""`make bench`: `POST /api/v1/authorize` under 50 concurrent clients, next to a one-query baseline
page, both served by gunicorn with DEBUG off, in the same run.

Serves Kanri on a free loopback port with tests/bench/settings.py (the site plus
`/bench/one-query/`, a login-free JSON page that runs one indexed ORM query through the same
middleware), makes a bench organisation and an API key, then runs rounds in which 50 client
threads (http.client, one connection each, reopened when the server closes it) call authorize
for a few seconds, then the baseline page, alternating which goes first. Prints one JSON line:
requests per second and latency percentiles of each, their ratio, the queries one request
makes (measured in-process), and the machine. The key's rate limit is lifted for the run (the
counter still runs: its cost is measured); the organisation stays for the next run, the key is
revoked at the end.

Needs PostgreSQL and Redis (DATABASE_URL, REDIS_URL), as production runs: on SQLite or without
Redis it prints a JSON line saying why it skipped. Not a test: nothing here asserts a figure.
BENCH_CLIENTS, BENCH_ROUNDS, BENCH_SECONDS and BENCH_WORKERS (gunicorn's sync workers, default
2 × CPUs + 1) change the run.
"""
import datetime as dt
import http.client
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.sandbox import free_port  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.bench.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from accounts.models import User  # noqa: E402
from accounts.services import organisation_sign_up  # noqa: E402
from api.models import ApiKey  # noqa: E402
from api.services import api_key_create, api_key_revoke  # noqa: E402
from billing.entitlements_cache import cache_key  # noqa: E402

CLIENTS = int(os.environ.get("BENCH_CLIENTS", "50"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "4"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
WORKERS = int(os.environ.get("BENCH_WORKERS", str(2 * (os.cpu_count() or 1) + 1)))
ADMIN = "admin@apibench.kanri.test"
AUTHORIZE = json.dumps({"action": "create", "resource": "records", "amount": 1})
BASELINE = "/bench/one-query/"


def log(message: str) -> None:
    print(f"  api bench: {message}", file=sys.stderr, flush=True)


def bench_key() -> tuple[ApiKey, str]:
    """The bench organisation (made once, kept) and a new key for this run."""
    admin = User.objects.filter(email=ADMIN).first() or organisation_sign_up(
        org_name="API bench K.K.", email=ADMIN, password="bench-password-not-used-2026")
    key, full = api_key_create(organisation=admin.organisation, name="bench",
                               acting_user=admin)
    # Making the organisation just now left its "forgotten" marker (billing.entitlements_cache),
    # which keeps answers uncached for half a minute: the bench measures the steady state.
    cache.delete(cache_key(admin.organisation_id))
    return key, full


def queries_per_request(full_key: str) -> dict:
    """The statements one request of each kind makes, after a first one (in-process)."""
    client = Client(SERVER_NAME="127.0.0.1")
    counts = {}
    for name, send in [
        ("authorize", lambda: client.post("/api/v1/authorize", AUTHORIZE,
                                          content_type="application/json",
                                          headers={"Authorization": f"Bearer {full_key}"})),
        ("baseline", lambda: client.get(BASELINE)),
    ]:
        assert send().status_code == 200
        with CaptureQueriesContext(connection) as queries:
            assert send().status_code == 200
        counts[name] = len(queries)
    return counts


def serve(port: int, log_file) -> subprocess.Popen:
    """gunicorn as the Procfile runs it, DEBUG off, the bench's settings; the key's rate lifted."""
    env = {**os.environ, "DEBUG": "0", "DJANGO_SETTINGS_MODULE": "tests.bench.settings",
           "SECRET_KEY": os.environ.get("SECRET_KEY") or "bench-" + "x" * 50,
           "ALLOWED_HOSTS": "127.0.0.1", "SECURE_SSL_REDIRECT": "0",
           "STRIPE_API_KEY": "sk_test_bench", "STRIPE_PUBLISHABLE_KEY": "pk_test_bench",
           "STRIPE_WEBHOOK_SECRET": "whsec_bench",
           "KANRI_INVOICE_ISSUER_REGISTRATION": "T9999999999999",
           "KANRI_API_RATE_PER_MINUTE": str(10**9), "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "store.wsgi", "--bind", f"127.0.0.1:{port}",
         "--workers", str(WORKERS), "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=log_file, stderr=log_file)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited with {server.returncode}; see {log_file.name}")
        try:
            probe = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            probe.request("GET", BASELINE)
            if probe.getresponse().status == 200:
                return server
        except OSError:
            pass
        time.sleep(0.2)
    server.kill()
    raise SystemExit(f"gunicorn did not answer on port {port}; see {log_file.name}")


class Phase:
    """CLIENTS threads, one keep-alive connection each, sending one request for `seconds`; an
    answer counts as an error unless it is a 200 that `ok(body)` accepts."""

    def __init__(self, port: int, method: str, path: str, seconds: float, *,
                 headers: dict | None = None, body: str | None = None, ok=None):
        self.port, self.method, self.path, self.seconds = port, method, path, seconds
        self.headers, self.body = headers or {}, body
        self.ok = ok or (lambda body: True)
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.lock = threading.Lock()

    def client(self, start: threading.Barrier) -> None:
        connection_ = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        mine, errors = [], {}
        start.wait()
        stop = time.perf_counter() + self.seconds
        while (began := time.perf_counter()) < stop:
            try:
                connection_.request(self.method, self.path, self.body, self.headers)
                response = connection_.getresponse()
                body = response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as error:
                connection_.close()
                errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
                continue
            mine.append(time.perf_counter() - began)
            if status != 200 or not self.ok(body):
                errors[str(status)] = errors.get(str(status), 0) + 1
        connection_.close()
        with self.lock:
            self.latencies.extend(mine)
            for name, count in errors.items():
                self.errors[name] = self.errors.get(name, 0) + count

    def run(self) -> "Phase":
        start = threading.Barrier(CLIENTS)
        threads = [threading.Thread(target=self.client, args=(start,)) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return self


def phase(port: int, kind: str, full_key: str, seconds: float) -> Phase:
    """An authorize phase (allowed answers only) or a baseline one."""
    if kind == "baseline":
        return Phase(port, "GET", BASELINE, seconds)
    return Phase(port, "POST", "/api/v1/authorize", seconds, body=AUTHORIZE,
                 headers={"Authorization": f"Bearer {full_key}",
                          "Content-Type": "application/json"},
                 ok=lambda body: b'"allowed": true' in body)


def summary(phases: list[Phase]) -> dict:
    latencies = sorted(latency for phase in phases for latency in phase.latencies)
    seconds = sum(phase.seconds for phase in phases)
    errors: dict[str, int] = {}
    for phase in phases:
        for name, count in phase.errors.items():
            errors[name] = errors.get(name, 0) + count

    def percentile(share: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(len(latencies) * share))] * 1000, 1)

    return {"requests": len(latencies), "rps": round(len(latencies) / seconds, 1),
            "p50_ms": percentile(0.50), "p99_ms": percentile(0.99),
            "mean_ms": round(statistics.fmean(latencies) * 1000, 1), "errors": errors}


def main() -> None:
    if connection.vendor != "postgresql" or not settings.REDIS_URL:
        print(json.dumps({"bench": "api_authorize", "skipped": (
            f"needs PostgreSQL and Redis, as production runs (database: {connection.vendor}, "
            f"REDIS_URL {'set' if settings.REDIS_URL else 'unset'}): set "
            "DATABASE_URL=postgres://... and REDIS_URL=redis://...")}))
        return
    call_command("migrate", verbosity=0)
    key, full_key = bench_key()
    queries = queries_per_request(full_key)
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        server_version = cursor.fetchone()[0].split()[0]
    port = free_port()
    log_file = tempfile.NamedTemporaryFile("w", prefix="kanri-api-bench-", suffix=".log",
                                           delete=False)
    log(f"gunicorn with {WORKERS} workers on port {port}; {CLIENTS} clients, {ROUNDS} rounds "
        f"of {SECONDS:g} s each way")
    server = serve(port, log_file)
    try:
        phase(port, "authorize", full_key, 1).run()  # warm-up: connections, caches
        phase(port, "baseline", full_key, 1).run()
        runs: dict[str, list[Phase]] = {"authorize": [], "baseline": []}
        cpu_before, wall_before = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for number in range(ROUNDS):
            order = ["authorize", "baseline"] if number % 2 == 0 else ["baseline", "authorize"]
            for kind in order:
                runs[kind].append(phase(port, kind, full_key, SECONDS).run())
        cpu_after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    finally:
        server.terminate()
        server.wait(timeout=30)
        log_file.close()
        api_key_revoke(key=key, acting_user=key.created_by)
    client_cpu = ((cpu_after.ru_utime + cpu_after.ru_stime)
                  - (cpu_before.ru_utime + cpu_before.ru_stime))
    authorize, baseline = summary(runs["authorize"]), summary(runs["baseline"])
    print(json.dumps({
        "bench": "api_authorize", "clients": CLIENTS, "rounds": ROUNDS,
        "seconds_each": SECONDS, "gunicorn_workers": WORKERS,
        "authorize": authorize, "baseline_one_query": baseline,
        "ratio_rps": round(authorize["rps"] / baseline["rps"], 2),
        "queries_per_request": queries,
        # The load generator shares the machine: its share of one CPU while measuring.
        "client_cpu_share": round(client_cpu / (wall - wall_before), 2),
        "machine": {"cpus": os.cpu_count(), "arch": platform.machine(),
                    "python": platform.python_version(), "postgres": server_version,
                    "debug": False},
        "date": dt.date.today().isoformat(),
    }), flush=True)


if __name__ == "__main__":
    main()
