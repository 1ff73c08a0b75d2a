"""Run every subscription-life sweep once, now, and print what each did."""
from django.core.management.base import BaseCommand, CommandError

from billing.services.lifecycle import SWEEPS


class Command(BaseCommand):
    help = "Run the billing sweeps (trials, renewals, retries, locks, moves to Free) once, now."

    def add_arguments(self, parser):
        parser.add_argument("sweeps", nargs="*", metavar="SWEEP",
                            help=f"only these ({', '.join(SWEEPS)}); all by default")

    def handle(self, *args, **options):
        unknown = set(options["sweeps"]) - set(SWEEPS)
        if unknown:
            raise CommandError(f"no such sweep: {', '.join(sorted(unknown))}")
        for name in options["sweeps"] or SWEEPS:
            result = SWEEPS[name]()
            done = ", ".join(f"{key} {value}" for key, value in sorted(result.items())) or "nothing"
            self.stdout.write(f"{name}: {done}")
