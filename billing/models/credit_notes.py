"""Credit notes: numbered documents that give money back to an account, kept for good.

A credit note never changes the invoice it comes from (finalized invoices never change): it
points at it. Like an invoice it prints the names it was issued with, and its foreign keys are
PROTECT, so it never disappears in a cascade.
"""
from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from accounts.models import Organisation
from billing.models.invoices import Invoice
from billing.models.lines import money_field as _money
from store import clock
from store.money import breakdown_from_json


class CreditNote(models.Model):
    class Kind(models.TextChoices):
        # The unused time a downgrade or removed licences gave back, as account credit.
        DOWNGRADE = "downgrade", _("Unused time after a downgrade")
        # Money support staff gave back to the card a payment was taken from.
        REFUND = "refund", _("Refund of a card payment")

    number = models.CharField(max_length=20, unique=True)
    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT,
                                     related_name="credit_notes")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credit_notes")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # A refund: the card payment it gives back, and the processor's Refund.
    payment = models.ForeignKey("billing.Payment", null=True, blank=True,
                                on_delete=models.PROTECT, related_name="credit_notes")
    processor_refund_id = models.CharField(max_length=64, blank=True)
    currency = models.CharField(max_length=3, choices=settings.CURRENCY_CHOICES)
    # What is credited, as positive amounts: before tax, per tax rate ([{"rate", "subtotal",
    # "tax"}] as exact decimal strings), the tax, and the total credited (tax included).
    subtotal = _money()
    tax_breakdown = models.JSONField(default=list)
    tax = _money()
    total = _money()
    # Snapshots, as on the invoice: who sold, who bought, the qualified-invoice number.
    seller_name = models.CharField(max_length=200)
    buyer_name = models.CharField(max_length=200)
    issuer_registration = models.CharField(max_length=14, blank=True)
    issued_at = models.DateTimeField(default=clock.now)

    class Meta:
        ordering = ["-issued_at", "-id"]
        constraints = [
            # A downgrade's invoice credits once; refunds may come more than once.
            models.UniqueConstraint(fields=["invoice"], condition=models.Q(kind="downgrade"),
                                    name="one_downgrade_credit_note_per_invoice"),
            # A processor Refund is recorded once, however often its answer is recorded.
            models.UniqueConstraint(fields=["processor_refund_id"],
                                    condition=~models.Q(processor_refund_id=""),
                                    name="one_credit_note_per_processor_refund"),
        ]

    def __str__(self) -> str:
        return self.number

    @property
    def taxes(self) -> list[dict]:
        return breakdown_from_json(self.tax_breakdown, self.currency)
