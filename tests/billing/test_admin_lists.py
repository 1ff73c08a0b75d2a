"""Support staff's list pages in Django admin: every billing list costs the same number of
queries with 1 row as with 200 (no query per row), and finds a case by the keys support is
given: organisation name, an admin's email, invoice number, payment id, processor customer id."""

import pytest
from django.contrib.admin import site as admin_site
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from djmoney.money import Money

from accounts.models import AuditEvent, Organisation, User
from api.models import ApiKey, UsageReport
from billing.models import (
    CreditEntry,
    CreditNote,
    Invoice,
    LicenceLedgerEntry,
    Notification,
    Payment,
    PaymentMethod,
    Quote,
    Status,
    Subscription,
    SubscriptionStatusChange,
    WebhookEvent,
)
from store import clock
from tests.accounts.factories import UserFactory
from tests.billing.factories import subscription_in
from tests.store.helpers import admin_login

ROWS = 200


@pytest.fixture
def superuser_client(client, db):
    return admin_login(client, UserFactory(organisation=None, is_staff=True, is_superuser=True))


@pytest.fixture
def world(db):
    """One organisation that bought Standard, and one row of everything support looks at."""
    subscription = subscription_in(Status.ACTIVE)
    subscription.processor_customer_id = "cus_world"
    subscription.save(update_fields=["processor_customer_id"])
    organisation = subscription.organisation
    invoice = Invoice.objects.get(organisation=organisation)
    method = PaymentMethod.objects.create(organisation=organisation, processor_id="pm_world",
                                          brand="visa", last4="4242", exp_month=12, exp_year=2030)
    payment = Payment.objects.create(
        organisation=organisation, invoice=invoice, quote=invoice.quote,
        idempotency_key="world:0", processor_id="pi_world", amount=invoice.total,
        state=Payment.State.SUCCEEDED, card_processor_id=method.processor_id,
        card_brand="visa", card_last4="4242", settled_at=clock.now())
    CreditNote.objects.create(
        number="CN-WORLD-0", organisation=organisation, invoice=invoice, payment=payment,
        kind=CreditNote.Kind.REFUND, currency="JPY", subtotal=Money(100, "JPY"),
        tax=Money(10, "JPY"), total=Money(110, "JPY"), seller_name="Kanri K.K.",
        buyer_name=organisation.name)
    admin = organisation.users.get()
    LicenceLedgerEntry.objects.create(  # as a purchase records it, every reference filled
        organisation=organisation, subscription=subscription, item="regular", delta=1,
        quantity_after=subscription.regular_licences + 1, actor=admin, actor_kind="user",
        quote=invoice.quote, invoice=invoice, reason="licences bought")
    CreditEntry.objects.create(organisation=organisation, invoice=invoice,
                               kind=CreditEntry.Kind.GRANTED, amount=Money(500, "JPY"))
    WebhookEvent.objects.create(event_id="evt_world", type="payment_intent.succeeded",
                                payload={}, outcome=WebhookEvent.Outcome.APPLIED)
    Notification.objects.create(organisation=organisation, kind=Notification.Kind.RECEIPT,
                                key="receipt:world", recipients=["boss@world.example"],
                                sent_at=clock.now())
    key = ApiKey.objects.create(organisation=organisation, name="CRM", prefix="world",
                                secret_hash="0" * 64, last_used_at=clock.now())
    UsageReport.objects.create(organisation=organisation, api_key=key, records=10,
                               storage_mb=5, reported_at=clock.now(), applied=True)
    return subscription


def _copies(row, count: int, **vary):
    """`count` unsaved copies of `row`; each keyword is a function of the copy's number giving
    that field's value (unique fields must differ)."""
    model = type(row)
    fields = {field.attname: getattr(row, field.attname)
              for field in model._meta.concrete_fields if not field.primary_key}
    return [model(**{**fields, **{name: make(n) for name, make in vary.items()}})
            for n in range(count)]


def _more_organisations(count: int) -> list[Organisation]:
    return Organisation.objects.bulk_create(
        Organisation(name=f"Clone {n} K.K.") for n in range(count))


