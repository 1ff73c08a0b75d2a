"""The one clock: every "now" in Kanri comes from here, so tests can travel through time."""
import contextlib
import datetime as dt
import threading
from zoneinfo import ZoneInfo

from django.utils import timezone

_state = threading.local()
_frozen: dt.datetime | None = None


def now() -> dt.datetime:
    """The current time, or the time a test travelled to."""
    return getattr(_state, "frozen", None) or _frozen or timezone.now()


@contextlib.contextmanager
def travel(to: dt.datetime):
    """Freeze `now()` at `to` (aware) for every thread until the block ends."""
    global _frozen
    if timezone.is_naive(to):
        raise ValueError("travel() needs an aware datetime")
    previous, _frozen = _frozen, to
    try:
        yield
    finally:
        _frozen = previous


def add_months(moment: dt.datetime, months: int) -> dt.datetime:
    """The same wall-clock time `months` later; the 31st becomes the month's last day."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    days_in_month = [31, 29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28,
                     31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
    return moment.replace(year=year, month=month, day=min(moment.day, days_in_month))


def localtime_label(moment: dt.datetime) -> str:
    """A moment as people here read it: 2026-12-11 14:05 in the site's time zone."""
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M")


def local_date_label(moment: dt.datetime, time_zone: str) -> str:
    """The day of a moment on an organisation's clock: 2026-12-11."""
    return moment.astimezone(ZoneInfo(time_zone)).strftime("%Y-%m-%d")
