"""Register Kanri's webhook endpoint with the local payment sandbox. `make run` runs it once the
sandbox is up: localstripe keeps endpoints in memory, so each fresh sandbox needs it again."""
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from billing import gateway
from billing.services.webhooks import HANDLERS


class Command(BaseCommand):
    help = ("Tell the payment sandbox (localstripe) to deliver the events Kanri handles to this "
            "site, signed with STRIPE_WEBHOOK_SECRET. With Stripe, make the endpoint in its "
            "dashboard instead.")

    def add_arguments(self, parser):
        parser.add_argument("--url", help="where to deliver (default: KANRI_BASE_URL + the "
                                          "webhook path)")
        parser.add_argument("--wait", type=float, default=30,
                            help="seconds to wait for the sandbox to answer (default 30)")

    def handle(self, *args, **options):
        url = options["url"] or (settings.KANRI_BASE_URL.rstrip("/")
                                 + reverse("stripe_webhook"))
        deadline = time.monotonic() + options["wait"]
        while True:
            try:
                gateway.sandbox_webhook_register(endpoint_id="kanri", url=url,
                                                 events=sorted(HANDLERS))
                break
            except gateway.GatewayUnavailable:
                if time.monotonic() > deadline:
                    raise CommandError(f"the sandbox at {settings.STRIPE_API_BASE} did not "
                                       "answer") from None
                time.sleep(1)
            except gateway.GatewayError as error:
                raise CommandError(str(error)) from error
        self.stdout.write(f"Sandbox webhooks ({', '.join(sorted(HANDLERS))}) go to {url}.")
