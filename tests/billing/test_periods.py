"""Periods from a stored anchor on the organisation's clock: no drift, no UTC surprises."""
import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from billing import periods
from billing.models import Status
from store import clock
from tests.accounts.factories import AdminFactory
from tests.billing.factories import paid_quote_applied

TOKYO = ZoneInfo("Asia/Tokyo")


def _tokyo(*args):
    return dt.datetime(*args, tzinfo=TOKYO)


def test_month_ends_clamp_and_come_back_to_the_31st():
    anchor = _tokyo(2027, 1, 31, 10, 0)

    ends = [periods.boundary(anchor=anchor, cycle="monthly", index=n, time_zone="Asia/Tokyo")
            for n in range(1, 4)]

    assert [end.astimezone(TOKYO) for end in ends] == [
        _tokyo(2027, 2, 28, 10, 0), _tokyo(2027, 3, 31, 10, 0), _tokyo(2027, 4, 30, 10, 0)]


def test_a_leap_february_keeps_the_29th_and_a_yearly_anchor_clamps():
    assert periods.boundary(anchor=_tokyo(2028, 1, 31), cycle="monthly", index=1,
                            time_zone="Asia/Tokyo") == _tokyo(2028, 2, 29)
    assert periods.boundary(anchor=_tokyo(2028, 2, 29), cycle="yearly", index=1,
                            time_zone="Asia/Tokyo") == _tokyo(2029, 2, 28)
    assert periods.boundary(anchor=_tokyo(2028, 2, 29), cycle="yearly", index=4,
                            time_zone="Asia/Tokyo") == _tokyo(2032, 2, 29)


def test_the_period_around_a_moment_is_counted_from_the_anchor():
    anchor = _tokyo(2027, 1, 31, 9, 0)

    start, end = periods.period_at(anchor=anchor, cycle="monthly",
                                   moment=_tokyo(2027, 3, 31, 8, 59), time_zone="Asia/Tokyo")

    assert (start, end) == (_tokyo(2027, 2, 28, 9, 0), _tokyo(2027, 3, 31, 9, 0))


def test_the_wall_clock_is_kept_across_daylight_saving_time():
    anchor = dt.datetime(2027, 3, 1, 9, 0, tzinfo=ZoneInfo("America/New_York"))

    end = periods.boundary(anchor=anchor, cycle="monthly", index=1,
                           time_zone="America/New_York")

    assert end.astimezone(ZoneInfo("America/New_York")).hour == 9  # EST then EDT
    assert end - anchor == dt.timedelta(days=31, hours=-1)


@pytest.mark.usefixtures("catalog")
def test_a_purchase_at_8_in_tokyo_on_1_march_renews_on_1_april_at_8(db):
    """08:00 in Tokyo on 1 March is 23:00 UTC on 28 February: months counted in UTC would give
    29 March."""
    admin = AdminFactory()
    bought = _tokyo(2027, 3, 1, 8, 0)

    with clock.travel(bought.astimezone(dt.UTC)):
        subscription = paid_quote_applied(admin=admin)

    assert subscription.status == Status.ACTIVE
    assert subscription.billing_anchor == bought
    assert subscription.current_period_end.astimezone(TOKYO) == _tokyo(2027, 4, 1, 8, 0)


@pytest.mark.usefixtures("catalog")
def test_the_organisations_own_time_zone_decides(db):
    admin = AdminFactory(organisation__time_zone="America/Los_Angeles")
    bought = dt.datetime(2027, 1, 31, 20, 0, tzinfo=ZoneInfo("America/Los_Angeles"))

    with clock.travel(bought.astimezone(dt.UTC)):  # 1 February in UTC and in Tokyo
        subscription = paid_quote_applied(admin=admin)

    assert subscription.current_period_end == dt.datetime(
        2027, 2, 28, 20, 0, tzinfo=ZoneInfo("America/Los_Angeles"))
