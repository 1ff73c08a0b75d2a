"""Invoices (immutable once finalized, kept for good), their lines, and the credit ledger.

Every foreign key from these records is PROTECT: an invoice, a credit note or a payment can never
disappear in a cascade. Closing an account anonymises the organisation instead of deleting it.
Each invoice prints the names it was issued with (seller, buyer, items), not the live ones.
"""
from django.conf import settings
from django.db import models
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _

from accounts.models import Organisation
from billing.models.lines import PricedLine
from billing.models.lines import money_field as _money
from billing.models.quotes import Quote
from billing.models.subscriptions import Subscription
from store import clock
from store.models import BillingCycle
from store.money import breakdown_from_json, zero


class InvoiceSequence(models.Model):
    """The last invoice number handed out; locked while the next one is taken (gapless)."""

    name = models.CharField(max_length=20, unique=True)
    last = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} {self.last}"


class Invoice(models.Model):
    class State(models.TextChoices):
        OPEN = "open", _("Open")  # a renewal awaiting payment (dunning)
        PAID = "paid", _("Paid")
        VOID = "void", _("Void")  # never paid and no longer owed; kept, like every invoice

    class Kind(models.TextChoices):
        CHANGE = "change", _("Plan or licence change")
        RENEWAL = "renewal", _("Renewal")

    number = models.CharField(max_length=20, unique=True)
    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT,
                                     related_name="invoices")
    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT,
                                     related_name="invoices")
    quote = models.OneToOneField(Quote, null=True, on_delete=models.PROTECT,
                                 related_name="invoice")
    state = models.CharField(max_length=10, choices=State.choices)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.CHANGE)
    # The period a renewal pays for (a change's lines carry their own periods).
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    currency = models.CharField(max_length=3, choices=settings.CURRENCY_CHOICES)
    subtotal = _money()
    # The quote's tax rule, copied: the rate of its charges, the rounding, and per rate the
    # subtotal and tax ([{"rate", "subtotal", "tax"}] as exact decimal strings).
    tax_rate = models.DecimalField(max_digits=5, decimal_places=4)
    tax_rounding = models.CharField(max_length=20)
    tax_breakdown = models.JSONField(default=list)
    tax = _money()
    total = _money()
    credit_applied = _money()
    amount_paid = _money()
    credit_to_account = _money()
    # Snapshots: who sold, who bought, and the seller's qualified-invoice number, as issued.
    seller_name = models.CharField(max_length=200)
    buyer_name = models.CharField(max_length=200)
    issuer_registration = models.CharField(max_length=14, blank=True)
    plan_name = models.CharField(max_length=100)
    plan_name_ja = models.CharField(max_length=100)
    # The billing cycle it was issued for, and once paid by card, that payment's processor id:
    # what the payment history and the details page print, without going back to the lines
    # and the attempts.
    cycle = models.CharField(max_length=10, choices=BillingCycle.choices, blank=True)
    paid_by = models.CharField(max_length=64, blank=True)
    issued_at = models.DateTimeField(default=clock.now)

    class Meta:
        ordering = ["-issued_at", "-id"]

    def __str__(self) -> str:
        return self.number

    @property
    def taxes(self) -> list[dict]:
        return breakdown_from_json(self.tax_breakdown, self.currency)

    @property
    def amount_waived(self):
        """What a paid invoice did not collect because its amount due was below the processor's
        minimum charge (billing.services.charging): the total less credit used and paid."""
        nothing = zero(self.currency)
        if self.state != self.State.PAID:
            return nothing
        return max(self.total - self.credit_applied - self.amount_paid, nothing)

    @property
    def display_plan_name(self) -> str:
        """The plan as named when the invoice was issued, in the reader's language."""
        return self.plan_name_ja if (get_language() or "").startswith("ja") else self.plan_name


class InvoiceLine(PricedLine):
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="lines")

    class Meta(PricedLine.Meta):
        pass


class CreditEntry(models.Model):
    """Append-only account-credit ledger: + a credit note for unused time, + credit granted by
    support staff (no invoice: the audit row says who and why), − credit spent, + credit given
    back when the invoice that spent it is voided, − what is left when the account is deleted
    (credit is never paid out)."""

    class Kind(models.TextChoices):
        CREDIT_NOTE = "credit_note", _("Credit note for unused time")
        APPLIED = "applied", _("Applied to an invoice")
        GRANTED = "granted", _("Granted by Kanri support")
        RETURNED = "returned", _("Given back from a voided invoice")
        FORFEITED = "forfeited", _("Forfeited when the account was deleted")

    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT,
                                     related_name="credit_entries")
    invoice = models.ForeignKey(Invoice, null=True, blank=True, on_delete=models.PROTECT,
                                related_name="credit_entries")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    amount = _money()
    created_at = models.DateTimeField(default=clock.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.amount}"
