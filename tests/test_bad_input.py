"""The bad input table: malformed requests to every form of the portal and to the CRM's API are
refused with a status and a sentence a person can read, and leave the database as it was.

Each row is one request (wrong types, huge numbers, unicode, overlong strings, missing fields,
another organisation's ids, malformed JSON, the wrong content type) and the answer it must get:
a 4xx, or the form again with its error. Every table the project keeps is read before and after
the request and compared row by row. The world (three organisations, a card at the sandbox, API
keys, quotes) is built once for the module inside a transaction that is rolled back at its end;
each row runs in its own savepoint on top of it.
"""
import datetime as dt
import html
import json
import re
from dataclasses import dataclass
from typing import Any

import pytest
from django.apps import apps
from django.db import connection, transaction
from django.test import Client

from accounts.models import Role
from api.models import ApiKey
from api.services import api_key_create, api_key_revoke
from billing.models import PaymentMethod, Quote, Status
from billing.pricing import Change
from billing.services.quotes import quote_create
from store import clock
from store.models import Plan
from tests.accounts.factories import PASSWORD, AdminFactory, UserFactory
from tests.api.conftest import key_for
from tests.billing.factories import paid_quote_applied, subscription_in
from tests.billing.helpers import card_on_file
from tests.store.factories import ensure_shipped_catalog

LONG = "x" * 10_000
HUGE = 10**30
NOT_FOUND = "There is no such page, or it belongs to another organisation."
NOT_JSON = "The request body is not valid JSON."
FORM_ONLY = "This address only takes a submitted form"

# --- The database, as a value ----------------------------------------------------------------

# Tables a refused request may still write, by design, and why they are left out:
VOLATILE_TABLES = {
    # The client's own session: logging in and flash messages live there, not the ledger.
    "sessions.session",
    # django-axes' login throttle: a wrong password is counted (and an expired counter pruned)
    # precisely so that guessing is slowed down; the login rows below assert the refusal.
    "axes.accessattempt", "axes.accessattemptexpiration", "axes.accessfailurelog",
    "axes.accesslog",
}
# Columns written on every authenticated API request, refused or not: the key's last use (at
# most once a minute, api.services.api_key_mark_used) is a fact about the request, not a change
# it asked for.
VOLATILE_COLUMNS = {"api.apikey": {"last_used_at"}}


def _snapshot_sql() -> str:
    """One query for the whole database (a query per table would cost each row of the table 80
    queries): per table, its rows as JSON text, sorted, joined into one value."""
    parts = []
    for model in apps.get_models(include_auto_created=True):
        label = model._meta.label_lower
        if not model._meta.managed or model._meta.proxy or label in VOLATILE_TABLES:
            continue
        row = "to_jsonb(t)" + "".join(f" - '{model._meta.get_field(name).column}'"
                                      for name in VOLATILE_COLUMNS.get(label, ()))
        table = connection.ops.quote_name(model._meta.db_table)
        parts.append(f"SELECT '{label}', (SELECT coalesce(string_agg(r, E'\\n' ORDER BY r), '')"
                     f" FROM (SELECT ({row})::text AS r FROM {table} t) lines)")
    return "\nUNION ALL ".join(parts)


def snapshot() -> dict[str, str]:
    """Every row of every table the project keeps, by table (sorted JSON lines)."""
    with connection.cursor() as cursor:
        cursor.execute(_snapshot_sql())
        return dict(cursor.fetchall())


def changed_tables(before: dict, after: dict) -> set[str]:
    return {label for label in before if before[label] != after[label]}


# --- The world the rows run in ---------------------------------------------------------------

@dataclass
class World:
    ids: dict  # what a row's URL or body may name: {"quote_theirs": ..., ...}
    admin: Any  # ours: Standard, monthly, 3 regular licences, a card, a member, API keys
    locked_admin: Any  # an organisation locked after its grace period
    api_keys: dict[str, str]  # the full text of ours, live and revoked


