"""An amount due below the processor's minimum charge (¥50, $0.50) is waived: the change or the
renewal is applied with nothing charged, the invoice shows the waived amount, and the processor
never hears of it (counted at localstripe)."""
import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from djmoney.money import Money

from accounts.models import AuditEvent
from billing.models import Invoice, Payment, Quote, Subscription
from billing.pricing import Change
from billing.selectors import renewal_amount
from billing.services import lifecycle
from billing.services.payments import quote_pay
from billing.services.quotes import quote_create
from store import clock
from store.models import Plan
from store.money import below_minimum_charge
from tests.accounts.factories import AdminFactory
from tests.billing.helpers import card_on_file, processor_charges

pytestmark = pytest.mark.usefixtures("payment_sandbox")
CONFIGURE = {"cycle": "monthly", "regular_licences": "3", "team_licences": "0",
             "storage_units": "0"}


@pytest.mark.parametrize("amount, below", [
    (Money(0, "JPY"), False), (Money(1, "JPY"), True), (Money(49, "JPY"), True),
    (Money(50, "JPY"), False), (Money("0.49", "USD"), True), (Money("0.50", "USD"), False),
])
def test_the_minimum_is_per_currency(amount, below):
    assert below_minimum_charge(amount) is below


@pytest.fixture
def admin(db):
    admin = AdminFactory()
    card_on_file(organisation=admin.organisation, acting_user=admin)
    return admin


def _sub(admin) -> Subscription:
    return Subscription.objects.get(organisation=admin.organisation)


def _quote_due(client, admin, due: int) -> Quote:
    """A Standard quote whose amount due is `due` yen: account credit pays the rest."""
    configure = reverse("billing:configure", args=["standard"])
    first = Quote.objects.get(pk=client.post(configure, CONFIGURE).url.rstrip("/").split("/")[-1])
    Subscription.objects.filter(organisation=admin.organisation).update(
        credit_balance=first.total - Money(due, "JPY"))
    quote = Quote.objects.get(pk=client.post(configure, CONFIGURE).url.rstrip("/").split("/")[-1])
    assert quote.amount_due == Money(due, "JPY")
    return quote


def test_a_change_due_below_the_minimum_is_applied_and_never_reaches_the_processor(client,
                                                                                   admin):
    client.force_login(admin)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    quote = _quote_due(client, admin, 30)

    review = client.get(reverse("billing:review", args=[quote.pk])).content.decode()
    assert ("Not charged: ¥30 is less than the smallest amount the payment service can charge "
            "(¥50), so it is waived.") in review

    paid = client.post(reverse("billing:pay", args=[quote.pk]))

    assert paid.status_code == 302
    invoice = Invoice.objects.get()
    assert paid.url == reverse("billing:invoice", args=[invoice.number])
    assert (invoice.state, invoice.amount_paid, invoice.amount_waived) == (
        Invoice.State.PAID, Money(0, "JPY"), Money(30, "JPY"))
    assert _sub(admin).plan.code == "standard"
    # Only the account credit that paid the rest is in the payment history, no card attempt.
    assert [p.paid_with for p in Payment.objects.all()] == ["credit"]
    assert processor_charges(_sub(admin).processor_customer_id) == []
    waiver = AuditEvent.objects.get(action="invoice.minimum_charge_waived")
    assert waiver.after == {"waived": "¥30", "minimum": "¥50"}
    page = client.get(paid.url).content.decode()
    assert 'data-testid="amount-waived">¥30<' in page


def test_a_change_due_at_the_minimum_is_charged(client, admin):
    client.force_login(admin)
    quote = _quote_due(client, admin, 50)

    assert client.post(reverse("billing:pay", args=[quote.pk])).status_code == 302

    [charge] = processor_charges(_sub(admin).processor_customer_id)
    assert (charge.amount, charge.status) == (50, "succeeded")
    assert Invoice.objects.get().amount_waived == Money(0, "JPY")


def test_a_renewal_due_below_the_minimum_is_paid_with_nothing_charged(admin):
    tokyo = ZoneInfo("Asia/Tokyo")
    with clock.travel(dt.datetime(2027, 1, 10, 9, 0, tzinfo=tokyo)):
        quote = quote_create(organisation=admin.organisation, acting_user=admin,
                             change=Change(Plan.objects.get(code="standard"), "monthly", 3, 0, 0))
        quote_pay(organisation=admin.organisation, quote_id=quote.pk, acting_user=admin)
    subscription = _sub(admin)
    Subscription.objects.filter(pk=subscription.pk).update(
        credit_balance=renewal_amount(subscription) - Money(30, "JPY"))
    charges_before = processor_charges(subscription.processor_customer_id)

    with clock.travel(subscription.current_period_end + dt.timedelta(minutes=1)):
        outcome = lifecycle.sweep_renewals()

    assert outcome == {"below_minimum": 1}
    renewal = Invoice.objects.get(kind=Invoice.Kind.RENEWAL)
    assert (renewal.state, renewal.amount_paid, renewal.amount_waived) == (
        Invoice.State.PAID, Money(0, "JPY"), Money(30, "JPY"))
    assert [(p.paid_with, p.amount) for p in renewal.payments.all()] == [
        ("credit", renewal.credit_applied)]  # the credit used; no card attempt
    assert _sub(admin).status == "active"
    assert _sub(admin).current_period_end == renewal.period_end
    assert processor_charges(subscription.processor_customer_id) == charges_before
