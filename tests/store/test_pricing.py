"""The public pricing page: five plans, both cycles, JPY and USD, htmx partial updates."""
import re

import pytest
from django.urls import reverse


def _prices(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-testid="price-(\w+)">([^<]+)<', html))


def test_pricing_lists_every_plan_with_its_yearly_price_per_month_in_yen(client, catalog):
    response = client.get(reverse("pricing"), HTTP_ACCEPT_LANGUAGE="ja")

    assert response.status_code == 200
    assert _prices(response.content.decode()) == {
        "free": "￥0", "standard": "￥1,680", "professional": "￥2,760",
        "enterprise": "￥4,800", "ultimate": "￥6,240"}
    assert "年払い:ユーザーあたり ￥20,160" in response.content.decode()


def test_monthly_usd_prices_in_english(client, catalog):
    response = client.get(reverse("pricing"), {"cycle": "monthly", "currency": "USD"},
                          HTTP_ACCEPT_LANGUAGE="en")

    assert _prices(response.content.decode()) == {
        "free": "$0.00", "standard": "$20.00", "professional": "$35.00",
        "enterprise": "$50.00", "ultimate": "$65.00"}
    assert "Billed monthly" in response.content.decode()


def test_yearly_is_cheaper_than_twelve_months_for_every_paid_plan(client, catalog):
    for currency in ("JPY", "USD"):
        yearly = client.get(reverse("pricing"), {"cycle": "yearly", "currency": currency})
        monthly = client.get(reverse("pricing"), {"cycle": "monthly", "currency": currency})
        year = {e.item.code: e.price.amount for e in yearly.context["plans"]}
        month = {e.item.code: e.price.amount for e in monthly.context["plans"]}
        for code in ("standard", "professional", "enterprise", "ultimate"):
            assert year[code] < month[code] * 12, (currency, code)


def test_free_plan_shows_its_three_user_limit_and_needs_no_card(client, catalog):
    page = client.get(reverse("pricing"), HTTP_ACCEPT_LANGUAGE="en").content.decode()

    assert "Up to 3 users" in page
    assert "Free forever; no card needed" in page


def test_htmx_request_gets_only_the_catalog_partial(client, catalog):
    response = client.get(reverse("pricing"), {"cycle": "monthly"}, HTTP_HX_REQUEST="true",
                          HTTP_ACCEPT_LANGUAGE="ja")
    html = response.content.decode()

    assert html.lstrip().startswith('<div id="catalog"')
    assert "<html" not in html
    assert _prices(html)["standard"] == "￥2,040"


@pytest.mark.parametrize("params", [{"cycle": "weekly"}, {"currency": "EUR"},
                                    {"cycle": "' OR 1=1 --"}])
def test_unknown_cycle_or_currency_falls_back_to_the_defaults(client, catalog, params):
    response = client.get(reverse("pricing"), params, HTTP_ACCEPT_LANGUAGE="ja")

    assert response.status_code == 200
    assert response.context["cycle"] in ("yearly", "monthly")
    assert response.context["currency"] in ("JPY", "USD")


def test_pricing_query_count_does_not_grow_with_the_catalog(client, catalog,
                                                            django_assert_num_queries):
    # the prices in effect, plans, add-ons
    with django_assert_num_queries(3):
        client.get(reverse("pricing"))
