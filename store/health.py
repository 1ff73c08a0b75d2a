"""/healthz (the process answers) and /readyz (what a request needs is reachable: the database,
the Celery broker, the cache and the payment processor). Load balancers and orchestrators ask
these; they run no session or login and answer in JSON, 503 naming what is down."""
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from kombu import Connection

from billing import gateway

TIMEOUT_SECONDS = 3


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _broker() -> None:
    with Connection(settings.CELERY_BROKER_URL, connect_timeout=TIMEOUT_SECONDS) as broker:
        broker.ensure_connection(max_retries=1, timeout=TIMEOUT_SECONDS)


def _cache() -> None:
    cache.set("readyz", "ok", timeout=10)
    if cache.get("readyz") != "ok":
        raise RuntimeError("the cache did not keep a value")


def _processor() -> None:
    gateway.ping(timeout=TIMEOUT_SECONDS)


CHECKS = {"database": _database, "broker": _broker, "cache": _cache, "processor": _processor}


@never_cache
def healthz(request):
    return JsonResponse({"status": "ok"})


@never_cache
def readyz(request):
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
        except Exception as error:  # noqa: BLE001 - any failure means "not ready": say which
            results[name] = f"down: {type(error).__name__}"
        else:
            results[name] = "ok"
    down = [name for name, result in results.items() if result != "ok"]
    return JsonResponse({"status": "down: " + ", ".join(down) if down else "ok", **results},
                        status=503 if down else 200)
