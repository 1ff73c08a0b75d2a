"""Request ids and structured logs.

Every request gets an id (the caller's `X-Request-ID` when it is a plain token, else a new one),
sent back in the response's `X-Request-ID` header and attached, with the organisation's id, to
every log record made while it runs; a Celery task's records carry its task id the same way.
Production logs are JSON lines; `make run` prints readable lines. Kanri never logs card data or
secrets: records carry ids, never request bodies.
"""
import contextvars
import json
import logging
import re
import time
import uuid

from celery.signals import task_failure, task_postrun, task_prerun

request_id = contextvars.ContextVar("request_id", default="")
organisation_id = contextvars.ContextVar("organisation_id", default=None)
TOKEN = re.compile(r"[A-Za-z0-9._-]{1,64}")
access_log = logging.getLogger("kanri.request")


class ContextFilter(logging.Filter):
    """Puts the request (or task) id and the organisation id on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.organisation_id = organisation_id.get()
        return True


class JsonFormatter(logging.Formatter):
    FIELDS = ("method", "path", "status", "duration_ms")

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname,
                "logger": record.name, "message": record.getMessage(),
                "request_id": getattr(record, "request_id", ""),
                "organisation_id": getattr(record, "organisation_id", None)}
        line.update({key: getattr(record, key) for key in self.FIELDS if hasattr(record, key)})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class RequestIdMiddleware:
    """After authentication, so the organisation is known; logs one line per request."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        given = request.headers.get("X-Request-ID", "")
        rid = given if TOKEN.fullmatch(given) else uuid.uuid4().hex
        request.request_id = rid
        user = getattr(request, "user", None)
        org = getattr(user, "organisation_id", None) if user is not None and \
            user.is_authenticated else None
        tokens = request_id.set(rid), organisation_id.set(org)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = rid
            access_log.info("%s %s %s", request.method, request.path, response.status_code,
                            extra={"method": request.method, "path": request.path,
                                   "status": response.status_code,
                                   "duration_ms": round((time.perf_counter() - started) * 1000,
                                                        1)})
            return response
        finally:
            request_id.reset(tokens[0])
            organisation_id.reset(tokens[1])


@task_prerun.connect(weak=False)
def _task_started(task_id=None, **kwargs) -> None:
    request_id.set(task_id or "")
    organisation_id.set(None)


@task_postrun.connect(weak=False)
def _task_finished(**kwargs) -> None:
    request_id.set("")


task_log = logging.getLogger("kanri.task")


@task_failure.connect(weak=False)
def _task_failed(sender=None, task_id=None, exception=None, args=None, kwargs=None,
                 **extra) -> None:
    """A failed task, with what it was asked (Kanri's tasks take ids and names, never card data
    or secrets); its retry policy (autoretry, or the next beat run of an idempotent sweep) acts
    on its own."""
    task_log.error("task %s failed: %r (args %s, kwargs %s)", getattr(sender, "name", sender),
                   exception, args, kwargs)
