"""Each request's id in its response header and on every log record it makes, with the
organisation's id; JSON lines for production."""
import json
import logging

from django.urls import reverse

from store.observability import ContextFilter, JsonFormatter
from tests.accounts.factories import AdminFactory


def test_a_request_id_is_sent_back_and_on_its_log_records(client, db, caplog):
    admin = AdminFactory()
    client.force_login(admin)
    with caplog.at_level(logging.INFO, logger="kanri.request"):
        response = client.get(reverse("accounts:users"), HTTP_X_REQUEST_ID="trace-42")
    assert response["X-Request-ID"] == "trace-42"
    record = next(r for r in caplog.records if r.name == "kanri.request")
    line = json.loads(JsonFormatter().format(record))
    assert (line["method"], line["path"], line["status"]) == ("GET", "/manage/users/", 200)
    assert line["duration_ms"] >= 0


def test_an_unsafe_request_id_is_replaced_and_anonymous_requests_have_no_organisation(client,
                                                                                      db):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="<script>\nnew line")
    given = response["X-Request-ID"]
    assert given != "<script>\nnew line" and len(given) == 32


def test_records_made_during_a_request_carry_its_ids(client, db):
    admin = AdminFactory()
    client.force_login(admin)
    seen = []

    class Capture(logging.Handler):
        def emit(self, record):
            seen.append(json.loads(JsonFormatter().format(record)))

    handler = Capture()
    handler.addFilter(ContextFilter())
    logger = logging.getLogger("kanri.request")
    logger.addHandler(handler)
    try:
        client.get(reverse("accounts:users"), HTTP_X_REQUEST_ID="abc-1")
    finally:
        logger.removeHandler(handler)
    assert seen and seen[-1]["request_id"] == "abc-1"
    assert seen[-1]["organisation_id"] == admin.organisation_id


def test_a_failing_task_is_logged_with_its_arguments(caplog):
    from celery import shared_task

    from store.celery import app

    @shared_task(name="tests.fails")
    def fails(organisation_id):
        raise RuntimeError("boom")

    app.conf.task_always_eager, eager_before = True, app.conf.task_always_eager
    try:
        with caplog.at_level(logging.ERROR, logger="kanri.task"):
            fails.apply(args=(42,), task_id="task-7", throw=False)
    finally:
        app.conf.task_always_eager = eager_before
    record = next(r for r in caplog.records if r.name == "kanri.task")
    assert "task tests.fails failed: RuntimeError('boom') (args (42,)" in record.getMessage()
