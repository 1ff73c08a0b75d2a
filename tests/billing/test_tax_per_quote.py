"""Tax is frozen in the quote: the rate and rounding shown on review are the ones invoiced,
and a credit line keeps the rate of the line it credits."""
import datetime as dt
from decimal import Decimal

import pytest
from django.test import override_settings
from django.urls import reverse
from djmoney.money import Money

from billing.models import Invoice
from billing.pricing import Change
from billing.services.payments import quote_pay
from billing.services.quotes import quote_create
from store import clock
from store.models import Plan
from tests.accounts.factories import AdminFactory
from tests.billing.helpers import card_on_file

pytestmark = pytest.mark.usefixtures("payment_sandbox")
START = dt.datetime(2026, 12, 1, 0, 0, tzinfo=dt.UTC)
EIGHT = {"JPY": "0.08", "USD": "0.08"}
TEN = {"JPY": "0.10", "USD": "0.10"}


@pytest.fixture
def admin(db):
    admin = AdminFactory()
    card_on_file(organisation=admin.organisation, acting_user=admin)
    return admin


def _quote(admin, code="standard", regular=3):
    return quote_create(organisation=admin.organisation, acting_user=admin,
                        change=Change(Plan.objects.get(code=code), "monthly", regular, 0, 0))


def test_a_rate_changed_between_review_and_pay_does_not_change_the_invoice(client, admin):
    with override_settings(KANRI_TAX_RATES=EIGHT), clock.travel(START):
        quote = _quote(admin)
    client.force_login(admin)
    review = client.get(reverse("billing:review", args=[quote.pk]),
                        HTTP_ACCEPT_LANGUAGE="en").content.decode()

    with override_settings(KANRI_TAX_RATES=TEN), clock.travel(START):
        result = quote_pay(organisation=admin.organisation, quote_id=quote.pk,
                           acting_user=admin)

    assert "Consumption tax (8%)" in review and "10%" not in review
    invoice = result.invoice
    assert (invoice.tax_rate, invoice.tax) == (Decimal("0.08"), Money(489, "JPY"))  # 6120 × 8%
    assert invoice.amount_paid == Money(6120 + 489, "JPY")
    page = client.get(reverse("billing:invoice", args=[invoice.number]),
                      HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Consumption tax (8%)" in page and "10%" not in page


def test_credit_for_a_line_paid_at_8_percent_is_taxed_at_8_and_the_new_charge_at_10(admin):
    with override_settings(KANRI_TAX_RATES=EIGHT), clock.travel(START):
        first = quote_pay(organisation=admin.organisation, quote_id=_quote(admin).pk,
                          acting_user=admin).invoice
    paid_line = first.lines.get()

    with override_settings(KANRI_TAX_RATES=TEN), clock.travel(START + dt.timedelta(days=15)):
        upgrade = _quote(admin, "professional")

    credit = upgrade.lines.get(kind="credit")
    charge = upgrade.lines.get(kind="charge")
    assert (credit.credits_line, credit.tax_rate) == (paid_line, Decimal("0.08"))
    assert charge.tax_rate == Decimal("0.10")
    rates = {group["rate"]: group for group in upgrade.taxes}
    assert set(rates) == {Decimal("0.08"), Decimal("0.10")}
    assert rates[Decimal("0.08")]["subtotal"] == credit.amount
    assert rates[Decimal("0.10")]["subtotal"] == charge.amount
    assert upgrade.tax == rates[Decimal("0.08")]["tax"] + rates[Decimal("0.10")]["tax"]

    with override_settings(KANRI_TAX_RATES=TEN), clock.travel(START + dt.timedelta(days=15)):
        invoice = quote_pay(organisation=admin.organisation, quote_id=upgrade.pk,
                            acting_user=admin).invoice

    assert Invoice.objects.get(pk=invoice.pk).tax_breakdown == upgrade.tax_breakdown
    assert invoice.lines.get(kind="credit").credits_line == paid_line