def _build_world() -> World:
    ensure_shipped_catalog()
    standard = Plan.objects.get(code="standard")
    admin = AdminFactory(organisation__language="en")
    organisation = admin.organisation
    paid_quote_applied(admin=admin, regular=3)
    member = UserFactory(organisation=organisation, role=Role.MEMBER)
    card = card_on_file(organisation=organisation, acting_user=admin)  # through the sandbox
    expired = quote_create(organisation=organisation, acting_user=admin,
                           change=Change(standard, "monthly", 4, 0, 0))
    Quote.objects.filter(pk=expired.pk).update(expires_at=clock.now() - dt.timedelta(hours=1))
    api_key = key_for(admin)
    live = ApiKey.objects.get(prefix=api_key.split("_")[1])
    revoked, revoked_key = api_key_create(organisation=organisation, name="old CRM",
                                          acting_user=admin)
    api_key_revoke(key=revoked, acting_user=admin)

    theirs = AdminFactory()  # another organisation, on Free: its rows are never ours to touch
    their_quote = quote_create(organisation=theirs.organisation, acting_user=theirs,
                               change=Change(standard, "monthly", 2, 0, 0))
    their_card = PaymentMethod.objects.create(
        organisation=theirs.organisation, processor_id=f"pm_theirs_{theirs.organisation.pk}",
        brand="visa", last4="1111", exp_month=1, exp_year=2031)
    their_key, _secret = api_key_create(organisation=theirs.organisation, name="CRM",
                                        acting_user=theirs)
    their_member = UserFactory(organisation=theirs.organisation)

    locked_admin = AdminFactory(organisation__language="en")
    subscription_in(Status.LOCKED, admin=locked_admin)
    return World(
        ids={"admin": admin.pk, "member": member.pk, "member_email": member.email,
             "card": card.pk, "quote_expired": expired.pk, "key_live": live.pk,
             "key_revoked": revoked.pk,
             "subscription": organisation.subscription.pk,
             "quote_theirs": their_quote.pk, "card_theirs": their_card.pk,
             "key_theirs": their_key.pk, "user_theirs": their_member.pk,
             "org_theirs": theirs.organisation.pk},
        admin=admin, locked_admin=locked_admin,
        api_keys={"live": api_key, "revoked": revoked_key})


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, payment_sandbox):
    """Built once; every test's own transaction is a savepoint inside this one, which is rolled
    back when the module is done."""
    with django_db_blocker.unblock(), transaction.atomic():
        yield _build_world()
        transaction.set_rollback(True)


@pytest.fixture(scope="module")
def clients(world, django_db_blocker) -> dict[str, Client]:
    """One client per kind of visitor, logged in once (a login writes; and a new client pays
    for its own middleware, static file index included, on its first request)."""
    with django_db_blocker.unblock():
        clients = {who: Client(HTTP_ACCEPT_LANGUAGE="en") for who in ("admin", "locked", "anon",
                                                                       "crm")}
        clients["admin"].force_login(world.admin)
        clients["locked"].force_login(world.locked_admin)
    return clients


# --- The table -------------------------------------------------------------------------------

@dataclass
class Bad:
    """One malformed request and its answer. `url` and a callable `data` may name the world's
    ids ({quote_theirs}, ...); `says` is the sentence the person (or the CRM) reads."""

    name: str
    who: str  # admin | locked | anon | crm
    method: str
    url: str
    data: Any = None
    status: int = 400
    says: str = ""
    content_type: str | None = None
    follow: bool = False  # a refusal that redirects to a page showing it as a message
    key: str = "live"  # the CRM's key: live or revoked


def configure(**changes) -> dict:
    form = {"cycle": "monthly", "regular_licences": "4", "team_licences": "0",
            "storage_units": "0"}
    form.update(changes)
    return {key: value for key, value in form.items() if value is not None}


def usage(**changes) -> dict:
    body = {"records": 5, "storage_mb": 1, "reported_at": "2026-01-05T10:00:00+09:00"}
    body.update(changes)
    return {key: value for key, value in body.items() if value is not ...}


def person(**changes) -> dict:
    form = {"email": "new.person@example.test", "name": "New Person", "role": "member",
            "licence_type": "regular"}
    form.update(changes)
    return {key: value for key, value in form.items() if value is not None}


