"""`manage.py reconcile_processor` against the payment sandbox: the processor's charges and
refunds equal Kanri's card payments when the services made them, and every difference either
way is named when one side moved money the other does not know of."""
import io

import pytest
import stripe
from django.conf import settings
from django.core.management import CommandError, call_command
from djmoney.money import Money

from accounts.models import User
from billing.models import Payment
from billing.pricing import Change
from billing.services.payments import quote_pay
from billing.services.quotes import quote_create
from billing.services.support import support_refund
from store.models import Plan
from tests.accounts.factories import AdminFactory
from tests.billing.helpers import DECLINING_CARD, card_on_file

pytestmark = pytest.mark.django_db


def reconcile(*arguments: str) -> str:
    out = io.StringIO()
    call_command("reconcile_processor", *arguments, stdout=out)
    return out.getvalue()


def differences() -> str:
    out = io.StringIO()
    with pytest.raises(CommandError, match=r"difference\(s\) between the processor and Kanri"):
        call_command("reconcile_processor", stdout=out)
    return out.getvalue()


def sandbox() -> stripe.StripeClient:
    return stripe.StripeClient(settings.STRIPE_API_KEY,
                               base_addresses={"api": settings.STRIPE_API_BASE})


def buy(admin, plan: str, regular: int = 3):
    quote = quote_create(organisation=admin.organisation, acting_user=admin,
                         change=Change(Plan.objects.get(code=plan), "monthly", regular, 0, 0))
    return quote_pay(organisation=admin.organisation, quote_id=quote.pk, acting_user=admin)


@pytest.fixture
def paid(catalog, payment_sandbox):
    """An organisation that bought Professional with a card (one declined attempt before), then
    had part of it refunded by support."""
    admin = AdminFactory()
    card_on_file(organisation=admin.organisation, acting_user=admin, number=DECLINING_CARD)
    assert buy(admin, "standard").invoice is None
    card_on_file(organisation=admin.organisation, acting_user=admin)
    invoice = buy(admin, "professional").invoice
    payment = Payment.objects.get(quote=invoice.quote, state=Payment.State.SUCCEEDED)
    staff = User.objects.create_user("support@kanri.example", "pw-not-used", is_staff=True)
    support_refund(payment_id=payment.pk, amount=Money(1000, "JPY"), staff=staff,
                   reason="goodwill")
    return payment


def test_the_processor_and_kanri_agree_on_what_the_services_did(paid):
    assert Payment.objects.filter(state=Payment.State.FAILED).count() == 1

    assert reconcile().startswith("the processor's charges and Kanri's payments agree")


def test_a_charge_made_at_the_processor_alone_is_named(paid):
    customer = paid.organisation.subscription.processor_customer_id
    method = paid.card_processor_id
    intent = sandbox().v1.payment_intents.create(params={
        "amount": 5000, "currency": "jpy", "customer": customer, "payment_method": method,
        "payment_method_types": ["card"]})
    sandbox().v1.payment_intents.confirm(intent.id)

    assert (f"{intent.id}: the processor charged ¥5,000; Kanri has no payment for it"
            in differences())


def test_a_refund_made_at_the_processor_alone_is_named(paid):
    sandbox().v1.refunds.create(params={"payment_intent": paid.processor_id, "amount": 500})

    assert (f"{paid.processor_id}: the processor refunded ¥1,500; Kanri records ¥1,000"
            in differences())


def test_a_payment_kanri_recorded_differently_is_named(paid):
    Payment.objects.filter(pk=paid.pk).update(amount=Money(1, "JPY"))

    assert f"{paid.processor_id}: the processor charged ¥" in differences()


def test_a_charge_kanri_records_that_the_processor_never_made_is_named(paid):
    Payment.objects.filter(state=Payment.State.FAILED).update(state=Payment.State.SUCCEEDED)
    failed = Payment.objects.exclude(pk=paid.pk).get()

    assert (f"{failed.processor_id}: Kanri records ¥{failed.amount.amount:,.0f} charged; the "
            "processor has no such charge") in differences()


def test_since_wants_a_date():
    with pytest.raises(CommandError, match="--since wants a date as YYYY-MM-DD, not 'May'"):
        call_command("reconcile_processor", "--since", "May")
