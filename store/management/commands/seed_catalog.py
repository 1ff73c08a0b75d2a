"""Create or refresh the shipped catalog (idempotent; never touches existing prices)."""
from django.core.management.base import BaseCommand
from django.db import transaction

from store.catalog_seed import seed_catalog
from store.models import AddOn, Plan, Price


class Command(BaseCommand):
    help = "Create or refresh the shipped plans, add-ons and prices (idempotent)."

    @transaction.atomic
    def handle(self, *args, **options):
        added = seed_catalog(Plan, AddOn, Price)
        self.stdout.write(f"Catalog ready: {Plan.objects.count()} plans, "
                          f"{AddOn.objects.count()} add-ons, {added} prices added.")
