"""`manage.py check_books` on books the services wrote (they balance), and on books with one row
tampered with: each rule names what differs and the command exits non-zero."""
import io

import pytest
from django.core.management import CommandError, call_command
from djmoney.money import Money

from accounts.models import LicenceType, User
from billing.models import CreditEntry, Invoice, Payment, Subscription
from billing.pricing import Change
from billing.services.payments import quote_pay
from billing.services.quotes import quote_create
from billing.services.support import support_credit_grant, support_refund
from store.models import Plan
from tests.accounts.factories import AdminFactory, UserFactory
from tests.billing.factories import subscription_in
from tests.billing.helpers import card_on_file

pytestmark = pytest.mark.django_db


def check_books() -> str:
    out = io.StringIO()
    call_command("check_books", stdout=out)
    return out.getvalue()


def refused() -> str:
    out = io.StringIO()
    with pytest.raises(CommandError, match=r"do not balance"):
        call_command("check_books", stdout=out)
    return out.getvalue()


@pytest.fixture
def books(catalog, payment_sandbox, staff):
    """A plan bought with a card, a downgrade paid by the credit it gave, part of the card
    payment refunded, a support grant, and organisations on Free and in a trial. (The
    factories' paid subscriptions are left out: they apply quotes as paid without a charge.)"""
    admin = AdminFactory()
    organisation = admin.organisation
    card_on_file(organisation=organisation, acting_user=admin)
    bought = quote_pay(organisation=organisation, acting_user=admin, quote_id=quote_create(
        organisation=organisation, acting_user=admin,
        change=Change(Plan.objects.get(code="professional"), "monthly", 4, 1, 0)).pk)
    quote_pay(organisation=organisation, acting_user=admin, quote_id=quote_create(
        organisation=organisation, acting_user=admin,
        change=Change(Plan.objects.get(code="standard"), "monthly", 4, 1, 0)).pk)
    payment = Payment.objects.get(quote=bought.invoice.quote, state=Payment.State.SUCCEEDED)
    support_refund(payment_id=payment.pk, amount=Money(1000, "JPY"), staff=staff,
                   reason="goodwill")
    support_credit_grant(subscription_id=organisation.subscription.pk,
                         amount=Money(500, "JPY"), staff=staff, reason="apology")
    for status in ("free", "trialing"):
        subscription_in(status)
    return organisation


@pytest.fixture
def staff(db):
    """Support staff, as `create_support_user` makes them: staff, no organisation."""
    return User.objects.create_user("support@kanri.example", "pw-not-used", is_staff=True)


def test_books_the_services_wrote_balance(books):
    assert set(CreditEntry.objects.filter(organisation=books).values_list("kind", flat=True)) \
        == {CreditEntry.Kind.CREDIT_NOTE, CreditEntry.Kind.GRANTED}
    assert Payment.objects.filter(amount_refunded__isnull=False).count() == 1

    assert check_books().startswith("the books balance: 3 subscriptions")


def test_a_credit_balance_the_ledger_does_not_sum_to_is_reported(books):
    Subscription.objects.filter(organisation=books).update(credit_balance=Money(99999, "JPY"))

    assert (f"credit: organisation {books.pk} ({books.name}): balance 99999.00 JPY, credit "
            "ledger sums to 6308.00") in refused()


def test_an_invoice_whose_credit_was_not_spent_by_the_ledger_is_reported(books):
    invoice = Invoice.objects.filter(organisation=books).first()
    Invoice.objects.filter(pk=invoice.pk).update(credit_applied=Money(1, "JPY"))

    assert f"invoice: invoice {invoice.number}: credit applied 1.00 JPY" in refused()


def test_a_void_invoice_with_money_paid_is_reported(books):
    invoice = Invoice.objects.filter(organisation=books, amount_paid__gt=0).first()
    Invoice.objects.filter(pk=invoice.pk).update(state=Invoice.State.VOID)

    assert f"invoice: invoice {invoice.number}: void but" in refused()


def test_a_paid_invoice_not_collected_is_reported(books):
    invoice = Invoice.objects.filter(organisation=books, amount_paid__gt=0).first()
    Invoice.objects.filter(pk=invoice.pk).update(amount_paid=Money(0, "JPY"))

    assert f"invoice: invoice {invoice.number}: paid, but" in refused()


def test_a_refund_without_its_credit_note_is_reported(books):
    payment = Payment.objects.get(amount_refunded__isnull=False)
    Payment.objects.filter(pk=payment.pk).update(amount_refunded=Money(2000, "JPY"))

    assert (f"refund: payment {payment.pk} ({payment.idempotency_key}): 2000.00 JPY refunded, "
            "its credit notes say 1000.00 JPY") in refused()


def test_more_active_users_than_licences_are_reported(books):
    UserFactory.create_batch(4, organisation=books, licence_type=LicenceType.TEAM)

    assert (f"licences: organisation {books.pk} ({books.name}): 4 active team users on 1 "
            "licences") in refused()


def test_quantities_the_licence_ledger_does_not_sum_to_are_reported(books):
    Subscription.objects.filter(organisation=books).update(storage_units=7)

    assert f"ledger: subscription {books.subscription.pk} ({books.name}): storage 7" in refused()


def test_the_system_check_warns_of_books_that_do_not_balance(books):
    Subscription.objects.filter(organisation=books).update(credit_balance=Money(5, "JPY"))
    out = io.StringIO()

    call_command("check", "--database", "default", stdout=out, stderr=out)

    assert "billing.W002" in out.getvalue()
    assert "credit ledger sums to" in out.getvalue()
