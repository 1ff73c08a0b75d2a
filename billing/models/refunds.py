"""Refund attempts: every refund at the processor has exactly one, committed before the call
(SPEC "The books" 1, the three-step rule as for charges: billing.services.refunds)."""
from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from billing.models.lines import money_field
from billing.models.payments import Payment
from store import clock


class Refund(models.Model):
    """One refund of a card payment: saved `pending` with its key before the processor is
    asked, `succeeded` with the processor's Refund id once recorded, `failed` when the processor
    refused it or is known never to have made it. At most one is pending per payment; while it
    is, its lease says which request is asking the processor, and once the lease runs out the
    settle job asks the processor for that payment's refunds and records what it finds."""

    class State(models.TextChoices):
        PENDING = "pending", _("Being confirmed")
        SUCCEEDED = "succeeded", _("Refunded")
        FAILED = "failed", _("Not refunded")

    class Purpose(models.TextChoices):
        SUPPORT = "support", _("Refunded by support")
        UNAPPLIED = "unapplied", _("Charge that could not be applied")
        PROCESSOR = "processor", _("Refunded at the payment service")

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    amount = money_field()
    idempotency_key = models.CharField(max_length=120, unique=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    purpose = models.CharField(max_length=10, choices=Purpose.choices)
    processor_refund_id = models.CharField(max_length=64, blank=True)
    # Support's refund: the one-time confirmation of its review, why, and who.
    confirmation = models.CharField(max_length=80, blank=True)
    reason = models.CharField(max_length=300, blank=True)
    staff = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.PROTECT, related_name="+")
    failure_reason = models.CharField(max_length=300, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=clock.now)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["payment"], condition=models.Q(state="pending"),
                                    name="one_open_refund_per_payment"),
            models.UniqueConstraint(fields=["processor_refund_id"],
                                    condition=~models.Q(processor_refund_id=""),
                                    name="one_refund_row_per_processor_refund"),
        ]

    def __str__(self) -> str:
        return f"{self.idempotency_key} {self.amount} {self.state}"

    @property
    def is_open(self) -> bool:
        return self.state == self.State.PENDING
