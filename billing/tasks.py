"""Billing's Celery tasks: thin wrappers around the services."""
from celery import shared_task

from billing.services.charging import payments_settle_open


@shared_task(acks_late=True)
def settle_open_payments() -> dict:
    """The sweep: settle every payment whose outcome is unknown by asking the processor, and
    refund charges that could not be applied. Safe to run at any time, any number of times."""
    outcomes = payments_settle_open()
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.kind] = counts.get(outcome.kind, 0) + 1
    return counts


@shared_task(acks_late=True)
def send_notification(notification_id: int) -> bool:
    from billing.notifications import notification_send

    return notification_send(notification_id=notification_id)


@shared_task(acks_late=True)
def run_sweep(name: str) -> dict:
    """One of the subscription-life sweeps (billing.services.lifecycle.SWEEPS), by name."""
    from billing.services.lifecycle import SWEEPS

    return SWEEPS[name]()
