"""A quote: the reviewed price of one change, with an id and an expiry. Paying it applies it."""
import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _
from djmoney.models.fields import MoneyField

from accounts.models import Organisation
from store import clock
from store.models import AddOn, BillingCycle, Plan, Price


def _money(**kwargs):
    return MoneyField(max_digits=14, decimal_places=2,
                      currency_choices=settings.CURRENCY_CHOICES, **kwargs)


class LineKind(models.TextChoices):
    CHARGE = "charge", _("Charge")
    CREDIT = "credit", _("Credit for unused time")


class Quote(models.Model):
    class State(models.TextChoices):
        OPEN = "open", _("Open")
        PAID = "paid", _("Paid")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE,
                                     related_name="quotes")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True,
                                   on_delete=models.SET_NULL, related_name="+")
    subscription_version = models.PositiveIntegerField()
    from_plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+")
    from_cycle = models.CharField(max_length=10, choices=BillingCycle.choices)
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+")
    cycle = models.CharField(max_length=10, choices=BillingCycle.choices)
    regular_licences = models.PositiveIntegerField()
    team_licences = models.PositiveIntegerField()
    storage_units = models.PositiveIntegerField()
    currency = models.CharField(max_length=3, choices=settings.CURRENCY_CHOICES)
    period_start = models.DateTimeField(null=True)
    period_end = models.DateTimeField(null=True)
    subtotal = _money()
    tax = _money()
    total = _money(help_text=_("Charges less credits, tax included; negative for a downgrade."))
    credit_applied = _money()
    amount_due = _money()
    credit_to_account = _money()
    next_renewal_amount = _money(null=True)
    warnings = models.JSONField(default=list, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.OPEN)
    created_at = models.DateTimeField(default=clock.now)
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"quote {self.id}"

    @property
    def is_expired(self) -> bool:
        return self.state == self.State.OPEN and clock.now() >= self.expires_at

    @property
    def is_upgrade(self) -> bool:
        return self.plan.rank > self.from_plan.rank


class QuoteLine(models.Model):
    quote = models.ForeignKey(Quote, on_delete=models.CASCADE, related_name="lines")
    kind = models.CharField(max_length=10, choices=LineKind.choices)
    price = models.ForeignKey(Price, on_delete=models.PROTECT, related_name="+")
    plan = models.ForeignKey(Plan, null=True, on_delete=models.PROTECT, related_name="+")
    addon = models.ForeignKey(AddOn, null=True, on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField()
    unit_amount = _money()
    fraction = models.DecimalField(max_digits=14, decimal_places=12,
                                   help_text=_("Share of the period charged or credited."))
    amount = _money()
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.item} × {self.quantity} {self.amount}"

    @property
    def item(self):
        return self.plan or self.addon
