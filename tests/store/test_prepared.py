"""Reads compiled once per process (store.prepared) answer exactly what their querysets answer,
for an organisation with everything the pages show and for one with nothing."""
import pytest
from django.core.paginator import Paginator
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from djmoney.money import Money

import accounts.selectors  # noqa: F401  (each module's prepared reads are made on import)
import billing.selectors  # noqa: F401
from accounts.models import AuditEvent, LicenceType
from billing.models import Payment, PaymentMethod, Status, Subscription
from store.prepared import Prepared
from tests.accounts.factories import AdminFactory, UserFactory
from tests.billing.factories import subscription_in

pytestmark = pytest.mark.django_db


def _fields(obj) -> dict:
    """A model instance as its column values, with the related objects it was loaded with."""
    values = {field.attname: getattr(obj, field.attname) for field in obj._meta.concrete_fields
              if field.attname in obj.__dict__}
    related = {name: _fields(rel) if rel is not None else None
               for name, rel in obj._state.fields_cache.items()}
    return {"model": type(obj).__name__, **values, "related": related}


def _answer(rows: list) -> list:
    return [row if isinstance(row, dict) else _fields(row) for row in rows]


@pytest.fixture
def organisations():
    """One organisation with a paid subscription, a default card, an open payment and users of
    both licence types, some deactivated; one just signed up (Free, nothing else)."""
    admin = AdminFactory()
    subscription = subscription_in(Status.ACTIVE, admin=admin)
    organisation = admin.organisation
    card = PaymentMethod.objects.create(organisation=organisation, processor_id="pm_prepared",
                                        brand="visa", last4="4242", exp_month=12, exp_year=2031)
    Subscription.objects.filter(pk=subscription.pk).update(default_payment_method=card)
    Payment.objects.create(organisation=organisation, idempotency_key="prepared:open",
                           amount=Money(3300, "JPY"), state=Payment.State.PROCESSING)
    UserFactory(organisation=organisation, licence_type=LicenceType.TEAM)
    UserFactory(organisation=organisation, is_active=False)
    return [organisation, AdminFactory().organisation]


def test_every_prepared_read_answers_what_its_queryset_answers(organisations):
    assert len(Prepared.every) >= 4
    for prepared in Prepared.every:
        for organisation in organisations:
            expected = _answer(list(prepared.build(organisation.pk)))
            assert _answer(prepared(organisation.pk)) == expected
    full = organisations[0].pk
    # The organisation with everything has something in each read (the comparison above is
    # not between two empty lists).
    assert all(prepared(full) for prepared in Prepared.every)


def test_a_prepared_read_is_compiled_once_and_runs_one_query_each_time(organisations):
    built = []
    prepared = Prepared(lambda organisation_id: built.append(organisation_id) or (
        Subscription.objects.select_related("plan").filter(organisation_id=organisation_id)))
    Prepared.every.remove(prepared)
    for organisation in organisations * 2:
        with CaptureQueriesContext(connection) as queries:
            [subscription] = prepared(organisation.pk)
        assert len(queries) == 1
        assert subscription.organisation_id == organisation.pk
        assert subscription.plan.code == ("standard" if organisation == organisations[0]
                                          else "free")
    assert len(built) == 1


def test_a_queryset_that_does_not_use_the_value_is_refused():
    prepared = Prepared(lambda organisation_id: Subscription.objects.filter(pk=1))
    Prepared.every.remove(prepared)
    with pytest.raises(ValueError, match="placeholder"):
        prepared(1)


def test_a_queryset_with_prefetching_is_refused():
    prepared = Prepared(lambda organisation_id: Subscription.objects.filter(
        organisation_id=organisation_id).prefetch_related("invoices"))
    Prepared.every.remove(prepared)
    with pytest.raises(TypeError):
        prepared(1)


def test_prepared_rows_page_as_the_queryset_pages(organisations):
    organisation = organisations[0]
    for number in range(5):
        AuditEvent.objects.create(organisation=organisation, actor_kind="system",
                                  action="user.added", target_type="user",
                                  target_id=str(number))
    events = AuditEvent.objects.filter(organisation=organisation).order_by("-created_at", "-id")
    prepared = Prepared(lambda organisation_id: AuditEvent.objects.filter(
        organisation_id=organisation_id).order_by("-created_at", "-id"))
    Prepared.every.remove(prepared)
    pager = Paginator(prepared.rows(organisation.pk, count=events.count), 2)
    expected = Paginator(events, 2)
    assert pager.num_pages == expected.num_pages >= 3
    for number in pager.page_range:
        assert (_answer(pager.page(number).object_list)
                == _answer(list(expected.page(number).object_list)))


def test_a_sliced_prepared_read_cannot_be_paged(organisations):
    prepared = Prepared(lambda organisation_id: AuditEvent.objects.filter(
        organisation_id=organisation_id)[:5])
    Prepared.every.remove(prepared)
    with pytest.raises(TypeError, match="sliced"):
        Paginator(prepared.rows(organisations[0].pk, count=lambda: 9), 2).page(1)


class _RecordingRouter:
    """Sends every read to the default database, noting each model it was asked about."""

    asked: list = []

    def db_for_read(self, model, **hints):
        self.asked.append(model)
        return "default"


@override_settings(DATABASE_ROUTERS=["tests.store.test_prepared._RecordingRouter"])
def test_a_prepared_read_asks_the_routers_where_to_read_each_time(organisations):
    # (A replica for the history pages is on the roadmap: the SQL is kept per database.)
    prepared = Prepared(lambda organisation_id: Subscription.objects.filter(
        organisation_id=organisation_id))
    Prepared.every.remove(prepared)
    _RecordingRouter.asked.clear()
    for organisation in organisations:
        [subscription] = prepared(organisation.pk)
        assert subscription.organisation_id == organisation.pk
    assert _RecordingRouter.asked.count(Subscription) == len(organisations)


def test_an_empty_list_pages_without_a_query(organisations):
    prepared = Prepared(lambda organisation_id: AuditEvent.objects.filter(
        organisation_id=organisation_id, action="never.happened").order_by("-id"))
    Prepared.every.remove(prepared)
    pager = Paginator(prepared.rows(organisations[1].pk, count=lambda: 0), 25)
    with CaptureQueriesContext(connection) as queries:
        page = pager.get_page(1)
        assert list(page.object_list) == [] and page.number == 1
    assert len(queries) == 0
