"""The API for the CRM (/api/v1/): what an organisation may do, the usage it reports, and "may it
do this?". Thin: the key (ninja auth) decides the organisation, one service or read answers.
Every error is JSON `{"detail": ...}` a person can read, in the organisation's language once the
key is known: 400 for a body that is not what the document describes (ninja's 422 included) or
gives a key twice, 401 for a missing, wrong or revoked key, 413 for a body past Django's upload
limit, 415 for a body not sent as JSON, 429 over the key's rate, 500 for Kanri's own error. The
key is checked first, then the rate, then the body. `api/http.py` holds what ninja does not
answer (404, 405) and every answer's headers to the same contract."""
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.signals import got_request_exception
from django.http import Http404
from django.utils import translation
from django.utils.log import log_response
from django.utils.translation import gettext as _
from django.views.decorators.http import require_safe
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, Throttled, ValidationError
from ninja.renderers import JSONRenderer

from api.auth import BearerKey, HeaderKey
from api.http import error_response, not_found
from api.models import ApiKey
from api.parser import DuplicateKey, JsonParser, MalformedBody, NotJson
from api.ratelimit import PerKeyRate
from api.schemas import (
    BODY_ERRORS,
    DESCRIPTION,
    ERRORS,
    MAX_COUNT,
    AuthorizeIn,
    DecisionOut,
    EntitlementsOut,
    UsageIn,
    UsageReportOut,
    documented,
)
from api.services import usage_report
from billing.entitlements import ACTIONS, ACTIONS_ON, RESOURCES, Entitlements, authorize
from billing.entitlements_cache import entitlements_cached
from store.money import format_number


class Utf8Json(JSONRenderer):
    """Japanese reasons as characters, not escape sequences (the body is UTF-8)."""

    json_dumps_params = {"ensure_ascii": False}


crm_api = NinjaAPI(
    title="Kanri API for the CRM", version="1", urls_namespace="api_v1", description=DESCRIPTION,
    auth=[BearerKey(), HeaderKey()], throttle=[PerKeyRate()], parser=JsonParser(),
    renderer=Utf8Json(), docs_decorator=require_safe)


def _language(request) -> str:
    key = getattr(request, "auth", None)
    return key.organisation.language if isinstance(key, ApiKey) else translation.get_language()


@crm_api.exception_handler(AuthenticationError)
def _unauthenticated(request, exc):
    response = error_response(401, _("Unknown or revoked API key: send a valid key as "
                                     "“Authorization: Bearer <key>” or “X-Api-Key: <key>”."))
    # RFC 9110 asks a 401 for its scheme (RFC 6750's error code once a key was sent);
    # X-Api-Key has no scheme to name, so only the body mentions it.
    sent = request.headers.get("Authorization") or request.headers.get("X-Api-Key")
    response["WWW-Authenticate"] = 'Bearer realm="kanri"' + (
        ', error="invalid_token"' if sent else "")
    return response


@crm_api.exception_handler(Http404)
def _not_found(request, exc):
    return not_found(request)


@crm_api.exception_handler(Exception)
def _failed(request, exc):
    """Kanri's own error: reported and logged with its traceback as Django would (ninja lets
    Django answer it, an HTML page), answered in JSON."""
    got_request_exception.send(sender=None, request=request)
    with translation.override(_language(request)):
        response = error_response(500, _(
            "Kanri could not answer because of an error on its side, which is logged. Try "
            "again later; if it goes on, give support this answer's X-Request-ID."))
    log_response("%s: %s", response.reason_phrase, request.path, response=response,
                 request=request, exception=exc)
    return response


@crm_api.exception_handler(Throttled)
def _throttled(request, exc):
    language = _language(request)
    with translation.override(language):
        return error_response(429, _(
            "Too many requests with this API key: at most %(rate)s a minute. Try again when "
            "the minute turns (Retry-After).") % {
            "rate": format_number(settings.KANRI_API_RATE_PER_MINUTE, language)})


@crm_api.exception_handler(RequestDataTooBig)
def _too_large(request, exc):
    """Django refuses to read a body past DATA_UPLOAD_MAX_MEMORY_SIZE (its own answer is an HTML
    400, or a traceback under DEBUG)."""
    language = _language(request)
    with translation.override(language):
        return error_response(413, _(
            "The request body is too large: at most %(bytes)s bytes.") % {
            "bytes": format_number(settings.DATA_UPLOAD_MAX_MEMORY_SIZE, language)})


@crm_api.exception_handler(HttpError)
def _http_error(request, exc):
    with translation.override(_language(request)):
        body = exc.__cause__  # ninja's HttpError(400) raised from the parser's error
        if isinstance(body, NotJson):
            return error_response(415, _(
                "The request body must be JSON in UTF-8, sent with “Content-Type: "
                "application/json”."))
        if isinstance(body, DuplicateKey):
            return error_response(400, _(
                "“%(key)s” appears twice in one object of the request body: send each key "
                "once.") % {"key": body.key})
        if isinstance(body, MalformedBody):
            return error_response(400, _("The request body is not valid JSON."))
        return error_response(exc.status_code, str(exc))


