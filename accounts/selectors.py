"""Reads about organisations and their people, always scoped to one organisation."""
import datetime as dt
from zoneinfo import ZoneInfo

from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404

from accounts.models import AuditEvent, LicenceType, Organisation, User
from store.prepared import Prepared


def org_user_get(*, organisation: Organisation, user_id: int) -> User:
    """A user of this organisation, or 404: another organisation's id never leaks."""
    return get_object_or_404(User, pk=user_id, organisation=organisation)


def org_users(*, organisation: Organisation, count: int):
    """The users page's people, active first, by email: the columns the page prints, as plain
    rows (a page of them is read and printed many times a minute; no model is needed), for a
    Paginator; `count`: how many users the organisation has (`org_user_counts` says it)."""
    return _USER_ROWS.rows(organisation.pk, count=lambda: count)


def org_user_counts(*, organisation: Organisation) -> dict[str, dict[str, int]]:
    """Active and deactivated users per licence type, in one query."""
    counts = {t: {"active": 0, "deactivated": 0} for t in LicenceType.values}
    for row in _USER_COUNTS(organisation.pk):
        counts[row["licence_type"]] = {"active": row["active"], "deactivated": row["deactivated"]}
    return counts


# Compiled once per process: the users page's rows, and the counts most portal pages read.
_USER_ROWS = Prepared(lambda organisation_id: User.objects.filter(
    organisation_id=organisation_id).order_by("-is_active", "email").values(
    "pk", "email", "name", "role", "licence_type", "is_active"))
_USER_COUNTS = Prepared(lambda organisation_id: User.objects.filter(
    organisation_id=organisation_id).order_by().values("licence_type").annotate(
    active=Count("pk", filter=Q(is_active=True)),
    deactivated=Count("pk", filter=Q(is_active=False))))


# The activity page: the organisation's audit trail --------------------------------------------

ACTIVITY_KINDS = ("subscription", "user", "card", "payment", "invoice", "api_key",
                  "organisation", "support")


def activity(*, organisation: Organisation, kind: str = "", start=None, end=None):
    """The organisation's audit events, newest first; `kind` is the action's prefix
    (subscription, user, card, ...), `start`/`end` days on the organisation's clock."""
    events = _events(organisation.pk)
    if kind:
        events = events.filter(action__startswith=f"{kind}.")
    zone = ZoneInfo(organisation.time_zone)
    if start:
        events = events.filter(created_at__gte=dt.datetime.combine(start, dt.time(),
                                                                   tzinfo=zone))
    if end:
        events = events.filter(created_at__lt=dt.datetime.combine(
            end + dt.timedelta(days=1), dt.time(), tzinfo=zone))
    return events


def activity_page(*, organisation: Organisation, number, size: int, kind: str = "", start=None,
                  end=None):
    """One page of `activity`; each event's `when` is its time on the organisation's clock, as
    the page prints it (formatted once here, not by a template filter per row)."""
    if kind or start or end:
        events = activity(organisation=organisation, kind=kind, start=start, end=end)
    else:  # the page as it opens: its two reads compiled once per process
        events = _ACTIVITY.rows(organisation.pk, count=lambda: sum(
            row["events"] for row in _ACTIVITY_COUNT(organisation.pk)))
    page = Paginator(events, size).get_page(number)
    zone = ZoneInfo(organisation.time_zone)
    for event in page.object_list:
        event.when = event.created_at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    return page


def _events(organisation_id: int):
    return AuditEvent.objects.filter(organisation_id=organisation_id).order_by("-created_at", "-id")


_ACTIVITY = Prepared(_events)
_ACTIVITY_COUNT = Prepared(lambda organisation_id: AuditEvent.objects.filter(
    organisation_id=organisation_id).order_by().values("organisation_id").annotate(
    events=Count("pk")))
