"""Start Flower (the Celery monitor) only behind authentication.

`FLOWER_BASIC_AUTH` ("user:password", several separated by commas) is required when DEBUG is off:
without it this refuses to start, so the task list and its arguments are never open to anyone.
In local runs without it, Flower listens on 127.0.0.1 only."""
import os
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Start Flower behind basic authentication (required when DEBUG is off)."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("FLOWER_PORT", 5555)))
        parser.add_argument("--dry-run", action="store_true",
                            help="print the command instead of starting Flower")

    def handle(self, *args, **options):
        auth = settings.FLOWER_BASIC_AUTH
        if auth and not all(":" in pair and pair.split(":", 1)[1] for pair in auth.split(",")):
            raise CommandError("FLOWER_BASIC_AUTH must be user:password pairs separated by "
                               "commas.")
        if not auth and not settings.DEBUG:
            raise CommandError("FLOWER_BASIC_AUTH must be set when DEBUG is off: Flower shows "
                               "every task and its arguments. Set it to user:password.")
        argv = [sys.executable, "-m", "celery", "-A", "store", "flower",
                f"--port={options['port']}"]
        argv.append(f"--basic-auth={auth}" if auth else "--address=127.0.0.1")
        if options["dry_run"]:
            shown = [part if not part.startswith("--basic-auth=") else "--basic-auth=***"
                     for part in argv]
            self.stdout.write(" ".join(shown[1:]))
            return
        os.execv(sys.executable, argv)
