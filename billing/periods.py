"""Billing periods: counted from a stored anchor, on the organisation's wall clock.

Period n runs from `anchor + n cycles` to `anchor + (n + 1) cycles`, each computed from the anchor
itself (never from the previous period's end) in the organisation's time zone, with the anchor's
day clamped to the month's last day: an anchor on Jan 31 gives Feb 28 (or 29), then Mar 31. So
renewals cannot drift, and a purchase at 08:00 in Tokyo on 1 March renews at 08:00 on 1 April.
"""
import datetime as dt
from calendar import monthrange
from zoneinfo import ZoneInfo

from store.models import CYCLE_MONTHS


def _add_months_local(local: dt.datetime, months: int) -> dt.datetime:
    index = local.month - 1 + months
    year, month = local.year + index // 12, index % 12 + 1
    return local.replace(year=year, month=month, day=min(local.day, monthrange(year, month)[1]))


def boundary(*, anchor: dt.datetime, cycle: str, index: int, time_zone: str) -> dt.datetime:
    """The start of period `index` (0 is the anchor itself), as an aware UTC moment."""
    zone = ZoneInfo(time_zone)
    local = _add_months_local(anchor.astimezone(zone).replace(tzinfo=None),
                              index * CYCLE_MONTHS[cycle])
    return local.replace(tzinfo=zone).astimezone(dt.UTC)


def period_at(*, anchor: dt.datetime, cycle: str, moment: dt.datetime,
              time_zone: str) -> tuple[dt.datetime, dt.datetime]:
    """The period that contains `moment` (at or after the anchor)."""
    months = CYCLE_MONTHS[cycle]
    zone = ZoneInfo(time_zone)
    start_local, at_local = anchor.astimezone(zone), moment.astimezone(zone)
    # A first guess from the calendar, then step to the exact period.
    index = max(0, ((at_local.year - start_local.year) * 12
                    + at_local.month - start_local.month) // months - 1)
    while boundary(anchor=anchor, cycle=cycle, index=index + 1, time_zone=time_zone) <= moment:
        index += 1
    return (boundary(anchor=anchor, cycle=cycle, index=index, time_zone=time_zone),
            boundary(anchor=anchor, cycle=cycle, index=index + 1, time_zone=time_zone))


def first_period(*, start: dt.datetime, cycle: str,
                 time_zone: str) -> tuple[dt.datetime, dt.datetime]:
    """A period starting now: `start` becomes the anchor."""
    return start, boundary(anchor=start, cycle=cycle, index=1, time_zone=time_zone)
