"""A quote: the reviewed price of one change, with an id and an expiry. Paying it applies it."""
import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from accounts.models import Organisation
from billing.models.lines import LineKind, PricedLine
from billing.models.lines import money_field as _money
from store import clock
from store.models import BillingCycle, Plan
from store.money import below_minimum_charge, breakdown_from_json, minimum_charge

__all__ = ["LineKind", "Quote", "QuoteLine"]


class Quote(models.Model):
    class State(models.TextChoices):
        OPEN = "open", _("Open")
        PAID = "paid", _("Paid")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT,
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
    # Set when the change starts a new period: renewals count from it (billing.periods).
    billing_anchor = models.DateTimeField(null=True)
    subtotal = _money()
    # The tax rule in force at review, frozen: paying later never re-reads the settings.
    tax_rate = models.DecimalField(max_digits=5, decimal_places=4)
    tax_rounding = models.CharField(max_length=20)
    tax_breakdown = models.JSONField(default=list)
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
    def taxes(self) -> list[dict]:
        return breakdown_from_json(self.tax_breakdown, self.currency)

    @property
    def below_minimum_charge(self) -> bool:
        """Its amount due is too small to charge, so it is waived (billing.services.charging)."""
        return below_minimum_charge(self.amount_due)

    @property
    def minimum_charge(self):
        return minimum_charge(self.currency)

    @property
    def is_upgrade(self) -> bool:
        return self.plan.rank > self.from_plan.rank


class QuoteLine(PricedLine):
    quote = models.ForeignKey(Quote, on_delete=models.PROTECT, related_name="lines")

    class Meta(PricedLine.Meta):
        pass
