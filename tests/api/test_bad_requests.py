"""What the API refuses, and that a refusal writes nothing: malformed JSON, a key given twice,
wrong types, unknown actions and resources, an action on a resource it does not apply to,
negative or huge numbers → 400 with a sentence; a body past the upload limit → 413; a body not
sent as JSON → 415; a missing, malformed, wrong or revoked key → 401."""
import datetime as dt
import json

import pytest

from accounts.models import Organisation
from api.models import ApiKey, UsageReport
from api.services import api_key_revoke
from billing.entitlements import ACTIONS, ACTIONS_ON, RESOURCES
from store import clock
from tests.api.conftest import Crm, key_for

pytestmark = pytest.mark.django_db
NOW = "2026-11-26T10:00:00+09:00"


def usage(**changes) -> dict:
    body = {"records": 5, "storage_mb": 1, "reported_at": clock.now().isoformat()}
    body.update(changes)
    return {key: value for key, value in body.items() if value is not ...}


def ahead(days: int) -> str:
    return (clock.now() + dt.timedelta(days=days)).isoformat()


BAD = [
    # (name, path, body, the message's words)
    ("json cut short", "usage", '{"records": 5, "storage_mb":',
     "The request body is not valid JSON."),
    ("not json at all", "authorize", "action=create", "The request body is not valid JSON."),
    ("an action twice", "authorize",
     '{"action": "create", "resource": "records", "action": "update"}',
     "“action” appears twice in one object of the request body: send each key once."),
    ("records twice", "usage",
     f'{{"records": 1, "records": 4242, "storage_mb": 0, "reported_at": "{NOW}"}}',
     "“records” appears twice"),
    ("a key twice, deeper down", "usage",
     f'{{"records": {{"n": [{{"x": 1, "x": 2}}]}}, "storage_mb": 0, "reported_at": "{NOW}"}}',
     "“x” appears twice"),
    ("no body", "usage", "", "The request body must be a JSON object."),
    ("a list", "usage", "[1, 2]", "The request body must be a JSON object."),
    ("a number", "authorize", "12", "The request body must be a JSON object."),
    ("records as text", "usage", usage(records="12"), "records must be a whole number"),
    ("records with a fraction", "usage", usage(records=1.5), "records must be a whole number"),
    ("records true", "usage", usage(records=True), "records must be a whole number"),
    ("records null", "usage", usage(records=None), "records must be a whole number"),
    ("records NaN", "usage", f'{{"records": NaN, "storage_mb": 0, "reported_at": "{NOW}"}}',
     "records must be a whole number"),
    ("negative records", "usage", usage(records=-1),
     "records must be a whole number from 0 to 1,000,000,000,000."),
    ("a trillion and one", "usage", usage(records=10**12 + 1),
     "records must be a whole number from 0 to 1,000,000,000,000."),
    ("a huge number", "usage", usage(storage_mb=10**40),
     "storage_mb must be a whole number from 0 to 1,000,000,000,000."),
    ("no storage", "usage", usage(storage_mb=...), "storage_mb is required."),
    ("no time zone", "usage", usage(reported_at="2026-11-26T10:00:00"), "reported_at must be a "
     "date and time with its time zone"),
    ("not a date", "usage", usage(reported_at="yesterday"), "reported_at must be a date and time"),
    ("seconds since 1970", "usage", usage(reported_at=1764100000),
     "reported_at must be a date and time"),
    ("a day ahead", "usage", usage(reported_at=ahead(1)), "reported_at must be a time between "
     "2000-01-01 and now"),
    ("the last century", "usage", usage(reported_at="1999-12-31T23:59:59Z"),
     "reported_at must be a time between 2000-01-01 and now"),
    ("an unknown field", "usage", usage(organisation=1), "organisation is not a field of this "
     "request."),
    ("an unknown action", "authorize", {"action": "delete", "resource": "records"},
     "action must be one of: create, update, upload."),
    ("an unknown resource", "authorize", {"action": "create", "resource": "users"},
     "resource must be one of: records, storage."),
    ("an upload of records", "authorize", {"action": "upload", "resource": "records"},
     "upload does not apply to records: the actions on records are create, update."),
    ("no action", "authorize", {"resource": "records"}, "action is required."),
    ("a negative amount", "authorize", {"action": "create", "resource": "records", "amount": -5},
     "amount must be a whole number from 0 to 1,000,000,000,000."),
    ("a huge amount", "authorize", {"action": "upload", "resource": "storage", "amount": 10**13},
     "amount must be a whole number from 0 to 1,000,000,000,000."),
    ("an amount as text", "authorize", {"action": "create", "resource": "records", "amount": "1"},
     "amount must be a whole number"),
]


