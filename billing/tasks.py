"""Billing's Celery tasks: thin wrappers around the services."""
import smtplib

from celery import shared_task

from billing.models import Notification
from billing.notifications import notifications_send
from billing.services.charging import payments_settle_open
from billing.services.lifecycle import SWEEPS


@shared_task(acks_late=True)
def settle_open_payments() -> dict:
    """The sweep: settle every payment whose outcome is unknown by asking the processor, and
    refund charges that could not be applied. Safe to run at any time, any number of times."""
    outcomes = payments_settle_open()
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.kind] = counts.get(outcome.kind, 0) + 1
    return counts


@shared_task(acks_late=True, autoretry_for=(OSError, smtplib.SMTPException),
             retry_backoff=True, max_retries=8)
def send_notifications(keys: list[str]) -> int:
    """Send the emails recorded under these notification keys (one task per batch)."""
    return notifications_send(keys=keys)


@shared_task(acks_late=True)
def send_notification(notification_id: int) -> int:
    """The one-id form earlier releases enqueued; kept so messages already queued still send."""
    keys = list(Notification.objects.filter(pk=notification_id).values_list("key", flat=True))
    return send_notifications(keys)


@shared_task(acks_late=True)
def run_sweep(name: str) -> dict:
    """One of the subscription-life sweeps (billing.services.lifecycle.SWEEPS), by name."""
    return SWEEPS[name]()
