"""The catalog: plans with their limits, add-ons, and versioned prices per cycle and currency."""
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _
from djmoney.models.fields import MoneyField

from store import clock
from store.money import is_whole_minor_units


class BillingCycle(models.TextChoices):
    MONTHLY = "monthly", _("Monthly")
    YEARLY = "yearly", _("Yearly")


CYCLE_MONTHS = {BillingCycle.MONTHLY: 1, BillingCycle.YEARLY: 12}


class LocalisedName(models.Model):
    """A catalog row named in both languages; `display_name` picks the active one."""

    name = models.CharField(_("name (English)"), max_length=100)
    name_ja = models.CharField(_("name (Japanese)"), max_length=100)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.name

    @property
    def display_name(self) -> str:
        return self.name_ja if (get_language() or "").startswith("ja") else self.name


class Plan(LocalisedName):
    code = models.SlugField(unique=True)
    rank = models.PositiveSmallIntegerField(
        unique=True, help_text=_("Order from cheapest to richest; decides upgrade or downgrade.")
    )
    is_public = models.BooleanField(default=True)
    max_users = models.PositiveIntegerField(
        null=True, blank=True, help_text=_("Regular user licences allowed; empty for no limit.")
    )
    max_records = models.PositiveIntegerField(
        null=True, blank=True, help_text=_("Records allowed per organisation; empty for no limit.")
    )
    storage_per_org_mb = models.PositiveIntegerField(default=0)
    storage_per_licence_mb = models.PositiveIntegerField(default=0)
    features = models.JSONField(default=list, blank=True, help_text=_("Feature flag codes."))

    class Meta:
        ordering = ["rank"]

    @property
    def is_free(self) -> bool:
        return self.code == "free"


class AddOn(LocalisedName):
    code = models.SlugField(unique=True)
    rank = models.PositiveSmallIntegerField(default=0)
    unit_name = models.CharField(max_length=50, help_text=_("What one unit is, e.g. '1 GB'."))
    unit_name_ja = models.CharField(max_length=50)
    storage_mb_per_unit = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["rank", "code"]
        verbose_name = _("add-on")

    @property
    def display_unit(self) -> str:
        return self.unit_name_ja if (get_language() or "").startswith("ja") else self.unit_name


class Price(models.Model):
    """One price of a plan (per user) or an add-on (per unit) for one cycle and currency.

    Prices are versions: a row is never edited once saved. A new price is a new row with a later
    `effective_from`; the current price is the newest row already in effect.
    """

    plan = models.ForeignKey(Plan, null=True, blank=True, on_delete=models.PROTECT,
                             related_name="prices")
    addon = models.ForeignKey(AddOn, null=True, blank=True, on_delete=models.PROTECT,
                              related_name="prices")
    cycle = models.CharField(max_length=10, choices=BillingCycle.choices)
    amount = MoneyField(max_digits=14, decimal_places=2, currency_choices=settings.CURRENCY_CHOICES,
                        help_text=_("Per user (plans) or per unit (add-ons), per billing cycle."))
    effective_from = models.DateTimeField(default=clock.now)
    created_at = models.DateTimeField(default=clock.now, editable=False)

    class Meta:
        ordering = ["plan__rank", "addon__rank", "cycle", "amount_currency", "-effective_from"]
        constraints = [
            models.CheckConstraint(
                condition=Q(plan__isnull=False, addon__isnull=True)
                | Q(plan__isnull=True, addon__isnull=False),
                name="price_for_plan_xor_addon",
            ),
            models.CheckConstraint(condition=Q(amount__gte=0), name="price_not_negative"),
            models.UniqueConstraint(
                fields=["plan", "cycle", "amount_currency", "effective_from"],
                condition=Q(plan__isnull=False), name="one_plan_price_per_version",
            ),
            models.UniqueConstraint(
                fields=["addon", "cycle", "amount_currency", "effective_from"],
                condition=Q(addon__isnull=False), name="one_addon_price_per_version",
            ),
        ]

    def __str__(self) -> str:
        item = self.plan or self.addon
        return f"{item} {self.get_cycle_display()} {self.amount}"

    def clean(self):
        if (self.plan_id is None) == (self.addon_id is None):
            raise ValidationError(_("A price belongs to exactly one plan or one add-on."))
        if self.amount is not None and not is_whole_minor_units(self.amount):
            raise ValidationError(
                {"amount": _("%(currency)s prices cannot have a fraction of the minor unit.")
                 % {"currency": self.amount.currency}}
            )