@pytest.fixture
def english_crm(admin):
    admin.organisation.language = "en"
    admin.organisation.save()
    return Crm(key_for(admin))


def unchanged(organisation: Organisation) -> tuple:
    organisation.refresh_from_db()
    return (UsageReport.objects.count(), organisation.record_count, organisation.storage_used_mb,
            organisation.usage_reported_at)


@pytest.mark.parametrize("name, path, body, words", BAD, ids=[row[0] for row in BAD])
def test_a_bad_request_is_400_with_a_sentence_and_writes_nothing(admin, english_crm, name, path,
                                                                 body, words):
    before = unchanged(admin.organisation)

    response = english_crm.post(path, body)

    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert words in response.json()["detail"]
    assert unchanged(admin.organisation) == before == (0, 0, 0, None)


def test_each_bad_field_is_named_once(english_crm):
    response = english_crm.post("usage", {"records": -1, "storage_mb": "x"})

    assert response.status_code == 400
    assert [error["field"] for error in response.json()["errors"]] == [
        "records", "storage_mb", "reported_at"]


def test_an_action_is_answered_only_on_a_resource_it_applies_to(english_crm):
    answers = {(action, resource): english_crm.post(
        "authorize", {"action": action, "resource": resource, "amount": 0})
        for action in ACTIONS for resource in RESOURCES}

    assert {pair for pair, response in answers.items() if response.status_code == 200} == {
        (action, resource) for resource, actions in ACTIONS_ON.items() for action in actions}
    refused = answers["upload", "records"]
    assert refused.status_code == 400
    assert refused.json()["errors"] == [{"field": "action", "message": (
        "upload does not apply to records: the actions on records are create, update.")}]


def test_a_japanese_organisation_is_told_in_japanese(crm):
    response = crm.post("authorize", {"action": "delete", "resource": "records"})

    assert response.status_code == 400
    assert response.json()["detail"] == (
        "action は create, update, upload のいずれかにしてください。")


def wrong_keys(admin) -> list[tuple[str, dict]]:
    live = key_for(admin)
    prefix = live.split("_")[1]
    revoked = key_for(admin, "old CRM")
    api_key_revoke(key=ApiKey.objects.get(prefix=revoked.split("_")[1]), acting_user=admin)
    return [
        ("no key", {}),
        ("an empty bearer", {"Authorization": "Bearer "}),
        ("not a bearer", {"Authorization": f"Basic {live}"}),
        ("malformed", {"Authorization": "Bearer kanri_short"}),
        ("unknown prefix", {"Authorization": f"Bearer kanri_zzzzzzzz_{'A' * 40}"}),
        ("wrong secret", {"Authorization": f"Bearer kanri_{prefix}_{'A' * 40}"}),
        ("wrong secret, other header", {"X-Api-Key": f"kanri_{prefix}_{'B' * 40}"}),
        ("revoked", {"Authorization": f"Bearer {revoked}"}),
        ("revoked, other header", {"X-Api-Key": revoked}),
    ]


