"""Two admins of one organisation adding and removing licences and inviting users at once, 30
requests on real PostgreSQL and localstripe: the purchased counts equal the ledger's sums, every
charge and credit is one ledger row, active users never exceed licences, and a quote overtaken by
another change is refused rather than applied on top of it."""
import threading

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from accounts.models import LicenceType, User
from billing.ledger_checks import ledger_mismatches
from billing.models import Invoice, LicenceLedgerEntry, Payment, Subscription
from billing.pricing import Change
from billing.services.payments import quote_pay
from billing.services.quotes import quote_create
from store.models import Plan
from tests.accounts.factories import AdminFactory
from tests.billing.helpers import card_on_file, processor_charges

pytestmark = [pytest.mark.usefixtures("payment_sandbox"), pytest.mark.postgres,
              pytest.mark.django_db(transaction=True)]
REQUESTS = 30


def test_thirty_concurrent_licence_and_user_changes_keep_every_invariant():
    admin = AdminFactory(email="first@concurrent.test")
    second = AdminFactory(email="second@concurrent.test", organisation=admin.organisation)
    card_on_file(organisation=admin.organisation, acting_user=admin)
    bought = quote_create(organisation=admin.organisation, acting_user=admin, change=Change(
        Plan.objects.get(code="standard"), "monthly", 6, 0, 0))
    assert quote_pay(organisation=admin.organisation, quote_id=bought.pk,
                     acting_user=admin).invoice is not None

    start, outcomes = threading.Barrier(REQUESTS), []

    def act(number: int) -> None:
        client = Client()
        client.force_login(admin if number % 2 else second)
        try:
            start.wait()
            kind = ("add", "remove", "invite")[number % 3]
            if kind == "invite":
                response = client.post(reverse("accounts:user_add"), {
                    "email": f"person{number}@concurrent.test", "role": "member",
                    "licence_type": LicenceType.REGULAR})
                outcomes.append((kind, response.status_code))
                return
            url = reverse("billing:licences_add" if kind == "add" else "billing:licences_remove")
            response = client.post(url, {"regular": 1})
            if response.status_code != 302:
                outcomes.append((kind, response.status_code))
                return
            paid = client.post(response.url.rstrip("/") + "/pay/")
            outcomes.append((kind, paid.status_code))
        finally:
            connection.close()

    threads = [threading.Thread(target=act, args=(n,)) for n in range(REQUESTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(outcomes) == REQUESTS, outcomes

    subscription = Subscription.objects.get(organisation=admin.organisation)
    active = User.objects.filter(organisation=admin.organisation, is_active=True,
                                 licence_type=LicenceType.REGULAR).count()
    assert active <= subscription.regular_licences
    assert ledger_mismatches() == []
    # Every invoice that changed the licences is one ledger row with its sign, and nothing else
    # wrote one: the opening balance, the purchase, then exactly these.
    changes = Invoice.objects.filter(organisation=admin.organisation).exclude(pk=bought.invoice.pk)
    rows = LicenceLedgerEntry.objects.filter(subscription=subscription, item="regular")
    assert rows.count() == 2 + changes.count()
    for invoice in changes:
        row = rows.get(invoice=invoice)
        assert (row.delta > 0) == (invoice.total.amount > 0)
    # Every card charge at the processor is one succeeded payment of one of those invoices.
    charged = [i for i in processor_charges(subscription.processor_customer_id)
               if i.status == "succeeded"]
    assert len(charged) == Payment.objects.filter(
        organisation=admin.organisation, state="succeeded", paid_with="card").count()
    # Some changes landed; the others were refused (stale, or over the bounds), never stacked.
    assert 0 < changes.count() <= sum(1 for kind, _ in outcomes if kind != "invite")
    assert all(status in (200, 302, 400, 409) for _, status in outcomes), outcomes
