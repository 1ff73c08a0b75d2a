"""Invoices (immutable once finalized), their lines, and the account-credit ledger."""
from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _
from djmoney.models.fields import MoneyField

from accounts.models import Organisation
from billing.models.quotes import LineKind, Quote
from billing.models.subscriptions import Subscription
from store import clock
from store.models import AddOn, Plan, Price


def _money(**kwargs):
    return MoneyField(max_digits=14, decimal_places=2,
                      currency_choices=settings.CURRENCY_CHOICES, **kwargs)


class InvoiceSequence(models.Model):
    """The last invoice number handed out; locked while the next one is taken (gapless)."""

    name = models.CharField(max_length=20, unique=True)
    last = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} {self.last}"


class Invoice(models.Model):
    class State(models.TextChoices):
        PAID = "paid", _("Paid")

    number = models.CharField(max_length=20, unique=True)
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE,
                                     related_name="invoices")
    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE,
                                     related_name="invoices")
    quote = models.OneToOneField(Quote, null=True, on_delete=models.SET_NULL,
                                 related_name="invoice")
    state = models.CharField(max_length=10, choices=State.choices)
    currency = models.CharField(max_length=3, choices=settings.CURRENCY_CHOICES)
    subtotal = _money()
    tax_rate = models.DecimalField(max_digits=5, decimal_places=4)
    tax = _money()
    total = _money()
    credit_applied = _money()
    amount_paid = _money()
    credit_to_account = _money()
    issuer_registration = models.CharField(max_length=14, blank=True)
    issued_at = models.DateTimeField(default=clock.now)

    class Meta:
        ordering = ["-issued_at", "-id"]

    def __str__(self) -> str:
        return self.number


class InvoiceLine(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    kind = models.CharField(max_length=10, choices=LineKind.choices)
    price = models.ForeignKey(Price, on_delete=models.PROTECT, related_name="+")
    plan = models.ForeignKey(Plan, null=True, on_delete=models.PROTECT, related_name="+")
    addon = models.ForeignKey(AddOn, null=True, on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField()
    unit_amount = _money()
    fraction = models.DecimalField(max_digits=14, decimal_places=12)
    amount = _money()
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.invoice_id}: {self.item} × {self.quantity} {self.amount}"

    @property
    def item(self):
        return self.plan or self.addon


class CreditEntry(models.Model):
    """Append-only account-credit ledger: + a credit note for unused time, − credit spent."""

    class Kind(models.TextChoices):
        CREDIT_NOTE = "credit_note", _("Credit note for unused time")
        APPLIED = "applied", _("Applied to an invoice")

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE,
                                     related_name="credit_entries")
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="credit_entries")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    amount = _money()
    created_at = models.DateTimeField(default=clock.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.amount}"
