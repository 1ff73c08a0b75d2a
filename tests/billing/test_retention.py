"""Invoices, their lines, credit notes and payments outlive the account and the catalog's
names: deleting an account anonymises it, and nothing can cascade them away."""
import pytest
from django.db.models import ProtectedError
from django.urls import reverse

from accounts.models import Organisation, User
from billing.models import CreditEntry, Invoice, InvoiceLine, Payment
from billing.pricing import Change
from billing.services.closure import organisation_delete
from billing.services.payments import quote_pay
from billing.services.quotes import quote_create
from store.models import Plan
from tests.accounts.factories import AdminFactory
from tests.billing.helpers import card_on_file

pytestmark = pytest.mark.usefixtures("payment_sandbox")


def _buy(admin, code="standard", regular=3):
    quote = quote_create(organisation=admin.organisation, acting_user=admin,
                         change=Change(Plan.objects.get(code=code), "monthly", regular, 0, 0))
    return quote_pay(organisation=admin.organisation, quote_id=quote.pk,
                     acting_user=admin).invoice


@pytest.fixture
def paying_admin(db):
    admin = AdminFactory(organisation__name="Sakura Shoji K.K.")
    card_on_file(organisation=admin.organisation, acting_user=admin)
    return admin


def test_deleting_an_account_keeps_its_invoices_payments_and_credit_notes(paying_admin):
    admin = paying_admin
    _buy(admin, "professional")
    _buy(admin, "standard")  # a downgrade: a credit note
    counts = (Invoice.objects.count(), InvoiceLine.objects.count(), Payment.objects.count(),
              CreditEntry.objects.count())
    organisation_id = admin.organisation_id

    organisation_delete(organisation=admin.organisation, acting_user=admin)

    # Every record kept; the credit left is forfeited by one more ledger entry, never deleted.
    forfeited = CreditEntry.objects.filter(kind=CreditEntry.Kind.FORFEITED).count()
    assert (Invoice.objects.count(), InvoiceLine.objects.count(), Payment.objects.count(),
            CreditEntry.objects.count() - forfeited) == counts
    assert counts[3] >= 1 and forfeited == 1
    closed = Organisation.objects.get(pk=organisation_id)
    assert closed.name == f"Deleted organisation {organisation_id}"
    assert not User.objects.filter(organisation_id=organisation_id).exists()
    assert set(Invoice.objects.values_list("buyer_name", flat=True)) == {"Sakura Shoji K.K."}


def test_numbering_stays_gapless_after_an_account_is_deleted(paying_admin):
    first = _buy(paying_admin)
    organisation_delete(organisation=paying_admin.organisation, acting_user=paying_admin)
    other = AdminFactory()
    card_on_file(organisation=other.organisation, acting_user=other)

    second = _buy(other)

    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert numbers == [first.number, second.number] == ["INV-000001", "INV-000002"]


def test_nothing_can_cascade_an_invoice_away(paying_admin):
    _buy(paying_admin)

    with pytest.raises(ProtectedError):
        Organisation.objects.get(pk=paying_admin.organisation_id).delete()
    assert Invoice.objects.count() == 1


def test_an_invoice_prints_the_names_it_was_issued_with(client, paying_admin):
    invoice = _buy(paying_admin)
    organisation = paying_admin.organisation
    organisation.name = "Renamed Holdings"
    organisation.save()
    Plan.objects.filter(code="standard").update(name="Standard 2028", name_ja="スタンダード新")
    client.force_login(paying_admin)

    page = client.get(reverse("billing:invoice", args=[invoice.number]),
                      HTTP_ACCEPT_LANGUAGE="ja").content.decode()
    document = page[page.index('data-testid="invoice"'):]  # the header shows today's name

    assert "Sakura Shoji K.K." in document and "Renamed Holdings" not in document
    assert "スタンダード新" not in document and "スタンダード" in document
    assert invoice.issuer_registration and invoice.issuer_registration in document
