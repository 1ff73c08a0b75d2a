"""Check that the books balance (billing.books); non-zero exit naming what differs."""
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS

from billing.books import books_discrepancies
from billing.models import Invoice, Subscription


class Command(BaseCommand):
    help = ("Check the books: credit balances against the credit ledger, each invoice's credit, "
            "payments and voids, refunds against payments and their credit notes, active users "
            "against licences, quantities against the licence ledger. Prints what differs.")

    def add_arguments(self, parser):
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS,
                            help="the database to check (default: %(default)s)")

    def handle(self, *args, **options):
        using = options["database"]
        discrepancies = books_discrepancies(using=using)
        for discrepancy in discrepancies:
            self.stdout.write(str(discrepancy))
        if discrepancies:
            raise CommandError(f"{len(discrepancies)} thing(s) in the books do not balance.")
        self.stdout.write(self.style.SUCCESS(
            f"the books balance: {Subscription.objects.using(using).count()} subscriptions, "
            f"{Invoice.objects.using(using).count()} invoices"))
