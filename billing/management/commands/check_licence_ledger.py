"""Compare every subscription's quantities with its licence ledger; non-zero exit on a mismatch."""
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS

from billing.ledger_checks import ledger_mismatches
from billing.models import Subscription


class Command(BaseCommand):
    help = ("Check that each subscription's licences and storage units equal the sums of its "
            "licence ledger rows; print each subscription that differs.")

    def add_arguments(self, parser):
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS,
                            help="the database to check (default: %(default)s)")

    def handle(self, *args, **options):
        mismatches = ledger_mismatches(using=options["database"])
        for mismatch in mismatches:
            self.stdout.write(str(mismatch))
        if mismatches:
            raise CommandError(f"{len(mismatches)} subscription(s) differ from the licence "
                               "ledger.")
        count = Subscription.objects.using(options["database"]).count()
        self.stdout.write(self.style.SUCCESS(f"ledger matches {count} subscriptions"))
