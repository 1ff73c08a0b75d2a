"""The licence and add-on ledger: one append-only row per change of a purchased quantity."""
from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from accounts.models import ActorKind, Organisation
from billing.models.invoices import Invoice
from billing.models.quotes import Quote
from billing.models.subscriptions import Subscription
from store import clock


class LedgerItem(models.TextChoices):
    REGULAR = "regular", _("Regular user licences")
    TEAM = "team", _("Team user licences")
    STORAGE = "storage", _("Extra storage (GB)")


# The Subscription field each item counts.
ITEM_FIELDS: dict[str, str] = {
    LedgerItem.REGULAR: "regular_licences",
    LedgerItem.TEAM: "team_licences",
    LedgerItem.STORAGE: "storage_units",
}


class LedgerIsAppendOnly(Exception):
    """Raised by any attempt to change or remove a ledger row."""


class LedgerEntryQuerySet(models.QuerySet):
    """Rows are written once: a queryset update or delete would rewrite history."""

    def update(self, **kwargs):
        raise LedgerIsAppendOnly("Licence ledger rows are never updated.")

    def delete(self):
        raise LedgerIsAppendOnly("Licence ledger rows are never deleted.")


class LicenceLedgerEntry(models.Model):
    """A subscription's quantity of one item changed by `delta` to `quantity_after`. The
    subscription's current quantities always equal the sums of its rows' deltas per item
    (billing.ledger_checks verifies it). Rows are written only by billing.services.ledger."""

    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="+")
    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT,
                                     related_name="ledger")
    item = models.CharField(max_length=10, choices=LedgerItem.choices)
    delta = models.IntegerField()
    quantity_after = models.PositiveIntegerField()
    # SET_NULL, not PROTECT: closing an account deletes its people (billing.services.closure);
    # actor_kind keeps what kind of actor it was.
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="+")
    actor_kind = models.CharField(max_length=10, choices=ActorKind.choices)
    quote = models.ForeignKey(Quote, null=True, blank=True, on_delete=models.PROTECT,
                              related_name="+")
    invoice = models.ForeignKey(Invoice, null=True, blank=True, on_delete=models.PROTECT,
                                related_name="+")
    reason = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=clock.now)

    objects = LedgerEntryQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name = _("licence ledger entry")
        verbose_name_plural = _("licence ledger")
        indexes = [models.Index(fields=["subscription", "item"], name="ledger_sub_item")]
        constraints = [
            # A row records a change: nothing changed, no row.
            models.CheckConstraint(condition=~models.Q(delta=0), name="ledger_delta_not_zero"),
        ]

    def __str__(self) -> str:
        return f"{self.get_item_display()} {self.delta:+d} → {self.quantity_after}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise LedgerIsAppendOnly("Licence ledger rows are never updated.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise LedgerIsAppendOnly("Licence ledger rows are never deleted.")