def test_a_missing_wrong_or_revoked_key_is_401_and_writes_nothing(admin):
    cases = wrong_keys(admin)
    nobody = Crm(None)
    before = unchanged(admin.organisation)

    for name, headers in cases:
        for response in (nobody.get("entitlements", **headers),
                         nobody.post("usage", usage(), **headers),
                         nobody.post("authorize", {"action": "create", "resource": "records"},
                                     **headers)):
            assert response.status_code == 401, name
            assert response.json()["detail"], name
    assert unchanged(admin.organisation) == before
    assert not ApiKey.objects.filter(last_used_at__isnull=False).exists()


def test_a_deleted_accounts_key_is_401(admin, crm):
    Organisation.objects.filter(pk=admin.organisation_id).update(closed_at=clock.now())

    assert crm.get("entitlements").status_code == 401


def test_the_401_says_how_to_send_a_key():
    response = Crm(None).get("entitlements", **{"Accept-Language": "en"})

    assert response.json() == {
        "detail": "Unknown or revoked API key: send a valid key as “Authorization: Bearer <key>” "
                  "or “X-Api-Key: <key>”.", "errors": []}


def test_the_openapi_document_and_docs_page_need_no_key(client):
    document = client.get("/api/v1/openapi.json")

    assert document.status_code == 200
    assert set(document.json()["paths"]) == {"/api/v1/entitlements", "/api/v1/usage",
                                             "/api/v1/authorize"}
    assert client.get("/api/v1/docs").status_code == 200


def send(crm: Crm, path: str, body, content_type: str):
    return crm.client.generic("POST", f"/api/v1/{path}", json.dumps(body),
                              content_type=content_type, headers=crm.headers)


NOT_JSON_TYPES = ["text/plain", "application/xml", "", "application/x-www-form-urlencoded",
                  "multipart/form-data; boundary=x", "application/json; charset=iso-8859-1",
                  "application/jsonx", "text/json"]


@pytest.mark.parametrize("content_type", NOT_JSON_TYPES)
def test_a_body_not_sent_as_json_is_415_and_writes_nothing(admin, english_crm, content_type):
    before = unchanged(admin.organisation)

    for path, body in (("usage", usage()), ("authorize", {"action": "update",
                                                         "resource": "records"})):
        response = send(english_crm, path, body, content_type)

        assert response.status_code == 415, (path, response.content)
        assert response.json() == {
            "detail": "The request body must be JSON in UTF-8, sent with “Content-Type: "
                      "application/json”.", "errors": []}
    assert unchanged(admin.organisation) == before == (0, 0, 0, None)


@pytest.mark.parametrize("content_type", [
    "application/json", "application/json; charset=utf-8", "Application/JSON; Charset=UTF-8",
    "application/vnd.kanri+json"])
def test_json_is_read_with_or_without_its_charset(admin, crm, content_type):
    response = send(crm, "usage", usage(records=7), content_type)

    assert response.status_code == 200, response.content
    admin.organisation.refresh_from_db()
    assert admin.organisation.record_count == 7


def test_the_key_is_checked_before_the_content_type(admin):
    before = unchanged(admin.organisation)

    response = send(Crm(None), "usage", usage(), "text/plain")

    assert response.status_code == 401
    assert unchanged(admin.organisation) == before


def test_the_415_is_in_the_organisations_language(crm):
    response = send(crm, "authorize", {"action": "update", "resource": "records"},
                    "text/plain")

    assert response.json()["detail"] == (
        "リクエスト本文は UTF-8 の JSON とし、「Content-Type: application/json」を付けて送って"
        "ください。")


@pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])
def test_a_body_past_the_upload_limit_is_413_and_writes_nothing(admin, english_crm, settings,
                                                                debug):
    settings.DEBUG = debug
    three_mb = {**usage(), "padding": "x" * 3_000_000}
    before = unchanged(admin.organisation)

    response = english_crm.post("usage", three_mb)

    assert response.status_code == 413, response.content[:500]
    assert response.json() == {
        "detail": "The request body is too large: at most 2,621,440 bytes.", "errors": []}
    assert unchanged(admin.organisation) == before
    assert Crm(None).post("usage", three_mb).status_code == 401  # the key first, as ever