def _more(model, count: int) -> None:
    """`count` more rows like the world's one of `model`, in one insert. The row copied has
    every foreign key its list shows, so a column that fetches its own row shows up here."""
    row = model.objects.filter(**FILLED.get(model, {})).order_by("pk").first()
    assert row is not None, f"the world has no {model._meta.label} with {FILLED.get(model)}"
    vary = {
        Organisation: {},
        User: {"email": lambda n: f"clone{n}@example.test"},
        AuditEvent: {},
        Subscription: {},
        SubscriptionStatusChange: {},
        LicenceLedgerEntry: {},
        Quote: {},
        Invoice: {"number": lambda n: f"INV-CLONE-{n}", "quote_id": lambda n: None},
        Payment: {"idempotency_key": lambda n: f"clone:{n}"},
        PaymentMethod: {"processor_id": lambda n: f"pm_clone{n}"},
        CreditEntry: {},
        CreditNote: {"number": lambda n: f"CN-CLONE-{n}"},
        WebhookEvent: {"event_id": lambda n: f"evt_clone{n}"},
        Notification: {"key": lambda n: f"clone:{n}"},
        ApiKey: {"prefix": lambda n: f"clone{n}"},
        UsageReport: {},
    }[model]
    if model is Subscription:  # one per organisation
        organisations = _more_organisations(count)
        vary = {"organisation_id": lambda n: organisations[n].pk}
    model.objects.bulk_create(_copies(row, count, **vary))


FILLED = {
    AuditEvent: {"organisation__isnull": False, "actor__isnull": False},
    SubscriptionStatusChange: {"actor__isnull": False},
    LicenceLedgerEntry: {"actor__isnull": False, "quote__isnull": False,
                         "invoice__isnull": False},
    User: {"organisation__isnull": False},
}

LISTS = [Organisation, User, AuditEvent, Subscription, SubscriptionStatusChange,
         LicenceLedgerEntry, Quote, Invoice, Payment, PaymentMethod, CreditEntry, CreditNote,
         WebhookEvent, Notification, ApiKey, UsageReport]


def _changelist(model) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def _queries(client, url: str) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as queries:
        page = client.get(url)
    assert page.status_code == 200
    return len(queries), page.context["cl"].result_count


@pytest.mark.parametrize("model", LISTS, ids=lambda model: model._meta.model_name)
def test_a_list_page_costs_the_same_queries_with_200_rows_as_with_1(superuser_client, world,
                                                                     model):
    url = _changelist(model)
    superuser_client.get(url)  # warm: content types, the session's device
    one, rows_before = _queries(superuser_client, url)

    _more(model, ROWS - rows_before)
    many, rows_after = _queries(superuser_client, url)

    assert rows_after >= ROWS
    assert many == one, f"{model._meta.label}: {one} queries with {rows_before} rows, " \
                        f"{many} with {rows_after}"


SEARCHES = [
    (Organisation, "world name"), (Organisation, "admin email"), (Organisation, "cus_world"),
    (Subscription, "admin email"), (Subscription, "cus_world"),
    (Invoice, "invoice number"), (Invoice, "admin email"), (Invoice, "pi_world"),
    (Invoice, "cus_world"),
    (Payment, "pi_world"), (Payment, "invoice number"), (Payment, "admin email"),
    (CreditNote, "pi_world"), (CreditNote, "invoice number"), (CreditEntry, "invoice number"),
    (Quote, "admin email"), (PaymentMethod, "admin email"), (LicenceLedgerEntry, "world name"),
    (SubscriptionStatusChange, "cus_world"), (Notification, "boss@world.example"),
    (ApiKey, "admin email"), (UsageReport, "admin email"), (AuditEvent, "world name"),
]


@pytest.mark.parametrize(("model", "key"), SEARCHES,
                         ids=[f"{m._meta.model_name}-{k}" for m, k in SEARCHES])
