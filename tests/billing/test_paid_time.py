"""Only paid time is credited: one rule (`Subscription.period_was_paid`), every status."""
import datetime as dt

import pytest

from billing.models import Status
from billing.pricing import Change, quote_price
from store import clock
from store.models import Plan
from tests.billing.factories import subscription_in

START = dt.datetime(2026, 12, 1, 0, 0, tzinfo=dt.UTC)
CREDITED = {Status.ACTIVE}


@pytest.mark.parametrize("status", list(Status))
def test_a_downgrade_credits_unused_time_only_from_a_paid_period(db, catalog, status):
    with clock.travel(START):
        subscription = subscription_in(status)
    organisation = subscription.organisation

    with clock.travel(START + dt.timedelta(days=10)):
        priced = quote_price(organisation=organisation, subscription=subscription,
                             change=Change(Plan.objects.get(code="free"), "monthly", 2, 0, 0))

    credits = [line for line in priced.lines if line.kind == "credit"]
    assert subscription.period_was_paid is (status in CREDITED)
    assert bool(credits) is (status in CREDITED)
    assert (priced.credit_to_account.amount > 0) is (status in CREDITED)


def test_a_credit_line_points_at_the_line_it_credits(db, catalog):
    with clock.travel(START):
        subscription = subscription_in(Status.ACTIVE)
    paid_line = subscription.paid_invoice.lines.get(kind="charge")

    with clock.travel(START + dt.timedelta(days=10)):
        priced = quote_price(organisation=subscription.organisation, subscription=subscription,
                             change=Change(Plan.objects.get(code="free"), "monthly", 3, 0, 0))

    [credit] = priced.lines
    assert credit.credits_line == paid_line
    assert (credit.price, credit.quantity, credit.tax_rate) == (
        paid_line.price, paid_line.quantity, paid_line.tax_rate)
