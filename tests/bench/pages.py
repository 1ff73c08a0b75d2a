"""`make bench`: time Kanri's pages in-process (Django test client) and count their queries.

Pages that call the payment processor (review, pay) are left out: their time is the processor's.
Runs against the configured database (SQLite by default, DATABASE_URL otherwise) after migrating
and loading the demo organisation. Prints one line per page: median and 95th-percentile time over
the requests, and the queries one request makes. Not a test: nothing here asserts a time.
"""
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "store.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from accounts.models import User  # noqa: E402

REQUESTS = int(os.environ.get("BENCH_REQUESTS", "200"))
PAGES = [
    ("login", "/login/", False),
    ("pricing", "/pricing/", False),
    ("pricing (htmx partial)", "/pricing/?cycle=monthly", False),
    ("subscription details", "/manage/", True),
    ("change plan", "/manage/plans/", True),
    ("configure (live price)", "/manage/plans/professional/?cycle=yearly&regular_licences=8"
     "&team_licences=2&storage_units=1", True),
    ("users", "/manage/users/", True),
]


def main() -> None:
    logging.disable(logging.INFO)  # one access line per request would time the terminal
    call_command("migrate", verbosity=0)
    call_command("demo_data", stdout=open(os.devnull, "w"))
    admin = User.objects.get(email="admin@demo.kanri.test")
    print(f"Kanri bench: {REQUESTS} requests per page, {connection.vendor}, "
          f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}")
    for name, url, logged_in in PAGES:
        htmx = "htmx" in name or "live" in name
        headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
        client = Client(HTTP_ACCEPT_LANGUAGE="ja", SERVER_NAME="localhost", **headers)
        if logged_in:
            client.force_login(admin)
        client.get(url)  # warm-up
        queries: list[str] = []

        def count(run, sql, *args, queries=queries):
            queries.append(sql)
            return run(sql, *args)

        with connection.execute_wrapper(count):
            status = client.get(url).status_code
        timings = []
        for _ in range(REQUESTS):
            start = time.perf_counter()
            client.get(url)
            timings.append((time.perf_counter() - start) * 1000)
        timings.sort()
        p95 = timings[int(len(timings) * 0.95) - 1]
        print(f"  {name:<24} {status}  median {statistics.median(timings):6.2f} ms  "
              f"p95 {p95:6.2f} ms  {len(queries)} queries")


if __name__ == "__main__":
    main()
