"""Properties of proration over any position in the period and any change (hypothesis)."""
import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.models import InvoiceLine, Status, Subscription
from billing.models.quotes import LineKind
from billing.pricing import (
    Change,
    TaxRule,
    current_price,
    new_prices,
    price_lines,
    quote_price,
)
from store import clock
from store.models import AddOn, Plan
from store.money import is_whole_minor_units, minor_unit_exponent, zero
from tests.accounts.factories import AdminFactory

START = dt.datetime(2027, 1, 31, 0, 0, tzinfo=dt.UTC)
PAID = ["standard", "professional", "enterprise", "ultimate"]
hypothesis_settings = settings(max_examples=150, deadline=None,
                               suppress_health_check=[HealthCheck.function_scoped_fixture])


def _running(organisation, *, plan, cycle, currency, regular, team, storage):
    """An unsaved subscription mid-period, paying today's prices, and the (unsaved) invoice
    lines that paid its period."""
    team_addon, storage_addon = AddOn.objects.get(code="team_user"), AddOn.objects.get(
        code="storage")
    sub = Subscription(
        organisation=organisation, plan=plan, cycle=cycle, currency=currency,
        regular_licences=regular, team_licences=team, storage_units=storage,
        plan_price=current_price(plan=plan, cycle=cycle, currency=currency),
        team_price=current_price(addon=team_addon, cycle=cycle, currency=currency),
        storage_price=current_price(addon=storage_addon, cycle=cycle, currency=currency),
        status=Status.ACTIVE, current_period_start=START,
        current_period_end=clock.add_months(START, 12 if cycle == "yearly" else 1),
        credit_balance=zero(currency))
    paid = [InvoiceLine(kind=LineKind.CHARGE, price=price, quantity=quantity,
                        unit_amount=price.amount, tax_rate=Decimal("0.10"))
            for price, quantity in ((sub.plan_price, regular), (sub.team_price, team),
                                    (sub.storage_price, storage)) if quantity]
    return sub, paid


def _full(subscription_or_change, currency, cycle):
    item = subscription_or_change
    total = Decimal(0)
    for quantity, kwargs in ((item.regular_licences, {"plan": item.plan}),
                             (item.team_licences, {"addon": AddOn.objects.get(code="team_user")}),
                             (item.storage_units, {"addon": AddOn.objects.get(code="storage")})):
        if quantity:
            price = current_price(cycle=cycle, currency=currency, **kwargs)
            total += price.amount.amount * quantity
    return total


change_strategy = st.fixed_dictionaries({
    "from_plan": st.sampled_from(PAID), "to_plan": st.sampled_from(PAID),
    "cycle": st.sampled_from(["monthly", "yearly"]), "currency": st.sampled_from(["JPY", "USD"]),
    "regular": st.tuples(st.integers(1, 500), st.integers(1, 500)),
    "team": st.tuples(st.integers(0, 50), st.integers(0, 50)),
    "storage": st.tuples(st.integers(0, 50), st.integers(0, 50)),
    "position": st.integers(0, 999_999),  # millionths of the period; at its end it is over
})


def _at(subscription, millionths: int) -> dt.datetime:
    seconds = int((subscription.current_period_end - START).total_seconds())
    return START + dt.timedelta(seconds=seconds * millionths // 1_000_000)


@pytest.fixture
def organisation(catalog):
    return AdminFactory().organisation


@hypothesis_settings
@given(case=change_strategy)
def test_charge_less_credit_is_the_price_difference_for_the_remaining_share(organisation, case):
    sub, paid = _running(organisation, plan=Plan.objects.get(code=case["from_plan"]),
                   cycle=case["cycle"], currency=case["currency"], regular=case["regular"][0],
                   team=case["team"][0], storage=case["storage"][0])
    change = Change(Plan.objects.get(code=case["to_plan"]), case["cycle"], case["regular"][1],
                    case["team"][1], case["storage"][1])
    now = _at(sub, case["position"])

    priced = price_lines(subscription=sub, change=change, now=now, paid=paid,
                         new=new_prices(change=change, currency=case["currency"]),
                         tax=TaxRule.current(case["currency"]), time_zone="Asia/Tokyo")
    lines, end = priced.lines, priced.period_end

    assert end == sub.current_period_end  # same cycle: the period stays
    fractions = {line.fraction for line in lines}
    assert len(fractions) <= 1
    fraction = fractions.pop() if fractions else Decimal(0)
    exact = (_full(change, case["currency"], case["cycle"])
             - _full(sub, case["currency"], case["cycle"])) * fraction
    net = sum(line.amount.amount for line in lines)
    minor = Decimal(1).scaleb(-minor_unit_exponent(case["currency"]))
    assert abs(net - exact) <= minor * len(lines) / 2
    assert all(is_whole_minor_units(line.amount) for line in lines)
    assert all((line.kind == LineKind.CREDIT) == (line.amount.amount <= 0) or
               line.amount.amount == 0 for line in lines)


@hypothesis_settings
@given(case=change_strategy, balance=st.integers(0, 200_000))
def test_what_is_due_and_what_is_credited_are_never_negative_and_never_both(
        organisation, case, balance):
    sub, paid = _running(organisation, plan=Plan.objects.get(code=case["from_plan"]),
                   cycle=case["cycle"], currency=case["currency"], regular=case["regular"][0],
                   team=case["team"][0], storage=case["storage"][0])
    sub.credit_balance = sub.credit_balance.__class__(balance, case["currency"])
    change = Change(Plan.objects.get(code=case["to_plan"]), case["cycle"], case["regular"][1],
                    case["team"][1], case["storage"][1])
    if change == Change(sub.plan, sub.cycle, sub.regular_licences, sub.team_licences,
                        sub.storage_units):
        return  # "nothing to change" is refused, tested elsewhere

    with clock.travel(_at(sub, case["position"])):
        priced = quote_price(organisation=organisation, subscription=sub, change=change,
                             paid=paid)

    currency_zero = zero(case["currency"])
    assert priced.amount_due >= currency_zero and priced.credit_to_account >= currency_zero
    assert priced.amount_due == currency_zero or priced.credit_to_account == currency_zero
    assert priced.credit_applied <= sub.credit_balance
    assert priced.amount_due + priced.credit_applied - priced.credit_to_account == priced.total
    for money in (priced.subtotal, priced.tax, priced.total, priced.amount_due):
        assert is_whole_minor_units(money)
