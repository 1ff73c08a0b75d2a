"""Emails to an organisation's administrators, each sent once per event.

`notify` (one event) and `notify_all` (a sweep's batch) record events in the caller's
transaction: a Notification row each, unique on its key, so an event recorded twice is one row.
After commit one task per call sends what was recorded. The task claims its rows with one
`UPDATE … RETURNING` before sending, outside any transaction, so a rerun or a second worker never
sends them again; a send that raises gives back the rows it had not sent, for the retry. A crash
between the claim and the send loses those emails rather than sending them twice: they stay
visible in admin, unsent.
"""
import logging
from collections import defaultdict
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import connection, transaction
from django.template.loader import render_to_string
from django.utils import translation

from accounts.models import Organisation, Role, User
from billing.models import Notification
from store import clock

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    organisation_id: int
    kind: str
    key: str  # what makes the event unique, e.g. "locked:12:345"
    context: dict


def notify(*, organisation: Organisation, kind: str, key: str, context: dict) -> bool:
    """Record one email to the organisation's active admins; False if this event was already
    recorded. Call inside the transaction that makes the change it announces."""
    return notify_all([Event(organisation.pk, kind, key, context)]) == 1


def notify_all(events: list[Event]) -> int:
    """Record many events with a constant number of statements (a sweep's batch) and send them
    in one task after commit; returns how many were new. An event recorded meanwhile by a
    concurrent run is skipped by the unique key (it may still be counted here)."""
    from billing.tasks import send_notifications  # tasks import services; keep it lazy

    if not events:
        return 0
    known = set(Notification.objects.filter(key__in=[event.key for event in events])
                .values_list("key", flat=True))
    fresh = [event for event in events if event.key not in known]
    if not fresh:
        return 0
    admins: dict[int, list[str]] = defaultdict(list)
    for organisation_id, email in (User.objects.filter(
            organisation__in={event.organisation_id for event in fresh}, role=Role.ADMIN,
            is_active=True).order_by("email").values_list("organisation_id", "email")):
        admins[organisation_id].append(email)
    Notification.objects.bulk_create(
        (Notification(organisation_id=event.organisation_id, kind=event.kind, key=event.key,
                      context=event.context, recipients=admins[event.organisation_id])
         for event in fresh), ignore_conflicts=True)
    keys = [event.key for event in fresh]
    transaction.on_commit(lambda: send_notifications.delay(keys))
    return len(fresh)


def _claim(keys: list[str]) -> list[int]:
    """Mark the unsent notifications among `keys` as sent, in one statement; their ids."""
    if not keys:
        return []
    table = connection.ops.quote_name(Notification._meta.db_table)
    marks = ", ".join(["%s"] * len(keys))
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET sent_at = %s WHERE sent_at IS NULL "
                       f"AND key IN ({marks}) RETURNING id", [clock.now(), *keys])
        return [row[0] for row in cursor.fetchall()]


def _message(notification: Notification) -> EmailMessage:
    context = {**notification.context, "organisation": notification.organisation.name,
               "manage_url": f"{settings.KANRI_BASE_URL}/manage/"}
    with translation.override(notification.organisation.language):
        subject = render_to_string(f"billing/email/{notification.kind}_subject.txt",
                                   context).strip()
        body = render_to_string(f"billing/email/{notification.kind}.txt", context)
    return EmailMessage(subject, body, None, notification.recipients)


def notifications_send(*, keys: list[str]) -> int:
    """Send the notifications recorded under `keys` that nobody has sent; returns how many."""
    ids = _claim(keys)
    if not ids:
        return 0
    notifications = list(Notification.objects.filter(pk__in=ids)
                         .select_related("organisation").order_by("pk"))
    sent: list[int] = []
    try:
        with get_connection() as mailer:
            for notification in notifications:
                if notification.recipients:
                    mailer.send_messages([_message(notification)])
                sent.append(notification.pk)
                logger.info("sent %s to %s", notification.key, notification.recipients)
    except Exception:
        Notification.objects.filter(pk__in=set(ids) - set(sent)).update(sent_at=None)
        raise
    return len(sent)
