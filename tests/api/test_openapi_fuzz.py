"""schemathesis against the OpenAPI document, through Kanri's own WSGI application: generated
requests (valid and invalid) with a live key never get a server error, and every answer matches
the document (status documented, body in its schema, JSON). Bounded to stay fast."""
import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from api.endpoints import crm_api
from tests.api.conftest import key_for

pytestmark = pytest.mark.django_db

# The document the application serves (tested below); loaded without a request, because test
# collection has no database (schemathesis' pytest fixture loader does not run on pytest 9).
DOCUMENT = crm_api.get_openapi_schema(path_prefix="/api/v1/")
schema = schemathesis.openapi.from_dict(DOCUMENT)
schema.app = get_wsgi_application()  # every request, the checks' probes too, goes in-process


def test_the_document_is_the_one_served_at_openapi_json(client):
    assert client.get("/api/v1/openapi.json").json() == DOCUMENT


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
    # JSON Schema cannot say "not after now": a usage report's time is checked by the API (400),
    # so a schema-valid report may be refused there; every other check holds everywhere.
    refused_by_time = [positive_data_acceptance] if case.path == "/api/v1/usage" else []
    case.call_and_validate(base_url="http://localhost", headers=key_header,
                           excluded_checks=refused_by_time)
