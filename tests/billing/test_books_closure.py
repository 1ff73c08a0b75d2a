"""Deleting an account closes its books (SPEC "The books", rules that follow): the open renewal
invoice is voided and gives back the credit it spent, and the closed account's credit is
forfeited with an audited ledger entry; nothing is left owed or owing."""
import pytest
from django.db.models import Sum
from djmoney.money import Money

from accounts.models import AuditEvent, Organisation
from billing.books import books_discrepancies
from billing.models import CreditEntry, Invoice, Status, Subscription
from billing.services.closure import organisation_delete
from billing.services.support import support_credit_grant
from tests.accounts.factories import UserFactory
from tests.billing.test_books_lifecycle import past_due_with_credit_spent, sub

pytestmark = pytest.mark.usefixtures("payment_sandbox")


def test_deleting_a_past_due_account_voids_its_renewal_and_forfeits_its_credit(admin):
    invoice = past_due_with_credit_spent(admin)  # ¥1,000 of credit spent on the open renewal
    support_credit_grant(subscription_id=sub(admin).pk, amount=Money(400, "JPY"),
                         staff=UserFactory(organisation=None, is_staff=True), reason="apology")
    organisation = admin.organisation
    invoice.refresh_from_db()
    assert invoice.credit_applied == Money(1400, "JPY")  # the grant paid part of it too

    organisation_delete(organisation=organisation, acting_user=admin)

    invoice.refresh_from_db()
    subscription = Subscription.objects.get(organisation=organisation)
    assert invoice.state == Invoice.State.VOID
    assert (subscription.status, subscription.open_invoice, subscription.credit_balance) == (
        Status.FREE, None, Money(0, "JPY"))
    entries = CreditEntry.objects.filter(organisation=organisation)
    assert entries.aggregate(total=Sum("amount"))["total"] == 0
    forfeited = entries.get(kind=CreditEntry.Kind.FORFEITED)
    assert forfeited.amount == Money(-1400, "JPY")
    event = AuditEvent.objects.get(organisation=organisation, action="credit.forfeited")
    assert (event.before, event.after) == ({"credit_balance": "¥1,400"},
                                           {"credit_balance": "¥0"})
    assert Organisation.objects.get(pk=organisation.pk).closed_at is not None
    assert books_discrepancies() == []