def test_support_finds_the_case_by_the_key_they_were_given(superuser_client, world, model, key):
    other = subscription_in(Status.ACTIVE)  # a second customer, never found
    Invoice.objects.filter(organisation=other.organisation).update(number="INV-OTHER")
    organisation = world.organisation
    query = {"world name": organisation.name,
             "admin email": organisation.users.get().email,
             "invoice number": Invoice.objects.get(organisation=organisation).number}.get(key, key)

    page = superuser_client.get(_changelist(model), {"q": query})

    found = list(page.context["cl"].result_list)
    assert found, f"{model._meta.label}: nothing found for {key}"
    organisation_of = {Organisation: lambda row: row,
                       SubscriptionStatusChange: lambda row: row.subscription.organisation}.get(
        model, lambda row: row.organisation)
    assert {organisation_of(row) for row in found} == {organisation}


def test_lists_filter_by_status_and_date(superuser_client, world):
    later = subscription_in(Status.TRIALING)
    url = _changelist(Subscription)
    period_end = world.current_period_end

    trialing = superuser_client.get(url, {"status__exact": "trialing"})
    due_soon = superuser_client.get(url, {"current_period_end__gte": period_end.isoformat(),
                                          "status__exact": "active"})

    assert list(trialing.context["cl"].result_list) == [later]
    assert list(due_soon.context["cl"].result_list) == [world]
    for model in LISTS:
        filters = [f if isinstance(f, str) else f[0] for f in admin_site._registry[model]
                   .list_filter]
        dates = [name for name in filters if model._meta.get_field(
            name.split("__")[0]).get_internal_type() == "DateTimeField"]
        assert dates, f"{model._meta.label} has no date filter"


def test_an_organisation_links_each_of_its_records(superuser_client, world):
    organisation = world.organisation

    page = superuser_client.get(
        reverse("admin:accounts_organisation_change", args=[organisation.pk])).content.decode()
    invoices_url = f"{_changelist(Invoice)}?organisation__id__exact={organisation.pk}"
    invoices = superuser_client.get(invoices_url)

    assert invoices_url in page and f"{_changelist(Payment)}?organisation__id__exact=" in page
    assert list(invoices.context["cl"].result_list) == list(
        Invoice.objects.filter(organisation=organisation))


def test_a_card_shows_brand_last_4_and_expiry_only_and_a_key_its_name_and_last_use(
        superuser_client, world):
    method = PaymentMethod.objects.get(organisation=world.organisation)
    key = ApiKey.objects.get(organisation=world.organisation)

    card = superuser_client.get(reverse("admin:billing_paymentmethod_change", args=[method.pk]))
    api_key = superuser_client.get(reverse("admin:api_apikey_change", args=[key.pk]))

    assert "4242" in card.content.decode() and "pm_world" not in card.content.decode()
    shown = api_key.content.decode()
    assert "field-last_used_at" in shown and "field-name" in shown
    # The prefix is public (it names the key everywhere), the hash is never shown.
    assert "field-prefix" not in shown and "field-secret_hash" not in shown
    assert key.secret_hash not in shown


READ_ONLY = [Subscription, SubscriptionStatusChange, LicenceLedgerEntry, Quote, Invoice,
             Payment, PaymentMethod, CreditEntry, CreditNote, WebhookEvent, Notification, ApiKey,
             UsageReport, AuditEvent]


@pytest.mark.parametrize("model", READ_ONLY, ids=lambda model: model._meta.model_name)
def test_money_and_status_rows_are_read_only_in_admin(superuser_client, world, model):
    row = model.objects.first()
    name = f"admin:{model._meta.app_label}_{model._meta.model_name}"

    change = superuser_client.post(reverse(f"{name}_change", args=[row.pk]), {"state": "paid"})
    delete = superuser_client.post(reverse(f"{name}_delete", args=[row.pk]), {"post": "yes"})
    add = superuser_client.get(reverse(f"{name}_add"))

    assert (change.status_code, delete.status_code, add.status_code) == (403, 403, 403)
    assert model.objects.filter(pk=row.pk).exists()


def test_the_support_group_opens_every_list(client, world):
    staff = User.objects.create_user("support@kanri.example", "pw-not-used", is_staff=True)
    staff.groups.add(Group.objects.get(name="support"))
    admin_login(client, staff)

    refused = [model._meta.label for model in LISTS
               if client.get(_changelist(model)).status_code != 200]

    assert refused == []
