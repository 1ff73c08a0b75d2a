"""Every answer under /api/v1/ keeps the contract, whoever makes it: an error is JSON
`{"detail", "errors"}` (a path the API does not have 404, a method a path does not take 405 with
`Allow`, Kanri's own failure 500), a 401 names its scheme, no answer may be kept by a cache or
sets a cookie, and each varies by the key and the language."""
import json

import pytest
from django.test import Client

from api import endpoints, ratelimit
from tests.api.conftest import Crm

pytestmark = pytest.mark.django_db


def assert_json_error(response, status: int, detail: str | None = None):
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json; charset=utf-8"
    body = response.json()
    assert set(body) == {"detail", "errors"} and body["detail"] and body["errors"] == []
    if detail is not None:
        assert body["detail"] == detail


@pytest.mark.parametrize("method, path", [
    ("get", "nope"), ("post", "nope"), ("get", ""), ("get", "usage/"), ("get", "v2/entitlements"),
])
@pytest.mark.parametrize("who", ["with a key", "without"])
def test_a_path_the_api_does_not_have_is_a_json_404(crm, method, path, who):
    client = crm if who == "with a key" else Crm(None)

    response = getattr(client.client, method)(f"/api/v1/{path}", headers={
        **client.headers, "Accept-Language": "en"})

    assert_json_error(response, 404, "The API has no such address: its operations are listed "
                                     "at /api/v1/docs.")
    assert not response.cookies  # the portal's 404 page sets a CSRF cookie


@pytest.mark.parametrize("method, path, allow", [
    ("get", "usage", "POST"), ("get", "authorize", "POST"), ("put", "usage", "POST"),
    ("delete", "entitlements", "GET"), ("post", "entitlements", "GET"),
    ("options", "authorize", "POST"), ("post", "openapi.json", "GET, HEAD"),
    ("delete", "docs", "GET, HEAD"),
])
def test_a_method_a_path_does_not_take_is_a_json_405_with_allow(admin, crm, method, path,
                                                                 allow):
    response = getattr(crm.client, method)(f"/api/v1/{path}", headers={
        **crm.headers, "Accept-Language": "en"})

    assert_json_error(response, 405, f"This address takes only {allow}.")
    assert response["Allow"] == allow
    assert not response.cookies
    admin.organisation.refresh_from_db()
    assert admin.organisation.usage_reported_at is None


def test_the_404_and_405_are_in_the_callers_language():
    nobody = Crm(None)

    assert nobody.get("nope").json()["detail"] == (
        "API にこのアドレスはありません。使える操作は /api/v1/docs にあります。")
    assert nobody.get("usage").json()["detail"] == "このアドレスは POST のみ受け付けます。"


def every_kind_of_answer(crm: Crm, admin, settings, monkeypatch) -> dict:
    """One answer of each status the API gives, by name."""
    monkeypatch.setattr(ratelimit, "now", lambda: 1_800_000_000.0)  # one minute throughout
    settings.KANRI_API_RATE_PER_MINUTE = 12
    answers = {
        "entitlements 200": crm.get("entitlements"),
        "usage 200": crm.post("usage", {"records": 1, "storage_mb": 0,
                                        "reported_at": "2026-01-01T00:00:00Z"}),
        "authorize 200": crm.post("authorize", {"action": "update", "resource": "records"}),
        "400": crm.post("usage", {"records": -1}),
        "401": Crm(None).get("entitlements"),
        "404": crm.get("nope"),
        "405": crm.get("usage"),
        "413": crm.post("usage", {"padding": "x" * 3_000_000}),
        "415": crm.client.post("/api/v1/authorize", "{}", content_type="text/plain",
                               headers=crm.headers),
        "document": crm.client.get("/api/v1/openapi.json"),
        "docs page": crm.client.get("/api/v1/docs"),
    }
    while (refused := crm.get("entitlements")).status_code != 429:
        assert refused.status_code == 200
    answers["429"] = refused
    return answers


def test_no_answer_may_be_cached_and_each_varies_by_key_and_language(admin, crm, settings,
                                                                     monkeypatch):
    answers = every_kind_of_answer(crm, admin, settings, monkeypatch)

    assert {name: response.status_code for name, response in answers.items()} == {
        "entitlements 200": 200, "usage 200": 200, "authorize 200": 200, "400": 400,
        "401": 401, "404": 404, "405": 405, "413": 413, "415": 415, "document": 200,
        "docs page": 200, "429": 429}
    for name, response in answers.items():
        assert response["Cache-Control"] == "no-store", name
        vary = {field.strip().lower() for field in response["Vary"].split(",")}
        assert {"authorization", "x-api-key", "accept-language"} <= vary, name
        assert not response.cookies, name


def test_a_401_names_the_bearer_scheme_and_says_when_the_key_sent_is_wrong(admin):
    nothing = Crm(None).get("entitlements")
    wrong_bearer = Crm("kanri_zzzzzzzz_" + "A" * 40).post("usage", {"records": 1})
    wrong_header = Crm("kanri_short", header="x-api-key").get("entitlements")

    assert nothing["WWW-Authenticate"] == 'Bearer realm="kanri"'
    for response in (wrong_bearer, wrong_header):
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == 'Bearer realm="kanri", error="invalid_token"'
    assert "X-Api-Key: <key>" in nothing.json()["detail"]  # the other way, in words


def test_an_error_of_kanris_own_is_a_json_500_and_logged(admin, crm, monkeypatch, caplog):
    def broken(**kwargs):
        raise RuntimeError("the cache is on fire")

    monkeypatch.setattr(endpoints, "entitlements_cached", broken)
    crm.client = Client(raise_request_exception=False)

    response = crm.post("authorize", {"action": "update", "resource": "records"})

    assert_json_error(response, 500)
    assert "X-Request-ID" in response.json()["detail"]
    assert response["Cache-Control"] == "no-store"
    [record] = [r for r in caplog.records if r.name == "django.request"]
    assert record.levelname == "ERROR" and "the cache is on fire" in str(record.exc_info[1])
    assert "RuntimeError" not in json.dumps(response.json())
