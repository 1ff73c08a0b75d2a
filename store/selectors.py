"""Reads of the catalog: current prices per cycle and currency."""
from dataclasses import dataclass

from store import clock
from store.models import CYCLE_MONTHS, AddOn, BillingCycle, Plan, Price
from store.money import per_month

# Prices are versions: a saved row never changes and none is deleted (store.models.Price; the
# admin makes saved prices read-only and has no delete). So a process keeps every price row it
# has read, by id, and a page showing a subscription's prices reads them without joins.
_PRICE_FIELDS = [field.attname for field in Price._meta.concrete_fields]
_price_rows: dict[int, tuple] = {}


@dataclass(frozen=True)
class PricedItem:
    item: Plan | AddOn
    price: Price | None

    @property
    def per_month(self):
        """The price spread over the cycle's months (yearly shown as a monthly figure)."""
        if self.price is None:
            return None
        return per_month(self.price.amount, CYCLE_MONTHS[self.price.cycle])


def _current_prices(*, currency: str, cycle: str):
    return Price.objects.filter(amount_currency=currency, cycle=cycle,
                                effective_from__lte=clock.now()).order_by("-effective_from")


def catalog_priced(*, currency: str, cycle: str) -> dict[str, list[PricedItem]]:
    """Public plans and all add-ons, each with its current price (newest version in effect).

    Three queries (plans, add-ons, the prices in effect), whatever the catalog's size.
    """
    if cycle not in BillingCycle.values:
        cycle = BillingCycle.YEARLY
    current: dict[tuple[str, int], Price] = {}
    for price in _current_prices(currency=currency, cycle=cycle):  # newest first
        current.setdefault(("plan", price.plan_id) if price.plan_id else ("addon", price.addon_id),
                           price)
    return {"plans": [PricedItem(plan, current.get(("plan", plan.pk)))
                      for plan in Plan.objects.filter(is_public=True)],
            "addons": [PricedItem(addon, current.get(("addon", addon.pk)))
                       for addon in AddOn.objects.all()]}


def prices_by_id(ids) -> dict[int, Price]:
    """The prices with these ids (None skipped), as new instances: rows this process read
    before cost no query, the others one query together."""
    wanted = {pk for pk in ids if pk is not None}
    if missing := wanted - _price_rows.keys():
        _price_rows.update((row[0], row) for row in
                           Price.objects.filter(pk__in=missing).values_list(*_PRICE_FIELDS))
    return {pk: Price.from_db("default", _PRICE_FIELDS, _price_rows[pk]) for pk in wanted}


def forget_prices() -> None:
    """Drop the kept rows: only for tests, where a rolled-back price's id can come back."""
    _price_rows.clear()