def sign_up(**changes) -> dict:
    form = {"org_name": "New Org K.K.", "email": "founder@example.test",
            "password": "a-long-enough-passphrase-42", "currency": "JPY"}
    form.update(changes)
    return {key: value for key, value in form.items() if value is not None}


PLAN = "/manage/plans/standard/"
ADD, REMOVE = "/manage/licences/add/", "/manage/licences/remove/"
USERS_ADD = "/manage/users/add/"
HISTORY, ACTIVITY = "/manage/payments/", "/manage/activity/"
KEYS = "/manage/api-keys/"
WHOLE = "Enter a whole number."
CHOICE = "Select a valid choice."
DATE = "Enter a valid date."
REQUIRED = "This field is required."

TABLE = [
    # 購入プラン: configure, review, pay ------------------------------------------------------
    Bad("configure: licences as words", "admin", "post", PLAN,
        configure(regular_licences="three"), says=WHOLE),
    Bad("configure: 10**30 licences", "admin", "post", PLAN,
        configure(regular_licences=str(HUGE)),
        says="Ensure this value is less than or equal to 10000."),
    Bad("configure: 10,000 digits", "admin", "post", PLAN,
        configure(regular_licences="9" * 10_000), says=WHOLE),
    Bad("configure: a fraction", "admin", "post", PLAN, configure(team_licences="1.5"),
        says=WHOLE),
    Bad("configure: an emoji", "admin", "post", PLAN, configure(storage_units="🙂"), says=WHOLE),
    Bad("configure: zero regular licences", "admin", "post", PLAN,
        configure(regular_licences="0"), says="Ensure this value is greater than or equal to 1."),
    Bad("configure: negative storage", "admin", "post", PLAN, configure(storage_units="-1"),
        says="Ensure this value is greater than or equal to 0."),
    Bad("configure: an unknown cycle", "admin", "post", PLAN, configure(cycle="weekly"),
        says="Select a valid choice. weekly is not one of the available choices."),
    Bad("configure: no regular licences field", "admin", "post", PLAN,
        configure(regular_licences=None), says=REQUIRED),
    Bad("configure: an empty form", "admin", "post", PLAN, {}, says=REQUIRED),
    Bad("configure: JSON instead of a form", "admin", "post", PLAN,
        json.dumps(configure()), content_type="application/json", says=REQUIRED),
    Bad("configure: what it has now", "admin", "post", PLAN, configure(regular_licences="3"),
        says="This is what you have now: change the plan, cycle or quantities."),
    Bad("configure: fewer licences than active users", "admin", "post", PLAN,
        configure(regular_licences="1"), says="You have 2 active regular users: deactivate 1 "
                                              "user before reducing the licences to 1."),
    Bad("configure: an unknown plan", "admin", "post", "/manage/plans/platinum/", configure(),
        status=404, says=NOT_FOUND),
    Bad("review: another organisation's quote", "admin", "get",
        "/manage/quotes/{quote_theirs}/", status=404, says=NOT_FOUND),
    Bad("pay: another organisation's quote", "admin", "post",
        "/manage/quotes/{quote_theirs}/pay/", status=404, says=NOT_FOUND),
    Bad("review: not a quote id", "admin", "get", "/manage/quotes/🙂/", status=404,
        says=NOT_FOUND),
    Bad("pay: a quote that never existed", "admin", "post",
        "/manage/quotes/00000000-0000-4000-8000-000000000000/pay/", status=404, says=NOT_FOUND),
    Bad("pay: an expired quote", "admin", "post", "/manage/quotes/{quote_expired}/pay/",
        status=409, says="Review the change again: nothing was charged."),
    Bad("pay: by GET", "admin", "get", "/manage/quotes/{quote_expired}/pay/", status=405,
        says=FORM_ONLY),

    # ユーザー/アドオン: licences add and remove --------------------------------------------
    Bad("licences add: nothing to add", "admin", "post", ADD,
        {"regular": "0", "team": "0", "storage": "0"},
        says="Enter how many to change: at least one number above zero."),
    Bad("licences add: an empty form", "admin", "post", ADD, {},
        says="Enter how many to change: at least one number above zero."),
    Bad("licences add: negative", "admin", "post", ADD, {"regular": "-5"},
        says="Ensure this value is greater than or equal to 0."),
    Bad("licences add: 10**30", "admin", "post", ADD, {"team": str(HUGE)},
        says="Ensure this value is less than or equal to 10000."),
    Bad("licences add: text", "admin", "post", ADD, {"storage": "lots"}, says=WHOLE),
    Bad("licences add: past the most a plan sells", "admin", "post", ADD, {"regular": "9999"},
        says="Regular user licences must be between 1 and 10000."),
    Bad("licences remove: more than held", "admin", "post", REMOVE, {"regular": "3"},
        says="You can remove at most 2 regular user licences: you have 3."),
    Bad("licences remove: a type it has none of", "admin", "post", REMOVE, {"team": "1"},
        says="You can remove at most 0 team user licences: you have 0."),
    Bad("licences remove: below the active users", "admin", "post", REMOVE, {"regular": "2"},
        says="You have 2 active regular users: deactivate 1 user before reducing the licences "
             "to 1."),

    # 決済方法: payment methods -------------------------------------------------------------
    Bad("card add: no card", "admin", "post", "/manage/cards/", {},
        says="No card was confirmed."),
    Bad("card add: a token, not a payment method", "admin", "post", "/manage/cards/",
        {"payment_method": "tok_visa"}, says="No card was confirmed."),
    Bad("card add: a card the processor never made", "admin", "post", "/manage/cards/",
        {"payment_method": "pm_doesnotexist"},
        says="The payment service does not know this card. Enter it again."),
    Bad("card add: a 10,000-character card id", "admin", "post", "/manage/cards/",
        {"payment_method": "pm_" + LONG},
        says="The payment service does not know this card. Enter it again."),
    Bad("card replace: another organisation's card", "admin", "post", "/manage/cards/",
        lambda ids: {"payment_method": "pm_doesnotexist", "replaces": ids["card_theirs"]},
        status=404, says=NOT_FOUND),
    Bad("card replace: a superscript digit", "admin", "post", "/manage/cards/",
        {"payment_method": "pm_doesnotexist", "replaces": "²"}, status=404, says=NOT_FOUND),
    Bad("card replace: 10**30", "admin", "post", "/manage/cards/",
        {"payment_method": "pm_doesnotexist", "replaces": str(HUGE)}, status=404,
        says=NOT_FOUND),
    Bad("card default: another organisation's card", "admin", "post",
        "/manage/payment-methods/{card_theirs}/default/", status=404, says=NOT_FOUND),
    Bad("card default: an id past bigint", "admin", "post",
        f"/manage/payment-methods/{HUGE}/default/", status=404, says=NOT_FOUND),
    Bad("card default: by GET", "admin", "get", "/manage/payment-methods/{card}/default/",
        status=405, says=FORM_ONLY),
    Bad("card change: another organisation's card", "admin", "get",
        "/manage/payment-methods/{card_theirs}/change/", status=404, says=NOT_FOUND),
    Bad("card delete: another organisation's card", "admin", "post",
        "/manage/payment-methods/{card_theirs}/delete/", status=404, says=NOT_FOUND),
    Bad("card delete: the only card, confirmed with a word", "admin", "post",
        "/manage/payment-methods/{card}/delete/", {"confirmed": "yes 🙂"}, status=200,
        says="This is your only card and your Standard plan renews automatically"),

    # 決済の履歴 and activity: filters in the query string --------------------------------------
    Bad("payment history: the 45th of the 13th month", "admin", "get", HISTORY,
        {"start": "2026-13-45"}, says=DATE),
    Bad("payment history: an unknown status", "admin", "get", HISTORY, {"status": "stolen"},
        says="Select a valid choice. stolen is not one of the available choices."),
    Bad("payment history: start after end", "admin", "get", HISTORY,
        {"start": "2026-02-01", "end": "2026-01-01"},
        says="The start date is after the end date."),
    Bad("payment history: emoji as a date", "admin", "get", HISTORY, {"end": "🙂" * 20},
        says=DATE),
    Bad("payment history: a 10,000-character status", "admin", "get", HISTORY,
        {"status": LONG}, says=CHOICE),
    Bad("payment history CSV: a bad date", "admin", "get", "/manage/payments/export.csv",
        {"start": "yesterday"}, says=DATE),
    Bad("payment detail: an id past bigint", "admin", "get", f"/manage/payments/{HUGE}/",
        status=404, says=NOT_FOUND),
    Bad("invoice: a number in emoji", "admin", "get", "/manage/invoices/INV-🙂/", status=404,
        says=NOT_FOUND),
    Bad("invoice PDF: a 10,000-character number", "admin", "get",
        f"/manage/invoices/{LONG}/pdf/", status=404, says=NOT_FOUND),
    Bad("activity: an unknown kind", "admin", "get", ACTIVITY, {"kind": "passwords"},
        says="Select a valid choice. passwords is not one of the available choices."),
    Bad("activity: a date in words", "admin", "get", ACTIVITY, {"start": "last tuesday"},
        says=DATE),
    Bad("activity: start after end", "admin", "get", ACTIVITY,
        {"start": "2026-12-31", "end": "2026-01-01"},
        says="The start date is after the end date."),

    # ユーザー: users add, change licence type, deactivate ----------------------------------------
    Bad("user add: not an email", "admin", "post", USERS_ADD, person(email="not-an-email"),
        says="Enter a valid email address."),
    Bad("user add: a 10,000-character email", "admin", "post", USERS_ADD,
        person(email=LONG + "@example.test"), says="Ensure this value has at most 254 "
                                                    "characters"),
    Bad("user add: a Japanese local part", "admin", "post", USERS_ADD,
        person(email="ユーザー@example.test"), says="Enter a valid email address."),
    Bad("user add: an email taken, in capitals", "admin", "post", USERS_ADD,
        lambda ids: person(email=ids["member_email"].upper()),
        says="An account with this email address already exists."),
    Bad("user add: no email", "admin", "post", USERS_ADD, person(email=None), says=REQUIRED),
    Bad("user add: an empty form", "admin", "post", USERS_ADD, {}, says=REQUIRED),
    Bad("user add: an unknown role", "admin", "post", USERS_ADD, person(role="owner"),
        says="Select a valid choice. owner is not one of the available choices."),
    Bad("user add: an unknown licence type", "admin", "post", USERS_ADD,
        person(licence_type="gold"),
        says="Select a valid choice. gold is not one of the available choices."),
    Bad("user add: a 10,000-character name", "admin", "post", USERS_ADD, person(name=LONG),
        says="Ensure this value has at most 150 characters (it has 10000)."),
    Bad("user add: a NUL in the name", "admin", "post", USERS_ADD, person(name="Ann\x00Lee"),
        says="Null characters are not allowed."),
    Bad("user add: a team user with no team licence", "admin", "post", USERS_ADD,
        person(licence_type="team"),
        says="All 0 team licences are in use. Add 1 team licence to add this user."),
    Bad("licence type: an unknown type", "admin", "post",
        "/manage/users/{member}/licence-type/", {"licence_type": "gold 🙂"},
        says="Choose a licence type."),
    Bad("licence type: none sent", "admin", "post", "/manage/users/{member}/licence-type/",
        {}, says="Choose a licence type."),
    Bad("licence type: the one it has", "admin", "post",
        "/manage/users/{member}/licence-type/", {"licence_type": "regular"},
        says="already has a Regular user licence."),
    Bad("licence type: no free team licence", "admin", "post",
        "/manage/users/{member}/licence-type/", {"licence_type": "team"},
        says="All 0 team licences are in use. Add 1 team licence"),
    Bad("licence type: another organisation's user", "admin", "post",
        "/manage/users/{user_theirs}/licence-type/", {"licence_type": "team"}, status=404,
        says=NOT_FOUND),
    Bad("deactivate: oneself", "admin", "post", "/manage/users/{admin}/deactivate/",
        says="You cannot deactivate yourself."),
    Bad("deactivate: another organisation's user", "admin", "post",
        "/manage/users/{user_theirs}/deactivate/", status=404, says=NOT_FOUND),
    Bad("deactivate: an id past bigint", "admin", "post", f"/manage/users/{HUGE}/deactivate/",
        status=404, says=NOT_FOUND),
    Bad("reactivate: someone active", "admin", "post", "/manage/users/{member}/reactivate/",
        says="is already active."),

    # API keys screen ---------------------------------------------------------------------------
    Bad("api key: no name", "admin", "post", KEYS, {"name": ""}, says=REQUIRED),
    Bad("api key: an empty form", "admin", "post", KEYS, {}, says=REQUIRED),
    Bad("api key: spaces for a name", "admin", "post", KEYS, {"name": "   "}, says=REQUIRED),
    Bad("api key: a 10,000-character name", "admin", "post", KEYS, {"name": LONG},
        says="Ensure this value has at most 100 characters (it has 10000)."),
    Bad("api key: JSON instead of a form", "admin", "post", KEYS, '{"name": "CRM"}',
        content_type="application/json", says=REQUIRED),
    Bad("api key: a NUL in the name", "admin", "post", KEYS, {"name": "CRM\x00"},
        says="Null characters are not allowed."),
    Bad("api key: revoke another organisation's", "admin", "post",
        "/manage/api-keys/{key_theirs}/revoke/", status=404, says=NOT_FOUND),
    Bad("api key: revoke one already revoked", "admin", "post",
        "/manage/api-keys/{key_revoked}/revoke/", status=200, follow=True,
        says="The key “old CRM” was already revoked."),

    # Trial, delete account, lock screen ---------------------------------------------------------
    Bad("trial: an unknown plan", "admin", "post", "/manage/trial/", {"plan": "platinum🙂"},
        status=404, says=NOT_FOUND),
    Bad("trial: while on a paid plan", "admin", "post", "/manage/trial/",
        {"plan": "professional"},
        status=200, follow=True, says="Trials start from the Free plan."),
    Bad("delete account: the wrong name", "admin", "post", "/manage/delete/",
        {"organisation_name": "Some Other K.K."}, says="That is not your organisation's name."),
    Bad("delete account: a 10,000-character name", "admin", "post", "/manage/delete/",
        {"organisation_name": LONG}, says="Ensure this value has at most 200 characters"),
    Bad("delete account: an empty form", "admin", "post", "/manage/delete/", {},
        says=REQUIRED),
    Bad("renew: nothing unpaid", "admin", "post", "/manage/renew/", status=409,
        says="There is no unpaid invoice to pay."),
    Bad("lock screen renew: nothing unpaid", "locked", "post", "/manage/renew/", status=409,
        says="There is no unpaid invoice to pay."),
    Bad("lock screen: buying licences instead", "locked", "post", ADD, {"regular": "1"},
        status=200, follow=True, says="Your account is locked"),
    Bad("lock screen: another plan with 10**30 licences", "locked", "post", PLAN,
        configure(regular_licences=str(HUGE)),
        says="Ensure this value is less than or equal to 10000."),

    # Sign-up, login, password reset (no one logged in) ----------------------------------------
    Bad("sign-up: not an email", "anon", "post", "/signup/", sign_up(email="founder@"),
        says="Enter a valid email address."),
    Bad("sign-up: a short password", "anon", "post", "/signup/", sign_up(password="abc"),
        says="This password is too short."),
    Bad("sign-up: an unknown currency", "anon", "post", "/signup/", sign_up(currency="XYZ"),
        says="Select a valid choice. XYZ is not one of the available choices."),
    Bad("sign-up: a 10,000-character organisation", "anon", "post", "/signup/",
        sign_up(org_name=LONG), says="Ensure this value has at most 200 characters"),
    Bad("sign-up: spaces for an organisation", "anon", "post", "/signup/",
        sign_up(org_name="  "), says=REQUIRED),
    Bad("sign-up: an email taken", "anon", "post", "/signup/",
        lambda ids: sign_up(email=ids["member_email"]),
        says="An account with this email address already exists."),
    Bad("sign-up: an empty form", "anon", "post", "/signup/", {}, says=REQUIRED),
    Bad("login: not an email", "anon", "post", "/login/",
        {"username": "admin", "password": "x"}, status=200,
        says="Enter a valid email address."),
    Bad("login: the wrong password", "anon", "post", "/login/",
        lambda ids: {"username": ids["member_email"], "password": "wrong-🙂"}, status=200,
        says="The email address or password is wrong."),
    Bad("login: an empty form", "anon", "post", "/login/", {}, status=200, says=REQUIRED),
    Bad("password reset: not an email", "anon", "post", "/password-reset/",
        {"email": "🙂@"}, status=200, says="Enter a valid email address."),

    # The support screens (Django admin), as an organisation's admin ---------------------------
    Bad("staff login with an organisation admin's password", "anon", "post", "/admin/login/",
        lambda ids: {"username": ids["admin_email"], "password": PASSWORD,
                     "otp_token": "123456"}, status=200,
        says="Please enter the correct email address and password for a staff account."),
    Bad("support action: grant credit", "admin", "post",
        "/admin/billing/subscription/{subscription}/support/grant-credit/",
        {"amount": str(HUGE), "reason": "🙂"}, status=200, follow=True,
        says="Support staff log in with their password and the code"),

    # The CRM's API (/api/v1/) -----------------------------------------------------------------
    Bad("api: JSON cut short", "crm", "post", "/api/v1/usage", '{"records": 5,', says=NOT_JSON),
    Bad("api: a form instead of JSON", "crm", "post", "/api/v1/usage",
        "records=5&storage_mb=1", content_type="application/x-www-form-urlencoded",
        status=415, says="The request body must be JSON in UTF-8"),
    Bad("api: bytes that are not UTF-8", "crm", "post", "/api/v1/authorize", b"\xff\xfe{}",
        says=NOT_JSON),
    Bad("api: nested 100,000 deep", "crm", "post", "/api/v1/authorize",
        "[" * 100_000 + "]" * 100_000, says=NOT_JSON),
    Bad("api: an array for the object", "crm", "post", "/api/v1/usage", [usage()],
        says="The request body must be a JSON object."),
    Bad("api: records as a string", "crm", "post", "/api/v1/usage", usage(records="5"),
        says="records must be a whole number, written without quotes."),
    Bad("api: records null", "crm", "post", "/api/v1/usage", usage(records=None),
        says="records must be a whole number"),
    Bad("api: records in an array", "crm", "post", "/api/v1/usage", usage(records=[5]),
        says="records must be a whole number"),
    Bad("api: storage as an object", "crm", "post", "/api/v1/usage",
        usage(storage_mb={"mb": 1}), says="storage_mb must be a whole number"),
    Bad("api: 10**30 records", "crm", "post", "/api/v1/usage", usage(records=HUGE),
        says="records must be a whole number from 0 to 1,000,000,000,000."),
    Bad("api: 1e30 as a float", "crm", "post", "/api/v1/authorize",
        '{"action": "create", "resource": "records", "amount": 1e30}',
        says="amount must be a whole number from 0 to 1,000,000,000,000."),
    Bad("api: negative storage", "crm", "post", "/api/v1/usage", usage(storage_mb=-1),
        says="storage_mb must be a whole number from 0 to 1,000,000,000,000."),
    Bad("api: no reported_at", "crm", "post", "/api/v1/usage", usage(reported_at=...),
        says="reported_at is required."),
    Bad("api: a date in kanji", "crm", "post", "/api/v1/usage",
        usage(reported_at="２０２６年１月５日"), says="reported_at must be a date and time"),
    Bad("api: an emoji action", "crm", "post", "/api/v1/authorize",
        {"action": "create🙂", "resource": "records"},
        says="action must be one of: create, update, upload."),
    Bad("api: a 10,000-character resource", "crm", "post", "/api/v1/authorize",
        {"action": "create", "resource": LONG}, says="resource must be one of: records, "
                                                     "storage."),
    Bad("api: resource null", "crm", "post", "/api/v1/authorize",
        {"action": "create", "resource": None}, says="resource must be one of"),
    Bad("api: another organisation's id", "crm", "post", "/api/v1/usage",
        lambda ids: usage(organisation=ids["org_theirs"]),
        says="organisation is not a field of this request."),
    Bad("api: a revoked key", "crm", "post", "/api/v1/usage", usage(), status=401,
        key="revoked", says="Unknown or revoked API key"),
]


