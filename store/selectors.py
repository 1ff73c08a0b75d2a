"""Reads of the catalog: current prices per cycle and currency."""
from dataclasses import dataclass

from django.db.models import Prefetch

from store import clock
from store.models import CYCLE_MONTHS, AddOn, BillingCycle, Plan, Price
from store.money import per_month


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


def _priced(items, *, attr: str) -> list[PricedItem]:
    return [PricedItem(item, next(iter(getattr(item, attr)), None)) for item in items]


def catalog_priced(*, currency: str, cycle: str) -> dict[str, list[PricedItem]]:
    """Public plans and all add-ons, each with its current price (newest version in effect).

    Two queries for plans and prices, two for add-ons and theirs, whatever the catalog's size.
    """
    if cycle not in BillingCycle.values:
        cycle = BillingCycle.YEARLY
    prices = _current_prices(currency=currency, cycle=cycle)
    plans = Plan.objects.filter(is_public=True).prefetch_related(
        Prefetch("prices", queryset=prices, to_attr="current_prices"))
    addons = AddOn.objects.prefetch_related(
        Prefetch("prices", queryset=prices, to_attr="current_prices"))
    return {"plans": _priced(plans, attr="current_prices"),
            "addons": _priced(addons, attr="current_prices")}
