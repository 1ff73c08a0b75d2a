"""Shared test setup: which real services a test needs, and the world every test builds on.

Tests marked `postgres`, `redis` or `chromium` need that service. Without it they skip with the
reason printed; with KANRI_REQUIRE_ALL=1 (CI) a missing service fails them instead.
"""
import os
import socket
import subprocess
import sys
import time

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings

from store.models import Plan
from tests.store.factories import ensure_shipped_catalog

REQUIRE_ALL = os.environ.get("KANRI_REQUIRE_ALL") == "1"
CHROMIUM = "/usr/bin/chromium"


def _redis_reachable() -> bool:
    if not settings.REDIS_URL:
        return False
    import redis

    try:
        return bool(redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2).ping())
    except redis.RedisError:
        return False


def _missing(marker: str) -> str | None:
    if marker == "postgres" and connection.vendor != "postgresql":
        return "needs PostgreSQL: set DATABASE_URL=postgres://..."
    if marker == "redis" and not (_redis_reachable()
                                  and settings.CELERY_BROKER_URL.startswith("redis://")):
        return "needs Redis: set REDIS_URL and CELERY_BROKER_URL to redis://... (running)"
    if marker == "chromium" and not os.path.exists(CHROMIUM):
        return f"needs Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "/e2e/" in str(item.path):
            item.add_marker(pytest.mark.chromium)


def pytest_runtest_setup(item):
    for marker in ("postgres", "redis", "chromium"):
        if item.get_closest_marker(marker) and (reason := _missing(marker)):
            if REQUIRE_ALL:
                pytest.fail(f"KANRI_REQUIRE_ALL=1 and this test {reason}", pytrace=False)
            pytest.skip(reason)


@pytest.fixture(autouse=True)
def _eager_celery_and_fresh_cache():
    """Run tasks in-process by default; tests/store/test_celery.py drives a real worker through
    the real broker instead. The cache (Redis in CI) is cleared so throttling does not leak,
    and so are the price rows a process keeps: a rolled-back test's price id can come back."""
    from django.core.cache import cache

    from store.celery import app
    from store.selectors import forget_prices

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    cache.clear()
    forget_prices()
    yield
    app.conf.task_always_eager = False


@pytest.fixture
def catalog(db):
    """The shipped catalog's plans by code. Seeded by a migration, but transactional tests flush
    tables, so tests that read the catalog ask for it here; it is seeded again only if missing."""
    ensure_shipped_catalog()
    return {plan.code: plan for plan in Plan.objects.all()}


PASSWORD = "correct-horse-battery-9"


@pytest.fixture
def password():
    return PASSWORD


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def payment_sandbox():
    """localstripe, the real fake processor, started once per run on a free loopback port;
    every test that pays talks to it through the real stripe SDK."""
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "billing.sandbox", "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        process.kill()
        pytest.fail("localstripe did not start")
    url = f"http://127.0.0.1:{port}"
    with override_settings(STRIPE_API_BASE=url):
        yield url
    process.terminate()
    process.wait(timeout=10)
