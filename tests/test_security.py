"""The security suite: one organisation never reaches another's rows through any URL, members and
strangers are kept off the store, every form needs its CSRF token, login throttling holds under
a burst of parallel guesses, and no card number or CVC is ever stored, logged or asked for."""
import json
import logging
import re
import threading
from pathlib import Path

import pytest
from django.apps import apps
from django.conf import settings
from django.db import connection, models
from django.template.loaders.app_directories import get_app_template_dirs
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from djmoney.money import Money

from accounts.models import Role
from api.services import api_key_create
from billing.models import CreditNote, Invoice, Payment, PaymentMethod
from billing.pricing import Change
from billing.services.cards import card_add
from billing.services.payments import quote_pay
from billing.services.quotes import quote_create
from store import clock
from store.models import Plan
from tests.accounts.factories import PASSWORD, AdminFactory, UserFactory
from tests.billing.factories import paid_quote_applied
from tests.billing.helpers import GOOD_CARD, processor_card
from tests.store.test_settings import PRODUCTION
from tests.store.test_settings import _manage as manage_in_production

# Not walked: the admin site (staff only, its own second factor), the language switch, the API
# (its key decides the organisation, no id is ever taken from the path) and the webhook (signed by
# the processor, no session).
NOT_WALKED = ("admin/", "i18n/", "api/v1/", "billing/webhooks/stripe/", "static/", "media/")

# How to reach another organisation's object for each URL that takes an id: the kind of object
# (made by `_objects_of` below) each path parameter names. A new URL with a parameter and no entry
# here fails test_every_id_in_a_url_is_another_organisations_404.
FOREIGN = {
    "billing:review": {"quote_id": "quote"},
    "billing:pay": {"quote_id": "quote"},
    "billing:card_default": {"method_id": "card"},
    "billing:card_replace": {"method_id": "card"},
    "billing:card_delete": {"method_id": "card"},
    "billing:payment_detail": {"payment_id": "payment"},
    "billing:invoice": {"number": "invoice"},
    "billing:invoice_pdf": {"number": "invoice"},
    "billing:credit_note_pdf": {"number": "credit_note"},
    "accounts:user_deactivate": {"user_id": "user"},
    "accounts:user_reactivate": {"user_id": "user"},
    "accounts:user_licence_type": {"user_id": "user"},
    "api_keys:revoke": {"key_id": "api_key"},
}
# Parameters that name no organisation's row, and why.
SHARED = {
    "billing:configure": {"code": "plan"},  # the catalog is the same for every organisation
    "accounts:password_reset_confirm": {"uidb64": "reset", "token": "reset"},  # signed token
}


def _walk(resolver: URLResolver | None = None, prefix: str = "", namespace: str = ""):
    """(route, name, parameter names) for every pattern of the project, through includes."""
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            inner = namespace
            if entry.namespace:
                inner = f"{namespace}{entry.namespace}:"
            yield from _walk(entry, route, inner)
        elif isinstance(entry, URLPattern):
            name = f"{namespace}{entry.name}" if entry.name else None
            params = re.findall(r"<(?:\w+:)?(\w+)>|\(\?P<(\w+)>", route)
            yield route, name, [converted or grouped for converted, grouped in params]


def walked_patterns():
    return [pattern for pattern in _walk() if not pattern[0].startswith(NOT_WALKED)]