def _request(world: World, row: Bad, client: Client):
    ids = {**world.ids, "admin_email": world.admin.email}
    url = row.url.format(**ids)
    data = row.data(ids) if callable(row.data) else row.data
    if row.who == "crm":
        key = world.api_keys[row.key]
        body = data if isinstance(data, (str, bytes)) else json.dumps(data)
        return client.generic(row.method.upper(), url, body,
                              content_type=row.content_type or "application/json",
                              headers={"Authorization": f"Bearer {key}"})
    if row.content_type:
        return client.generic(row.method.upper(), url, data, content_type=row.content_type)
    send = getattr(client, row.method)
    return send(url, data or {}, follow=row.follow)


def said(response) -> str:
    """What the person (or the CRM) reads in the answer: a JSON body's values, or a page's
    main text without its tags (so a value echoed back into a field does not count)."""
    if response["Content-Type"].startswith("application/json"):
        return json.dumps(response.json(), ensure_ascii=False)
    page = response.content.decode()
    main = re.search(r"<main[^>]*>(.*)</main>", page, re.DOTALL) or re.search(
        r"<body[^>]*>(.*)</body>", page, re.DOTALL)
    text = re.sub(r"<[^>]+>", " ", main.group(1) if main else page)
    return " ".join(html.unescape(text).split())


