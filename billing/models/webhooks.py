"""Processor events as delivered: stored raw before anything is done, unique on the event id."""
from django.db import models
from django.utils.translation import gettext_lazy as _

from store import clock


class WebhookEvent(models.Model):
    """One event from the processor (billing.webhooks). A delivery is stored first and processed
    after; a repeated delivery of a processed event changes nothing. An event not processed yet
    (deferred, failed) is processed when the processor delivers it again."""

    class Outcome(models.TextChoices):
        APPLIED = "applied", _("Applied")  # it changed a payment or a card
        UNCHANGED = "unchanged", _("Nothing to change")  # already so, or not Kanri's
        IGNORED = "ignored", _("Ignored")  # a type Kanri does not act on
        DEFERRED = "deferred", _("Deferred")  # not yet decidable; settled later
        FAILED = "failed", _("Failed")  # an error while processing

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100)
    payload = models.JSONField(help_text=_("The event as delivered."))
    received_at = models.DateTimeField(default=clock.now)
    processed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices, blank=True)
    detail = models.TextField(blank=True, help_text=_("What processing found, or the error."))

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"{self.event_id} {self.type} {self.outcome or 'new'}"
