"""Celery tasks for accounts: thin wrappers that take ids."""
from celery import shared_task

from accounts.emails import invitation_send


@shared_task(acks_late=True)
def send_invitation(user_id: int, language: str = "ja") -> None:
    invitation_send(user_id=user_id, language=language)
