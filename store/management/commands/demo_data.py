"""Load a demo organisation for `make run` (idempotent) and print its login.

Without the payment sandbox the organisation stays on Free with the people its three licences
allow. With `--card` (the sandbox answering) it gets a test card, buys Standard monthly with five
regular and two team licences (a real charge at the sandbox), and then the rest of its people
join: the licence panel then reads "5 licences: 3 active users, 1 deactivated, 1 unused"."""
import os
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from accounts import services
from accounts.models import LicenceType, Organisation, Role, User
from billing import gateway
from billing.errors import BillingError
from billing.models import Status
from billing.pricing import Change
from billing.services.cards import card_add
from billing.services.licences import NoFreeLicence
from billing.services.payments import quote_pay
from billing.services.quotes import quote_create
from store.models import Plan

DEMO_ORG = "Demo Trading K.K."
DEMO_ADMIN = "admin@demo.kanri.test"
DEMO_PASSWORD = os.environ.get("KANRI_DEMO_PASSWORD", "kanri-demo-2026")
PEOPLE = [
    # email, name, role, licence type, active
    ("sato@demo.kanri.test", "佐藤 花子", Role.MEMBER, LicenceType.REGULAR, True),
    ("suzuki@demo.kanri.test", "鈴木 一郎", Role.MEMBER, LicenceType.REGULAR, True),
    ("tanaka@demo.kanri.test", "田中 美咲", Role.MEMBER, LicenceType.TEAM, True),
    ("ito@demo.kanri.test", "伊藤 健", Role.MEMBER, LicenceType.TEAM, True),
    ("watanabe@demo.kanri.test", "渡辺 直樹", Role.MEMBER, LicenceType.REGULAR, False),
]


class Command(BaseCommand):
    help = "Create the demo organisation, its admin and a few users (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--card", action="store_true",
                            help="also put a test card on file at the payment sandbox and buy "
                                 "the demo plan with it")
        parser.add_argument("--wait", type=float, default=30,
                            help="seconds to wait for the sandbox to answer (default 30)")

    def handle(self, *args, **options):  # each service is its own transaction
        admin = User.objects.filter(email=DEMO_ADMIN).first()
        if admin is None:
            admin = services.organisation_sign_up(org_name=DEMO_ORG, email=DEMO_ADMIN,
                                                  password=DEMO_PASSWORD, currency="JPY")
            admin.name = "山本 太郎"
            admin.save(update_fields=["name"])
        organisation: Organisation = admin.organisation
        if options["card"]:
            self._card(admin, wait=options["wait"])
            self._buy(admin)
        waiting = []
        for email, name, role, licence_type, active in PEOPLE:
            user = User.objects.filter(email=email).first()
            if user is None:
                try:
                    user = services.user_add(organisation=organisation, email=email, name=name,
                                             role=role, licence_type=licence_type,
                                             acting_user=admin)
                except NoFreeLicence:
                    waiting.append(email)
                    continue
                user.set_password(DEMO_PASSWORD)
                user.save(update_fields=["password"])
            if not active and user.is_active:
                services.user_deactivate(user=user, acting_user=admin, reason="demo data")
        if waiting:
            self.stdout.write(f"No free licence yet for {', '.join(waiting)}: they join when "
                              "`demo_data --card` buys the demo plan.")
        self.stdout.write(self.style.SUCCESS(
            f"Demo organisation '{organisation.name}': log in as {DEMO_ADMIN} / {DEMO_PASSWORD} "
            f"(members use the same password)."))

    def _buy(self, admin: User) -> None:
        """Standard monthly, 5 regular and 2 team licences, paid with the card; once."""
        organisation = admin.organisation
        if organisation.subscription.status != Status.FREE or organisation.invoices.exists():
            return
        quote = quote_create(organisation=organisation, acting_user=admin, change=Change(
            Plan.objects.get(code="standard"), "monthly", 5, 2, 0))
        result = quote_pay(organisation=organisation, quote_id=quote.pk, acting_user=admin)
        if result.invoice is None:
            raise BillingError(result.failure or "the demo plan could not be bought")
        self.stdout.write(f"Demo plan bought: Standard, invoice {result.invoice.number}.")

    def _card(self, admin: User, *, wait: float) -> None:
        """The sandbox starts empty every run: give the demo organisation a customer and a card
        there again unless the ones on file still exist."""
        subscription = admin.organisation.subscription
        deadline = time.monotonic() + wait
        while True:
            try:
                if subscription.processor_customer_id and gateway.customer_exists(
                        customer_id=subscription.processor_customer_id):
                    return
                subscription.processor_customer_id = ""
                subscription.save(update_fields=["processor_customer_id"])
                card_add(organisation=admin.organisation,
                         payment_method_id=gateway.test_card_create(), acting_user=admin,
                         make_default=True)
                self.stdout.write("Demo card on file: Visa •••• 4242.")
                return
            except (gateway.GatewayUnavailable, BillingError) as error:
                if time.monotonic() > deadline:
                    raise CommandError(
                        f"the payment sandbox at {settings.STRIPE_API_BASE} did not take the "
                        f"demo card within {wait:g} s: {error}") from error
                time.sleep(1)
