"""The store's part of a test's world: the shipped catalog."""
from store.catalog_seed import PRICES, seed_catalog
from store.models import AddOn, Plan, Price

# Two cycles per item and currency; staff-added price versions only ever add to these.
SHIPPED_PRICES = sum(2 * len(by_currency) for by_currency in PRICES.values())


def ensure_shipped_catalog() -> None:
    """Seed the shipped catalog only where it is missing. The data migration put it in the test
    database, so this is usually one query; a transactional test flushes every table, and the
    next test that needs the catalog seeds it again here."""
    if Price.objects.count() < SHIPPED_PRICES:
        seed_catalog(Plan, AddOn, Price)
