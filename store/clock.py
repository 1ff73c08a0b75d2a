"""The one clock: every "now" in Kanri comes from here, so tests can travel through time."""
import contextlib
import datetime as dt
import threading

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
