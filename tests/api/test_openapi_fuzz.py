"""The OpenAPI document states what the server checks, and schemathesis holds the server to it,
through Kanri's own WSGI application: generated requests (valid and invalid) with a live key never
get a server error, valid ones are accepted, invalid ones refused, and every answer matches the
document (status documented, body in its schema, headers, JSON). Bounded to stay fast."""
import datetime as dt

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings

from api.endpoints import crm_api
from api.schemas import EARLIEST_REPORT
from billing.entitlements import ACTIONS_ON
from store import clock
from tests.api.conftest import key_for

pytestmark = pytest.mark.django_db

# The document the application serves (tested below); loaded without a request, because test
# collection has no database (schemathesis' pytest fixture loader does not run on pytest 9).
DOCUMENT = crm_api.get_openapi_schema(path_prefix="/api/v1/")
schema = schemathesis.openapi.from_dict(DOCUMENT)
schema.app = get_wsgi_application()  # every request, the checks' probes too, goes in-process


def test_the_document_is_the_one_served_at_openapi_json(client):
    assert client.get("/api/v1/openapi.json").json() == DOCUMENT


def test_the_document_states_what_the_server_checks():
    schemas, paths = DOCUMENT["components"]["schemas"], DOCUMENT["paths"]

    assert schemas["AuthorizeIn"]["oneOf"] == [
        {"properties": {"resource": {"const": resource}, "action": {"enum": list(actions)}}}
        for resource, actions in ACTIONS_ON.items()]
    reported_at = schemas["UsageIn"]["properties"]["reported_at"]
    assert reported_at["format"] == "date-time"
    assert ("from 2000-01-01T00:00:00Z to the server's now plus 5 minutes"
            in reported_at["description"])
    for path in ("/api/v1/usage", "/api/v1/authorize"):
        answers = {int(status): answer for status, answer in paths[path]["post"]["responses"]
                   .items()}
        assert set(answers) == {200, 400, 401, 413, 415, 429}
        assert "WWW-Authenticate" in answers[401]["headers"]
        assert "Retry-After" in answers[429]["headers"]
        assert all("Cache-Control" in answer["headers"] for answer in answers.values())
    for words in ("404", "405", "`Allow`", "no-store", "application/json"):
        assert words in DOCUMENT["info"]["description"]


@pytest.fixture
def in_test_transaction(db):
    """Requests run inside the test's transaction, as Django's test client runs them: the
    connection must not be closed at each request's end."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def key_header(admin, settings) -> dict:
    settings.KANRI_API_RATE_PER_MINUTE = 10**6  # every generated request reaches the endpoint
    return {"Authorization": f"Bearer {key_for(admin)}"}


@schema.parametrize()
@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_generated_request_gets_an_answer_the_document_describes(
        case, in_test_transaction, key_header):
    within_the_stated_time(case)
    case.call_and_validate(base_url="http://localhost", headers=key_header)


def within_the_stated_time(case) -> None:
    """JSON Schema cannot bound a date-time, so the document states a report's time range in
    words (2000-01-01 to now + 5 minutes) and schemathesis draws any year from 0001 to 9999. A
    valid report drawn outside that range is moved to now; any other time it draws is sent as
    drawn, and every check, valid data accepted included, holds for every request."""
    body = case.body
    if case.meta.generation.mode.is_negative or not isinstance(body, dict) or not isinstance(
            body.get("reported_at"), str):
        return
    try:
        stated = EARLIEST_REPORT <= dt.datetime.fromisoformat(body["reported_at"]) <= clock.now()
    except (ValueError, OverflowError):  # not a time Python reads: the server judges it
        return
    if not stated:
        body["reported_at"] = clock.now().isoformat()
