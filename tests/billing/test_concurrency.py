"""Twenty simultaneous Pay submissions of one quote (real PostgreSQL, real localstripe)."""
import threading

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from billing.models import Invoice, Payment, Subscription, SubscriptionStatusChange
from billing.services.quotes import Change, quote_create
from store.models import Plan
from tests.accounts.factories import AdminFactory
from tests.billing.helpers import card_on_file, processor_charges

pytestmark = pytest.mark.usefixtures("payment_sandbox")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_pays_charge_once_and_all_land_on_one_invoice(catalog):
    admin = AdminFactory()
    card_on_file(organisation=admin.organisation, acting_user=admin)
    quote = quote_create(organisation=admin.organisation, acting_user=admin,
                         change=Change(Plan.objects.get(code="professional"), "yearly", 3, 0, 0))
    url = reverse("billing:pay", args=[quote.pk])
    barrier, responses = threading.Barrier(20), []

    def pay():
        client = Client()
        client.force_login(admin)
        barrier.wait()
        try:
            response = client.post(url)
            responses.append((response.status_code, response.get("Location")))
        finally:
            connection.close()

    threads = [threading.Thread(target=pay) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    invoice = Invoice.objects.get()
    assert responses == [(302, reverse("billing:invoice", args=[invoice.number]))] * 20
    sub = Subscription.objects.get(organisation=admin.organisation)
    assert len(processor_charges(sub.processor_customer_id)) == 1
    assert Payment.objects.count() == 1
    assert SubscriptionStatusChange.objects.filter(subscription=sub).count() == 1
    assert sub.plan.code == "professional"