def _objects_of(admin) -> dict:
    """One of each kind of row an id in a URL can name, owned by `admin`'s organisation, by kind:
    the value the URL carries for it."""
    organisation = admin.organisation
    paid_quote_applied(admin=admin)
    invoice = Invoice.objects.get(organisation=organisation)
    quote = quote_create(organisation=organisation, acting_user=admin,
                         change=Change(Plan.objects.get(code="standard"), "monthly", 4, 0, 0))
    card = PaymentMethod.objects.create(organisation=organisation,
                                        processor_id=f"pm_{organisation.pk}", brand="visa",
                                        last4="4242", exp_month=12, exp_year=2030)
    payment = Payment.objects.create(
        organisation=organisation, invoice=invoice, quote=invoice.quote,
        idempotency_key=f"security:{organisation.pk}", processor_id=f"pi_{organisation.pk}",
        amount=invoice.total, state=Payment.State.SUCCEEDED, card_processor_id=card.processor_id,
        card_brand="visa", card_last4="4242", settled_at=clock.now())
    note = CreditNote.objects.create(
        number=f"CN-SEC-{organisation.pk}", organisation=organisation, invoice=invoice,
        payment=payment, kind=CreditNote.Kind.REFUND, currency=invoice.currency,
        subtotal=Money(100, invoice.currency), tax=Money(10, invoice.currency),
        total=Money(110, invoice.currency), seller_name="Kanri K.K.",
        buyer_name=organisation.name)
    key, _secret = api_key_create(organisation=organisation, name="CRM", acting_user=admin)
    return {"quote": quote.pk, "card": card.pk, "payment": payment.pk, "invoice": invoice.number,
            "credit_note": note.number, "user": UserFactory(organisation=organisation).pk,
            "api_key": key.pk, "plan": "standard", "reset": "x"}


def _url(name: str, params: list[str], objects: dict) -> str:
    kinds = FOREIGN.get(name) or SHARED.get(name) or {}
    return reverse(name, kwargs={param: objects[kinds[param]] for param in params})


@pytest.fixture
def admin(catalog):
    return AdminFactory()


@pytest.fixture
def admin_client(admin):
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(admin)
    return client


def test_the_walk_sees_the_store_and_skips_what_it_should():
    names = {name for _route, name, _params in walked_patterns()}
    assert {"billing:pay", "accounts:user_deactivate", "api_keys:revoke"} <= names
    assert "stripe_webhook" not in names and not any(n and n.startswith("admin:") for n in names)


def test_every_id_in_a_url_is_another_organisations_404(admin, admin_client):
    other = _objects_of(AdminFactory())
    uncovered, leaks = [], []
    for route, name, params in walked_patterns():
        if not params:
            continue
        kinds = FOREIGN.get(name) or SHARED.get(name)
        if kinds is None or set(params) - set(kinds):
            uncovered.append(f"{name} ({route})")
            continue
        if name in SHARED:
            continue
        url = _url(name, params, other)
        answers = {method: getattr(admin_client, method)(url).status_code
                   for method in ("get", "post")}
        if 404 not in answers.values() or set(answers.values()) - {404, 405}:
            leaks.append(f"{name} {url}: {answers}")

    assert not uncovered, f"new pattern without isolation coverage: {uncovered}"
    assert not leaks, "another organisation's object answered:\n" + "\n".join(leaks)


def store_patterns():
    """Every administrator's screen: billing:, api_keys: and accounts' user pages, all of which
    live under manage/ (a new screen there is covered without being listed)."""
    patterns = [pattern for pattern in walked_patterns() if pattern[0].startswith("manage/")]
    names = {name for _route, name, _params in patterns}
    assert {"billing:details", "api_keys:list", "accounts:users", "accounts:activity"} <= names
    return patterns


def test_members_are_refused_every_store_url(admin):
    own = _objects_of(admin)
    member = Client(HTTP_ACCEPT_LANGUAGE="en")
    member.force_login(UserFactory(organisation=admin.organisation, role=Role.MEMBER))
    answered = []
    for _route, name, params in store_patterns():
        url = _url(name, params, own)
        for method in ("get", "post"):
            if (status := getattr(member, method)(url).status_code) != 403:
                answered.append(f"{method.upper()} {name} {url}: {status}")
    assert not answered, "\n".join(answered)