@pytest.mark.postgres
@pytest.mark.parametrize("row", TABLE, ids=[row.name for row in TABLE])
def test_a_malformed_request_is_refused_with_a_message_and_changes_nothing(world, clients, db,
                                                                          row):
    client = clients[row.who]
    client.cookies.pop("messages", None)  # no earlier row's flash message on this page
    before = snapshot()

    response = _request(world, row, client)

    assert response.status_code == row.status, said(response)[:1000]
    if row.status == 405:  # a form's address opened as a page: the header says it too
        assert response["Allow"] == "POST"
    assert row.says in said(response), said(response)[:1000]
    after = snapshot()
    assert not changed_tables(before, after), changed_tables(before, after)


def test_the_table_has_every_kind_of_visitor_and_a_message_for_each_row():
    assert len(TABLE) >= 45
    assert {row.who for row in TABLE} == {"admin", "locked", "anon", "crm"}
    assert len({row.name for row in TABLE}) == len(TABLE)
    assert all(row.says for row in TABLE)


@pytest.mark.postgres
def test_the_snapshot_sees_a_valid_request_change_the_database(world, clients, db):
    """The comparison is not vacuous: a good plan change writes its quote, a good usage report
    is seen past the API key's left-out column, and revoking a key changes a column of a row
    that was there."""
    client = clients["admin"]
    before = snapshot()
    assert client.post(PLAN, configure(regular_licences="4")).status_code == 302
    assert changed_tables(before, snapshot()) == {"billing.quote", "billing.quoteline"}

    before = snapshot()
    response = clients["crm"].post("/api/v1/usage", usage(), content_type="application/json",
                                   headers={"Authorization": f"Bearer {world.api_keys['live']}"})
    assert response.status_code == 200, response.content
    assert changed_tables(before, snapshot()) == {"api.usagereport", "accounts.organisation"}

    before = snapshot()
    response = client.post(f"/manage/api-keys/{world.ids['key_live']}/revoke/")
    assert response.status_code == 302
    assert changed_tables(before, snapshot()) == {"api.apikey", "accounts.auditevent"}
