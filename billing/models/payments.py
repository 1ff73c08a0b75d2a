"""Cards on file (processor ids and display facts only) and payment attempts."""
from django.db import models
from django.utils.translation import gettext_lazy as _

from accounts.models import Organisation
from billing.models.invoices import Invoice
from billing.models.lines import money_field
from billing.models.quotes import Quote
from store import clock

BRANDS = {"visa": "Visa", "mastercard": "Mastercard", "amex": "American Express", "jcb": "JCB",
          "diners": "Diners Club", "discover": "Discover", "unionpay": "UnionPay"}


class PaymentMethod(models.Model):
    """A card as the processor describes it. The card number never reaches Kanri."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE,
                                     related_name="payment_methods")
    processor_id = models.CharField(max_length=64, unique=True)
    brand = models.CharField(max_length=20)
    last4 = models.CharField(max_length=4)
    exp_month = models.PositiveSmallIntegerField()
    exp_year = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(default=clock.now)

    def __str__(self) -> str:
        return f"{self.brand_label} •••• {self.last4} ({self.exp_month:02d}/{self.exp_year})"

    @property
    def brand_label(self) -> str:
        return BRANDS.get(self.brand, self.brand.title())


class Payment(models.Model):
    """One attempt to charge. Saved with its idempotency key before the processor is called."""

    class State(models.TextChoices):
        PENDING = "pending", _("Pending")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE,
                                     related_name="payments")
    quote = models.ForeignKey(Quote, null=True, on_delete=models.SET_NULL,
                              related_name="payments")
    invoice = models.ForeignKey(Invoice, null=True, on_delete=models.SET_NULL,
                                related_name="payments")
    idempotency_key = models.CharField(max_length=80, unique=True)
    processor_id = models.CharField(max_length=64, blank=True)
    amount = money_field()
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    card_brand = models.CharField(max_length=20, blank=True)
    card_last4 = models.CharField(max_length=4, blank=True)
    failure_reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=clock.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.idempotency_key} {self.amount} {self.state}"
