"""/healthz and /readyz: ready only when the database, the broker, the cache and the processor
answer; a stopped service (a closed loopback port: the connection is refused) is named."""
import pytest
from django.test import override_settings

from tests.billing.faults import closed_port

pytestmark = [pytest.mark.usefixtures("payment_sandbox"), pytest.mark.redis]


def test_healthz_answers_without_a_login(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_is_ok_when_everything_answers(client, db):
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok", "cache": "ok",
                               "processor": "ok"}


def test_readyz_names_a_stopped_redis_broker_and_cache(client, db):
    stopped = f"redis://127.0.0.1:{closed_port()}/0"
    with override_settings(CELERY_BROKER_URL=stopped, CACHES={"default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": stopped}}):
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down: broker, cache"
    assert body["broker"].startswith("down") and body["database"] == "ok"


def test_readyz_names_a_processor_that_does_not_answer(client, db):
    with override_settings(STRIPE_API_BASE=f"http://127.0.0.1:{closed_port()}"):
        response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["status"] == "down: processor"