def test_anonymous_visitors_are_sent_to_log_in_from_every_store_url(admin):
    own = _objects_of(admin)
    login = reverse("accounts:login")
    answered = []
    for _route, name, params in store_patterns():
        url = _url(name, params, own)
        for method in ("get", "post"):
            response = getattr(Client(), method)(url)
            if response.status_code != 302 or not response["Location"].startswith(login):
                answered.append(f"{method.upper()} {name} {url}: {response.status_code}")
    assert not answered, "\n".join(answered)


CSRF_EXEMPT = ("billing/webhooks/stripe/", "api/v1/")  # signed by the processor; key, no cookie
SAMPLE = {"int": "1", "uuid": "00000000-0000-4000-8000-000000000000", "path": "1", "str": "x",
          "slug": "x"}


def _sample_url(route: str) -> str | None:
    """A path that resolves to `route`, any value in each parameter (the CSRF check runs before
    the view looks at it); None for a regular-expression route."""
    if "(?P<" in route or "^" in route or "\\" in route:
        return None
    return "/" + re.sub(r"<(?:(\w+):)?\w+>", lambda m: SAMPLE[m.group(1) or "str"], route)


def test_every_post_without_a_csrf_token_is_refused(admin):
    client = Client(enforce_csrf_checks=True, HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(admin)
    accepted, checked = [], 0
    for route, name, _params in _walk():
        if route.startswith(CSRF_EXEMPT) or (url := _sample_url(route)) is None:
            continue
        response = client.post(url, {"name": "x"})
        if response.status_code == 405:  # the view takes no POST
            continue
        checked += 1
        if response.status_code != 403 or b"CSRF" not in response.content:
            accepted.append(f"{name} {url}: {response.status_code}")
    assert checked > 20
    assert not accepted, "POST without a CSRF token accepted:\n" + "\n".join(accepted)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_login_throttling_holds_under_fifty_parallel_wrong_passwords(catalog):
    from axes.models import AccessAttempt

    user = UserFactory(email="target@example.test")
    login = reverse("accounts:login")
    start = threading.Barrier(50)
    statuses, errors = [], []

    def guess(n: int):
        try:
            client = Client(HTTP_ACCEPT_LANGUAGE="en")
            start.wait()
            statuses.append(client.post(login, {"username": user.email,
                                                "password": f"wrong-{n}"}).status_code)
        except Exception as error:  # noqa: BLE001 - reported below, a thread cannot raise
            errors.append(repr(error))
        finally:
            connection.close()

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors, errors
    assert set(statuses) <= {200, 429}, statuses
    right = Client(HTTP_ACCEPT_LANGUAGE="en")
    response = right.post(login, {"username": user.email, "password": PASSWORD})
    assert response.status_code == 429
    assert "_auth_user_id" not in right.session
    failures = sum(AccessAttempt.objects.filter(username=user.email)
                   .values_list("failures_since_start", flat=True))
    assert failures >= 5


# --- PCI scope: no card number or CVC, anywhere we keep or show anything ---------------------

CARD_FIELD = re.compile(r"(^|_)(pan|cvc\d?|cvv\d?|cvn|csc|security_code|card_?num(ber)?|"
                        r"cc_?num(ber)?|account_?number)($|_)", re.IGNORECASE)
DIGITS = re.compile(r"(?<!\d)\d{13,19}(?!\d)")


def luhn(number: str) -> bool:
    total = 0
    for position, digit in enumerate(int(d) for d in reversed(number)):
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def card_numbers_in(text: str) -> list[str]:
    return [found for found in DIGITS.findall(text) if luhn(found)]


def test_the_card_number_detector_finds_a_card_and_passes_other_numbers():
    assert card_numbers_in(f"pm for {GOOD_CARD}.") == [GOOD_CARD]
    assert card_numbers_in("4242424242424241 T1234567890123 20261126153001") == []


def test_no_model_field_is_named_for_a_card_number_or_cvc():
    suspicious = [f"{model._meta.label}.{field.name}" for model in apps.get_models()
                  for field in model._meta.get_fields()
                  if CARD_FIELD.search(field.name)
                  or (model is PaymentMethod and field.name == "number")]
    assert not suspicious
    kept = {field.name for field in PaymentMethod._meta.concrete_fields}
    assert kept <= {"id", "organisation", "processor_id", "brand", "last4", "exp_month",
                    "exp_year", "created_at", "updated_at"}, kept


def _templates() -> list[Path]:
    roots = [Path(d) for d in settings.TEMPLATES[0]["DIRS"]]
    roots += [Path(d) for d in get_app_template_dirs("templates")
              if str(settings.BASE_DIR) in str(d)]
    return [path for root in roots for path in root.rglob("*") if path.is_file()]


def test_no_template_asks_for_or_holds_a_card_number_or_cvc():
    field = re.compile(r"""\b(name|id)\s*=\s*["']?([\w-]+)""", re.IGNORECASE)
    found = []
    templates = _templates()
    for path in templates:
        text = path.read_text(errors="replace")
        found += [f"{path.name}: {m.group(0)}" for m in field.finditer(text)
                  if CARD_FIELD.search(m.group(2).replace("-", "_"))]
        found += [f"{path.name}: {number}" for number in card_numbers_in(text)]
    assert len(templates) > 10
    assert not found


def _text_values() -> list[tuple[str, str]]:
    """Every text, char and JSON value of every table, as (model.field, text)."""
    values = []
    for model in apps.get_models(include_auto_created=True):
        if not model._meta.managed or model._meta.proxy:
            continue
        for field in model._meta.concrete_fields:
            if not isinstance(field, (models.CharField, models.TextField, models.JSONField)):
                continue
            for value in model._base_manager.values_list(field.attname, flat=True):
                if value is not None:
                    text = value if isinstance(value, str) else json.dumps(value)
                    values.append((f"{model._meta.label}.{field.name}", text))
    return values


@pytest.mark.usefixtures("payment_sandbox")
def test_a_real_card_payment_leaves_no_card_number_in_the_database_or_the_logs(admin, caplog):
    method_id = processor_card()  # what Stripe.js does in the browser: the number stays there
    caplog.set_level(logging.DEBUG)
    for name in ("stripe", "axes", "billing", "accounts", "django", "celery"):
        caplog.set_level(logging.DEBUG, logger=name)
    card_add(organisation=admin.organisation, payment_method_id=method_id, acting_user=admin,
             make_default=True)
    quote = quote_create(organisation=admin.organisation, acting_user=admin,
                         change=Change(Plan.objects.get(code="standard"), "monthly", 3, 0, 0))
    result = quote_pay(organisation=admin.organisation, quote_id=quote.pk, acting_user=admin)
    assert result.invoice is not None, result.failure

    stored = _text_values()
    assert any(text == "4242" for _where, text in stored)  # the scan sees the card's row
    assert not [(where, number) for where, text in stored for number in card_numbers_in(text)]
    standard = set(vars(logging.makeLogRecord({})))  # a record's own attributes: times, paths
    logged = caplog.text + "\n".join(
        str({k: v for k, v in vars(record).items() if k not in standard})
        for record in caplog.records)  # what a JSON formatter would add: the `extra` fields
    assert caplog.records
    assert not card_numbers_in(logged)
    assert not re.search(r"\bcvc\b.{0,5}\d{3,4}", logged, re.IGNORECASE)


# --- Production settings --------------------------------------------------------------------

def test_production_settings_leave_check_deploy_nothing_to_warn_about():
    result = manage_in_production("check", "--deploy", "--fail-level", "DEBUG", env=PRODUCTION)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr


def test_pages_are_served_with_the_security_headers(admin_client):
    for url in (reverse("pricing"), reverse("billing:payment_methods")):
        response = admin_client.get(url)
        assert response.status_code == 200
        assert response["X-Frame-Options"] == "DENY"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Referrer-Policy"] == "same-origin"
