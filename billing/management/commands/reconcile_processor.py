"""Compare the processor's charges and refunds with Kanri's card payments (billing.reconcile);
non-zero exit naming each difference."""
import datetime as dt

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from billing import gateway
from billing.reconcile import processor_differences


def _date(text: str) -> dt.datetime:
    try:
        day = dt.date.fromisoformat(text)
    except ValueError as error:
        raise CommandError(f"--since wants a date as YYYY-MM-DD, not {text!r}.") from error
    return dt.datetime.combine(day, dt.time(), tzinfo=timezone.get_current_timezone())


class Command(BaseCommand):
    help = ("Ask the payment processor for each customer's charges and compare them with "
            "Kanri's card payments, both ways: amounts, refunds, charges either side lacks.")

    def add_arguments(self, parser):
        parser.add_argument("--since", type=_date,
                            help="only payments and charges from this date (YYYY-MM-DD, the "
                                 "site's time zone)")

    def handle(self, *args, **options):
        try:
            differences = processor_differences(since=options["since"])
        except gateway.GatewayError as error:
            raise CommandError(f"the payment processor did not answer: {error}") from error
        for difference in differences:
            self.stdout.write(str(difference))
        if differences:
            raise CommandError(f"{len(differences)} difference(s) between the processor and "
                               "Kanri.")
        self.stdout.write(self.style.SUCCESS("the processor's charges and Kanri's payments "
                                             "agree"))
