"""Emails to an organisation's administrators, each sent once per event.

`notify` records the event in the caller's transaction (a Notification row, unique on its key);
after commit a task sends it. The task claims the row with one UPDATE before sending, outside any
transaction, so a rerun or a second worker never sends it again (a crash between the claim and
the send loses that email rather than sending it twice: it stays visible in admin, unsent).
"""
import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.utils import translation

from accounts.models import Organisation, Role
from billing.models import Notification
from store import clock

logger = logging.getLogger(__name__)


def notify(*, organisation: Organisation, kind: str, key: str, context: dict) -> bool:
    """Record one email to the organisation's active admins; False if this event was already
    recorded. Call inside the transaction that makes the change it announces."""
    from billing.tasks import send_notification  # tasks import services; keep it lazy

    recipients = sorted(organisation.users.filter(role=Role.ADMIN, is_active=True)
                        .values_list("email", flat=True))
    try:
        with transaction.atomic():
            notification = Notification.objects.create(
                organisation=organisation, kind=kind, key=key, context=context,
                recipients=recipients)
    except IntegrityError:
        return False
    transaction.on_commit(lambda: send_notification.delay(notification.pk))
    return True


def notification_send(*, notification_id: int) -> bool:
    claimed = Notification.objects.filter(pk=notification_id, sent_at=None).update(
        sent_at=clock.now())
    if not claimed:
        return False
    notification = Notification.objects.select_related("organisation").get(pk=notification_id)
    context = {**notification.context, "organisation": notification.organisation.name,
               "manage_url": f"{settings.KANRI_BASE_URL}/manage/"}
    with translation.override(notification.organisation.language):
        subject = render_to_string(f"billing/email/{notification.kind}_subject.txt",
                                   context).strip()
        body = render_to_string(f"billing/email/{notification.kind}.txt", context)
    if notification.recipients:
        send_mail(subject, body, None, notification.recipients)
    logger.info("sent %s to %s", notification.key, notification.recipients)
    return True
