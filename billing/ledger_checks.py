"""Does every subscription hold what its licence ledger sums to? Read by
`manage.py check_licence_ledger` (exits 1 on a mismatch) and by a database system check
(`manage.py check --database default`, and `migrate`, which runs the database checks first). The
check is a warning, not an error: a mismatch must not block the release that fixes it."""
from dataclasses import dataclass

from django.core.checks import Tags, Warning, register
from django.db import connections
from django.db.models import F, Q, Sum
from django.db.models.functions import Coalesce

from billing.models import LicenceLedgerEntry, Subscription
from billing.models.ledger import ITEM_FIELDS


@dataclass(frozen=True)
class Mismatch:
    subscription_id: int
    organisation: str
    # item → (the quantity on the subscription, the ledger's sum), for the items that differ
    differences: dict[str, tuple[int, int]]

    def __str__(self) -> str:
        parts = "; ".join(f"{item} {held}, ledger {summed}"
                          for item, (held, summed) in self.differences.items())
        return f"subscription {self.subscription_id} ({self.organisation}): {parts}"


def ledger_mismatches(*, using: str = "default") -> list[Mismatch]:
    """The subscriptions whose quantities differ from their ledger sums, in one query (the
    ledger's rows summed per item, grouped by subscription, compared in HAVING)."""
    sums = {f"ledger_{item}": Coalesce(Sum("ledger__delta", filter=Q(ledger__item=item)), 0)
            for item in ITEM_FIELDS}
    differs = Q()
    for item, field in ITEM_FIELDS.items():
        differs |= ~Q(**{field: F(f"ledger_{item}")})
    rows = (Subscription.objects.using(using)
            .values("pk", "organisation__name", *ITEM_FIELDS.values())
            .annotate(**sums).filter(differs).order_by("pk"))
    return [Mismatch(row["pk"], row["organisation__name"],
                     {item: (row[field], row[f"ledger_{item}"])
                      for item, field in ITEM_FIELDS.items()
                      if row[field] != row[f"ledger_{item}"]})
            for row in rows]


@register(Tags.database)
def check_licence_ledger(app_configs=None, databases=None, **kwargs) -> list[Warning]:
    errors = []
    for alias in databases or ():
        tables = connections[alias].introspection.table_names()
        if LicenceLedgerEntry._meta.db_table not in tables:
            continue  # not migrated yet (migrate runs this check before it migrates)
        errors.extend(Warning(f"The licence ledger does not match {mismatch}.",
                            hint="Run `manage.py check_licence_ledger`; quantities must change "
                                 "only through billing's services, which write the ledger.",
                            obj=f"{alias}: subscription {mismatch.subscription_id}",
                            id="billing.W001")
                      for mismatch in ledger_mismatches(using=alias))
    return errors
