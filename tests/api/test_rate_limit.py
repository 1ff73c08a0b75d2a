"""Each key may make KANRI_API_RATE_PER_MINUTE requests a minute, counted in the shared cache;
beyond, 429 with Retry-After until the minute turns."""
import pytest
from django.test import override_settings

from api import ratelimit
from tests.api.conftest import Crm, key_for

pytestmark = [pytest.mark.django_db, pytest.mark.redis]


@pytest.fixture
def minute(monkeypatch):
    """The clock the count reads, stopped 45 s into a minute."""
    moment = {"now": 1_800_000_000.0 - 1_800_000_000.0 % 60 + 45}
    monkeypatch.setattr(ratelimit, "now", lambda: moment["now"])
    return moment


@override_settings(KANRI_API_RATE_PER_MINUTE=3)
def test_past_the_rate_a_key_gets_429_with_retry_after_until_the_minute_turns(admin, minute):
    admin.organisation.language = "en"
    admin.organisation.save()
    crm, other_key = Crm(key_for(admin)), Crm(key_for(admin, "CRM staging"))

    answers = [crm.get("entitlements").status_code,
               crm.post("authorize", {"action": "create", "resource": "records"}).status_code,
               crm.post("usage", {"records": -1}).status_code]  # refused ones count too
    refused = crm.get("entitlements")

    assert answers == [200, 200, 400]
    assert refused.status_code == 429
    assert refused["Retry-After"] == "15"
    assert refused.json()["detail"] == ("Too many requests with this API key: at most 3 a "
                                        "minute. Try again when the minute turns (Retry-After).")
    assert other_key.get("entitlements").status_code == 200  # per key, not per organisation

    minute["now"] += 15
    assert crm.get("entitlements").status_code == 200


@override_settings(KANRI_API_RATE_PER_MINUTE=1)
def test_a_wrong_key_is_refused_before_it_is_counted(admin, minute):
    crm = Crm(key_for(admin))
    for _ in range(3):
        assert Crm("kanri_aaaaaaaa_" + "A" * 40).get("entitlements").status_code == 401

    assert crm.get("entitlements").status_code == 200
