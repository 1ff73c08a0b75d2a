"""The catalog: five plans, three add-ons, versioned prices that staff add but never edit."""
import datetime as dt
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.urls import reverse
from django.utils import translation
from djmoney.money import Money

from store import clock
from store.catalog_seed import seed_catalog
from store.models import AddOn, Plan, Price
from store.selectors import catalog_priced, prices_by_id
from tests.accounts.factories import UserFactory
from tests.store.factories import SHIPPED_PRICES
from tests.store.helpers import admin_login


def test_the_catalog_has_the_five_plans_in_order_and_three_add_ons(catalog):
    assert list(Plan.objects.values_list("code", flat=True)) == [
        "free", "standard", "professional", "enterprise", "ultimate"]
    assert set(AddOn.objects.values_list("code", flat=True)) == {"storage", "team_user", "backup"}
    assert catalog["free"].max_users == 3


def test_every_item_has_a_price_per_cycle_and_currency_and_yen_are_whole(catalog):
    for currency in ("JPY", "USD"):
        for cycle in ("monthly", "yearly"):
            priced = catalog_priced(currency=currency, cycle=cycle)
            assert all(e.price is not None for e in priced["plans"] + priced["addons"])
    for price in Price.objects.filter(amount_currency="JPY"):
        assert price.amount.amount == price.amount.amount.to_integral_value()


def test_seeding_again_changes_nothing(catalog, capsys):
    before = list(Price.objects.values_list("pk", "amount"))

    call_command("seed_catalog")

    assert list(Price.objects.values_list("pk", "amount")) == before
    assert "0 prices added" in capsys.readouterr().out


def test_a_new_price_version_takes_over_from_its_effective_date(catalog):
    standard = catalog["standard"]
    starts = clock.now() + dt.timedelta(days=30)
    Price.objects.create(plan=standard, cycle="monthly", amount=Money(2200, "JPY"),
                         effective_from=starts)

    def current():
        plans = catalog_priced(currency="JPY", cycle="monthly")["plans"]
        return next(e.price.amount for e in plans if e.item.code == "standard")

    assert current() == Money(2040, "JPY")
    with clock.travel(starts + dt.timedelta(seconds=1)):
        assert current() == Money(2200, "JPY")
    assert Price.objects.filter(plan=standard, cycle="monthly", amount_currency="JPY").count() == 2


def test_a_yen_price_with_a_fraction_is_refused(catalog):
    price = Price(plan=catalog["standard"], cycle="monthly", amount=Money("2040.50", "JPY"))

    with translation.override("en"), pytest.raises(ValidationError, match="fraction"):
        price.full_clean()


def test_a_price_for_both_a_plan_and_an_add_on_is_refused(catalog):
    price = Price(plan=catalog["standard"], addon=AddOn.objects.first(), cycle="monthly",
                  amount=Money(1, "JPY"))

    with translation.override("en"), pytest.raises(ValidationError, match="exactly one"):
        price.full_clean()


@pytest.fixture
def staff_client(client, catalog):
    return admin_login(client, UserFactory(organisation=None, is_staff=True, is_superuser=True))


def test_staff_cannot_edit_or_delete_a_saved_price_in_admin(staff_client):
    price = Price.objects.get(plan__code="standard", cycle="monthly", amount_currency="JPY")
    url = reverse("admin:store_price_change", args=[price.pk])

    form = staff_client.get(url).content.decode()
    staff_client.post(url, {"amount_0": "1", "amount_1": "JPY", "cycle": "yearly"})
    delete = staff_client.get(reverse("admin:store_price_delete", args=[price.pk]))

    assert 'name="amount_0"' not in form
    price.refresh_from_db()
    assert price.amount == Money(2040, "JPY") and price.cycle == "monthly"
    assert delete.status_code == 403


def test_staff_add_a_price_version_in_admin(staff_client, catalog):
    response = staff_client.post(reverse("admin:store_price_add"), {
        "plan": catalog["professional"].pk, "cycle": "monthly", "amount_0": "3500",
        "amount_1": "JPY", "effective_from_0": "2030-01-01", "effective_from_1": "00:00:00"})

    assert response.status_code == 302
    assert Price.objects.filter(plan__code="professional", amount=Decimal("3500")).exists()


def test_admin_refuses_a_half_yen_price(staff_client, catalog):
    response = staff_client.post(reverse("admin:store_price_add"), {
        "plan": catalog["professional"].pk, "cycle": "monthly", "amount_0": "3500.5",
        "amount_1": "JPY", "effective_from_0": "2030-01-01", "effective_from_1": "00:00:00"})

    assert response.status_code == 200
    assert not Price.objects.filter(amount=Decimal("3500.5")).exists()


# The suite's own `catalog` fixture: cheap when the catalog is there, complete after a flush.

def test_asking_for_the_catalog_when_it_is_there_costs_two_queries(
        request, db, django_assert_num_queries):
    seed_catalog(Plan, AddOn, Price)  # there, whatever ran before

    # is it all there? then the plans by code; nothing rewritten
    with django_assert_num_queries(2):
        plans = request.getfixturevalue("catalog")

    assert list(plans) == ["free", "standard", "professional", "enterprise", "ultimate"]


@pytest.mark.django_db(transaction=True)
def test_after_a_transactional_test_flushes_the_tables_the_catalog_is_back(request, client):
    call_command("flush", interactive=False, verbosity=0)  # what ends every transactional test

    request.getfixturevalue("catalog")
    response = client.get(reverse("pricing"), {"currency": "USD"}, HTTP_ACCEPT_LANGUAGE="en")

    assert Price.objects.count() == SHIPPED_PRICES
    for name in ("Free", "Standard", "Professional", "Enterprise", "Ultimate", "Extra storage"):
        assert name in response.content.decode()


# Prices a process keeps (store.selectors.prices_by_id): rows never change, so reading them
# once per process is safe.

def test_prices_read_once_come_back_without_a_query_as_new_instances(
        catalog, django_assert_num_queries):
    standard, team = (Price.objects.filter(plan=catalog["standard"], cycle="monthly",
                                           amount_currency="JPY").latest("effective_from"),
                      Price.objects.filter(addon__code="team_user", cycle="monthly",
                                           amount_currency="JPY").latest("effective_from"))
    with django_assert_num_queries(1):
        first = prices_by_id([standard.pk, team.pk, None])
    with django_assert_num_queries(0):
        again = prices_by_id([standard.pk])

    assert set(first) == {standard.pk, team.pk}
    assert first[standard.pk].amount == again[standard.pk].amount == standard.amount
    assert first[team.pk].addon_id == team.addon_id
    assert first[standard.pk] is not again[standard.pk]  # a caller's changes stay its own
    with django_assert_num_queries(1):  # a price made after the first read: one query for it
        newer = Price.objects.create(plan=catalog["standard"], cycle="monthly",
                                     amount=Money(1, "JPY"))
    with django_assert_num_queries(1):
        assert prices_by_id([standard.pk, newer.pk])[newer.pk].amount == Money(1, "JPY")