def _field_message(error: dict) -> tuple[str, str]:
    """(field, message) of one pydantic error, in the active language."""
    field = ".".join(str(part) for part in error["loc"][2:])  # ("body", "payload", ...)
    kind = error["type"]
    if kind == "action_not_on_resource":  # the whole body's error: the pair
        action, resource = error["ctx"]["action"], error["ctx"]["resource"]
        return "action", _("%(action)s does not apply to %(resource)s: the actions on "
                           "%(resource)s are %(actions)s.") % {
            "action": action, "resource": resource, "actions": ", ".join(ACTIONS_ON[resource])}
    if not field:
        return "", _("The request body must be a JSON object.")
    if kind == "missing":
        return field, _("%(field)s is required.") % {"field": field}
    if kind == "extra_forbidden":
        return field, _("%(field)s is not a field of this request.") % {"field": field}
    if kind == "literal_error":
        choices = {"action": ACTIONS, "resource": RESOURCES}.get(field, ())
        return field, _("%(field)s must be one of: %(choices)s.") % {
            "field": field, "choices": ", ".join(choices)}
    # int_parsing_size: a whole number past what pydantic reads, written as 1e30
    if kind in {"greater_than_equal", "less_than_equal", "int_parsing_size"}:
        return field, _("%(field)s must be a whole number from 0 to %(max)s.") % {
            "field": field, "max": format_number(MAX_COUNT, translation.get_language())}
    if kind.startswith("int_") or kind == "finite_number":
        return field, _("%(field)s must be a whole number, written without quotes.") % {
            "field": field}
    if kind == "datetime_range":
        return field, _("%(field)s must be a time between 2000-01-01 and now: the time the "
                        "counts were taken.") % {"field": field}
    if kind.startswith(("datetime", "timezone")):
        return field, _("%(field)s must be a date and time with its time zone (ISO 8601, e.g. "
                        "2026-12-01T09:00:00+09:00).") % {"field": field}
    return field, _("%(field)s is not valid.") % {"field": field}


@crm_api.exception_handler(ValidationError)
def _invalid(request, exc):
    """ninja answers 422 with pydantic's English; the CRM gets 400 and sentences."""
    with translation.override(_language(request)):
        errors = [_field_message(error) for error in exc.errors]
        return error_response(400, " ".join(dict.fromkeys(text for field, text in errors)),
                              [{"field": field, "message": message} for field, message in errors])


def _instant(moment) -> str:
    """As the JSON fields write it (UTC as Z)."""
    return moment.isoformat().replace("+00:00", "Z")


def _as_json(e: Entitlements) -> dict:
    return {"plan": e.plan, "plan_name": e.plan_name, "status": e.status,
            "limits": {"records": e.limits.records, "storage_mb": e.limits.storage_mb,
                       "users": e.limits.users, "features": e.limits.features},
            "usage": {"records": e.usage.records, "storage_mb": e.usage.storage_mb,
                      "users": e.usage.users},
            "over_record_limit": e.over_record_limit, "over_storage": e.over_storage}


ENTITLEMENTS_ANSWERS = {200: EntitlementsOut, **ERRORS}
USAGE_ANSWERS = {200: UsageReportOut, **BODY_ERRORS, **ERRORS}
AUTHORIZE_ANSWERS = {200: DecisionOut, **BODY_ERRORS, **ERRORS}


@crm_api.get("/entitlements", response=ENTITLEMENTS_ANSWERS,
             openapi_extra=documented(ENTITLEMENTS_ANSWERS), operation_id="entitlements",
             summary="The organisation's plan, status, limits and usage")
def entitlements(request):
    return _as_json(entitlements_cached(organisation=request.auth.organisation))


@crm_api.post("/usage", response=USAGE_ANSWERS, openapi_extra=documented(USAGE_ANSWERS),
              operation_id="usage_report",
              summary="Report the records and storage the organisation uses")
def usage(request, payload: UsageIn):
    outcome = usage_report(key=request.auth, records=payload.records,
                           storage_mb=payload.storage_mb, reported_at=payload.reported_at)
    report, language = outcome.report, _language(request)
    with translation.override(language):
        if report.applied:
            detail = _("Recorded: %(records)s records and %(storage)s MB are the organisation's "
                       "usage now.") % {"records": format_number(report.records, language),
                                        "storage": format_number(report.storage_mb, language)}
        else:
            detail = _("Kept but not applied: the usage comes from a report taken at "
                       "%(applied)s, not older than this one.") % {
                "applied": _instant(outcome.applied_reported_at)}
    return {"applied": report.applied, "reported_at": report.reported_at,
            "applied_reported_at": outcome.applied_reported_at, "detail": detail}


@crm_api.post("/authorize", response=AUTHORIZE_ANSWERS,
              openapi_extra=documented(AUTHORIZE_ANSWERS), operation_id="authorize",
              summary="May the organisation do this? A refusal says why, with figures")
def authorize_action(request, payload: AuthorizeIn):
    decision = authorize(entitlements_cached(organisation=request.auth.organisation),
                         action=payload.action, resource=payload.resource,
                         amount=payload.amount)
    return {"allowed": decision.allowed, "reason": decision.reason}
