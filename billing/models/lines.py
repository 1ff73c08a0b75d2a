"""What a quote line and an invoice line share: one priced item for a share of a period."""
from django.conf import settings
from django.db import models
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

    COPIED = ["kind", "price", "plan", "addon", "quantity", "unit_amount", "fraction", "amount",
              "period_start", "period_end"]

    class Meta:
        abstract = True
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.item} × {self.quantity} {self.amount}"

    @property
    def item(self):
        return self.plan or self.addon

    def copied_values(self) -> dict:
        """The line's own fields, to write the same line on another document."""
        return {name: getattr(self, name) for name in self.COPIED}
