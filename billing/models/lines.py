"""What a quote line and an invoice line share: one priced item for a share of a period."""
from django.conf import settings
from django.db import models
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _
from djmoney.models.fields import MoneyField

from store.models import AddOn, Plan, Price


def money_field(**kwargs) -> MoneyField:
    return MoneyField(max_digits=14, decimal_places=2,
                      currency_choices=settings.CURRENCY_CHOICES, **kwargs)


class LineKind(models.TextChoices):
    CHARGE = "charge", _("Charge")
    CREDIT = "credit", _("Credit for unused time")


class PricedLine(models.Model):
    kind = models.CharField(max_length=10, choices=LineKind.choices)
    price = models.ForeignKey(Price, on_delete=models.PROTECT, related_name="+")
    plan = models.ForeignKey(Plan, null=True, on_delete=models.PROTECT, related_name="+")
    addon = models.ForeignKey(AddOn, null=True, on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField()
    unit_amount = money_field()
    fraction = models.DecimalField(max_digits=14, decimal_places=12,
                                   help_text=_("Share of the period charged or credited."))
    amount = money_field()
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    tax_rate = models.DecimalField(max_digits=5, decimal_places=4,
                                   help_text=_("Fixed when the line is priced; a credit line "
                                               "takes the rate of the line it credits."))
    # The item's names as printed when the line was made (the catalog may rename it later).
    item_name = models.CharField(max_length=100)
    item_name_ja = models.CharField(max_length=100)
    # For a credit line: the paid invoice line whose unused time it gives back.
    credits_line = models.ForeignKey("billing.InvoiceLine", null=True, blank=True,
                                     on_delete=models.PROTECT, related_name="+")

    COPIED = ["kind", "price", "plan", "addon", "quantity", "unit_amount", "fraction", "amount",
              "period_start", "period_end", "tax_rate", "item_name", "item_name_ja",
              "credits_line"]

    class Meta:
        abstract = True
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.item_name} × {self.quantity} {self.amount}"

    @property
    def item(self):
        return self.plan or self.addon

    @property
    def display_name(self) -> str:
        """The name printed when the line was made, in the reader's language."""
        return self.item_name_ja if (get_language() or "").startswith("ja") else self.item_name

    def copied_values(self) -> dict:
        """The line's own fields, to write the same line on another document."""
        return {name: getattr(self, name) for name in self.COPIED}
