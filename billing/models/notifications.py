"""Emails the product sends, one row per event: the unique key makes every email go once, however
often the job that triggers it runs."""
from django.db import models
from django.utils.translation import gettext_lazy as _

from accounts.models import Organisation
from store import clock


class Notification(models.Model):
    class Kind(models.TextChoices):
        TRIAL_ENDING = "trial_ending"
        TRIAL_ENDED = "trial_ended"
        RENEWED = "renewed"
        PAYMENT_FAILED = "payment_failed"
        LOCKED = "locked"
        MOVED_TO_FREE = "moved_to_free"
        RECEIPT = "receipt"  # a payment taken, with the invoice PDF attached
        GRACE_ENDING = "grace_ending"
        CARD_EXPIRING = "card_expiring"
        LICENCE_CHANGE = "licence_change"
        REFUND = "refund"  # with the refund's credit note attached

    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT,
                                     related_name="notifications")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # What makes the event unique, e.g. "payment_failed:invoice:12:attempt:3".
    key = models.CharField(max_length=120, unique=True)
    context = models.JSONField(default=dict)
    recipients = models.JSONField(default=list)
    created_at = models.DateTimeField(default=clock.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["created_at"], condition=models.Q(sent_at=None),
                                name="notification_unsent")]
        permissions = [("support_resend", _("Can send an email again (support)"))]

    def __str__(self) -> str:
        return self.key
