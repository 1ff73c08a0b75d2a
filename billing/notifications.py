"""Emails to an organisation's administrators, each sent once per event.

`notify` (one event) and `notify_all` (a sweep's batch) record events in the caller's
transaction: a Notification row each, unique on its key, so an event recorded twice is one row.
After commit one task per call sends what was recorded. The task claims its rows with one
`UPDATE … RETURNING` before sending, outside any transaction, so a rerun or a second worker never
sends them again; a send that raises gives back the rows it had not sent, for the retry, and the
`unsent_emails` sweep sends what no task did (a broker down at commit). A crash between the claim
and the send loses those emails rather than sending them twice: they stay in admin, marked sent
with no message delivered (at most once, never twice).
"""
import datetime as dt
import logging
import smtplib
from collections import defaultdict
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import connection, transaction
from django.template.loader import render_to_string
from django.utils import translation

from accounts.models import Organisation, Role, User
from billing.documents import (
    credit_note_filename,
    credit_note_pdf,
    invoice_filename,
    invoice_pdf,
)
from billing.models import CreditNote, Invoice, Notification
from store import clock

logger = logging.getLogger(__name__)
BATCH = 500


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


def notifications_send_on_commit(keys: list[str]) -> None:
    """Send these recorded emails in one task once the transaction commits. Robust: a broker
    down at commit must not fail what already committed; the unsent-emails sweep sends them
    later."""
    # The one import kept inside a function in the money path: billing.tasks imports the
    # services that record notifications (and through them this module).
    from billing.tasks import send_notifications

    transaction.on_commit(lambda: send_notifications.delay(keys), robust=True)


def notify_all(events: list[Event], *, new: bool = False) -> int:
    """Record many events with a constant number of statements (a sweep's batch) and send them
    in one task after commit; returns how many were new. An event recorded meanwhile by a
    concurrent run is skipped by the unique key (it may still be counted here). `new=True` skips
    looking for the keys first, for a caller whose row locks already make every event new (a
    status move): the unique key still keeps a duplicate out."""
    if not events:
        return 0
    known = set() if new else set(
        Notification.objects.filter(key__in=[event.key for event in events])
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
    notifications_send_on_commit([event.key for event in fresh])
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
    organisation = notification.organisation
    context = {**notification.context, "organisation": organisation.name,
               "manage_url": f"{settings.KANRI_BASE_URL}/manage/"}
    with translation.override(organisation.language):
        subject = render_to_string(f"billing/email/{notification.kind}_subject.txt",
                                   context).strip()
        body = render_to_string(f"billing/email/{notification.kind}.txt", context)
    message = EmailMessage(subject, body, None, notification.recipients)
    if notification.kind == Notification.Kind.RECEIPT:
        # The invoice it receipts, as the PDF the portal serves, in the organisation's language.
        invoice = Invoice.objects.get(organisation=organisation,
                                      number=notification.context["number"])
        message.attach(invoice_filename(invoice), invoice_pdf(invoice, organisation.language),
                       "application/pdf")
    if notification.kind == Notification.Kind.REFUND:
        note = CreditNote.objects.get(organisation=organisation,
                                      number=notification.context["credit_note"])
        message.attach(credit_note_filename(note), credit_note_pdf(note, organisation.language),
                       "application/pdf")
    return message


def notifications_send(*, keys: list[str]) -> int:
    """Send the notifications recorded under `keys` that nobody has sent; returns how many.
    What could not be sent is given back (unsent) and the first error raised once the rest of
    the batch has been tried, so one bad message does not hold back the others."""
    ids = _claim(keys)
    if not ids:
        return 0
    notifications = list(Notification.objects.filter(pk__in=ids)
                         .select_related("organisation").order_by("pk"))
    sent, error = 0, None
    unsent = set(ids)
    try:
        with get_connection() as mailer:
            for notification in notifications:
                try:
                    if notification.recipients:
                        mailer.send_messages([_message(notification)])
                except (OSError, smtplib.SMTPServerDisconnected) as failure:
                    error = failure  # the connection is gone: the rest waits for the retry
                    break
                except Exception as failure:  # noqa: BLE001 - given back, raised below
                    logger.exception("could not send %s", notification.key)
                    error = error or failure
                    continue
                unsent.discard(notification.pk)
                sent += 1
                logger.info("sent %s to %s", notification.key, notification.recipients)
    finally:
        if unsent:
            Notification.objects.filter(pk__in=unsent).update(sent_at=None)
    if error is not None:
        raise error
    return sent


def notifications_send_pending(*, older_than: dt.timedelta = dt.timedelta(minutes=5),
                               limit: int = 5000) -> dict:
    """Send what was recorded but never sent: a send task lost before it ran (the broker down
    at commit) or one whose retries ran out. Only rows older than `older_than`, so a task still
    on its way does its own work; at most `limit` a run, the rest the next run."""
    keys = list(Notification.objects.filter(sent_at=None,
                                            created_at__lte=clock.now() - older_than)
                .order_by("pk").values_list("key", flat=True)[:limit])
    counts = {"sent": 0, "failed_batches": 0}
    for start in range(0, len(keys), BATCH):
        try:
            counts["sent"] += notifications_send(keys=keys[start:start + BATCH])
        except Exception:  # noqa: BLE001 - logged; the rows stay unsent for the next run
            logger.exception("sending unsent notifications failed")
            counts["failed_batches"] += 1
    return counts
