"""The API's request and answer shapes, and what else its OpenAPI document says: the document is
generated from them, and states every rule the server checks that JSON Schema can express (the
rest in words)."""
import datetime as dt
from typing import Annotated, Literal

import pydantic
from django.conf import settings
from ninja import Field, Schema
from pydantic import AwareDatetime, BeforeValidator, ConfigDict, field_validator, model_validator
from pydantic_core import PydanticCustomError

from billing.entitlements import ACTIONS, ACTIONS_ON, RESOURCES
from billing.models import Status
from store import clock

# Counts and sizes: whole numbers from 0 up to a trillion. JSON has one kind of number, so 12.0
# is 12 (as JSON Schema's "integer" says); 1.5, "12", true and null are refused.
MAX_COUNT = 10**12
# A report's time: not before this, nor later than now and a little clock skew (a report dated
# far ahead would make every true report after it look old, and be ignored).
EARLIEST_REPORT = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
CLOCK_SKEW = dt.timedelta(minutes=5)


def _a_number(value):
    if isinstance(value, (bool, str)):  # pydantic would read "12" as 12 and true as 1
        raise PydanticCustomError("int_type", "a whole number")
    return value


# The bounds before the validator, or pydantic leaves them out of the document's JSON Schema.
Count = Annotated[int, pydantic.Field(ge=0, le=MAX_COUNT), BeforeValidator(_a_number)]
Action = Literal[ACTIONS]
Resource = Literal[RESOURCES]
StatusCode = Literal[tuple(Status.values)]


class Strict(Schema):
    model_config = ConfigDict(extra="forbid")


class UsageIn(Strict):
    records: Count = Field(description="Records the organisation holds in the CRM now.")
    storage_mb: Count = Field(description="Storage it uses, in MB.")
    reported_at: AwareDatetime = Field(
        description="When the counts were taken: a date-time with its offset (`Z` or ±hh:mm), "
                    "e.g. 2026-12-01T09:00:00+09:00, from "
                    f"{EARLIEST_REPORT.isoformat().replace('+00:00', 'Z')} to the server's now "
                    f"plus {CLOCK_SKEW.seconds // 60} minutes (a range JSON Schema cannot "
                    "state; a time outside it is refused, 400). A report not newer than the "
                    "last applied one is kept but ignored.",
        examples=["2026-12-01T09:00:00+09:00"])

    @field_validator("reported_at", mode="before")
    @classmethod
    def _text(cls, value):
        if not isinstance(value, str):  # pydantic would read a number as seconds since 1970
            raise PydanticCustomError("datetime_text", "a date and time as text")
        return value

    @field_validator("reported_at")
    @classmethod
    def _not_ahead(cls, value: dt.datetime):
        if not EARLIEST_REPORT <= value <= clock.now() + CLOCK_SKEW:
            raise PydanticCustomError("datetime_range", "between 2000 and now")
        return value


APPLIES = " ".join(f"On {resource}: {', '.join(actions)}." for resource, actions in
                   ACTIONS_ON.items())


class AuthorizeIn(Strict):
    # The pairs, for a client generated from the document: one branch per resource.
    model_config = ConfigDict(json_schema_extra={"oneOf": [
        {"properties": {"resource": {"const": resource}, "action": {"enum": list(actions)}}}
        for resource, actions in ACTIONS_ON.items()]})

    action: Action = Field(description=f"What the CRM is about to do. {APPLIES} Any other pair "
                                       "of action and resource is refused (400).")
    resource: Resource
    amount: Count = Field(1, description="Records to create, or the upload's size in MB.")

    @model_validator(mode="after")
    def _applies(self):
        if self.action not in ACTIONS_ON[self.resource]:
            raise PydanticCustomError("action_not_on_resource", "{action} on {resource}",
                                      {"action": self.action, "resource": self.resource})
        return self


class Users(Schema):
    regular: int
    team: int


class LimitsOut(Schema):
    records: int | None = Field(description="null: no limit.")
    storage_mb: int = Field(description="Included with the plan and its licences, plus bought.")
    users: Users = Field(description="Licences bought per licence type.")
    features: list[str]


class UsageOut(Schema):
    records: int
    storage_mb: int
    users: Users = Field(description="Active users per licence type.")


class EntitlementsOut(Schema):
    plan: str
    plan_name: str = Field(description="In the organisation's language.")
    status: StatusCode
    limits: LimitsOut
    usage: UsageOut
    over_record_limit: bool
    over_storage: bool


class UsageReportOut(Schema):
    applied: bool
    reported_at: dt.datetime
    applied_reported_at: dt.datetime | None = Field(
        description="The time of the report the organisation's usage now comes from.")
    detail: str


class DecisionOut(Schema):
    allowed: bool
    reason: str = Field(description="Why not, in the organisation's language; empty if allowed.")


class FieldError(Schema):
    field: str
    message: str


class ErrorOut(Schema):
    detail: str
    errors: list[FieldError] = []


DESCRIPTION = (
    "What an organisation may do in the CRM. Send the organisation's API key (made on Manage › "
    "API keys) as `Authorization: Bearer <key>` or `X-Api-Key: <key>`. A body is JSON, sent "
    "with `Content-Type: application/json` (UTF-8), each key once in each object, at most "
    f"{settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} bytes.\n\n"
    "Every error is JSON `{\"detail\", \"errors\"}`, `detail` a sentence in the "
    "organisation's language: 400 a body this document does not describe, 401 no live key "
    "(with `WWW-Authenticate`), 404 a path not listed here, 405 a method a path does not take "
    "(with `Allow`), 413 a body too large, 415 a body not sent as JSON, 429 over the key's "
    "requests per minute (with `Retry-After`), 500 an error of Kanri's own. The key is checked "
    "first, then the rate, then the body: a refusal writes nothing. No cache may keep an answer "
    "(`Cache-Control: no-store`).")

ERRORS = {401: ErrorOut, 429: ErrorOut}
# A POST's body refused: not what the document describes, too large, or not JSON.
BODY_ERRORS = {400: ErrorOut, 413: ErrorOut, 415: ErrorOut}


def _header(description: str, **schema) -> dict:
    return {"description": description, "required": True, "schema": {"type": "string", **schema}}


# What each answer means and the headers it carries, which ninja's `response=` cannot say.
NO_STORE = {"Cache-Control": _header("No cache may keep an answer.", const="no-store")}
ANSWERS = {
    200: ("OK", {}),
    400: ("The body is not what this document describes, or gives a key twice.", {}),
    401: ("No key, or not a live one.", {"WWW-Authenticate": _header(
        'Bearer realm="kanri" (the key may also be sent as X-Api-Key).')}),
    413: ("The body is larger than the upload limit.", {}),
    415: ("The body is not sent as JSON (`Content-Type: application/json`, UTF-8).", {}),
    429: ("Over the key's requests per minute.", {"Retry-After": _header(
        "Seconds until the minute turns.", pattern="^[0-9]+$")}),
}


def documented(answers: dict) -> dict:
    """An operation's `openapi_extra`: each of its answers' meaning and headers."""
    return {"responses": {status: {"description": ANSWERS[status][0],
                                   "headers": {**NO_STORE, **ANSWERS[status][1]}}
                          for status in answers}}
