"""Invoices and credit notes as PDFs: what the reader sees in them, in their language, and who
may download them. Purchases are paid at localstripe; the PDFs are made by the real WeasyPrint
and read back with pypdf."""
import datetime as dt
import io
import re

import pytest
from django.test import Client, override_settings
from django.urls import reverse
from djmoney.money import Money
from pypdf import PdfReader

from billing.documents import credit_note_pdf, invoice_pdf
from billing.models import CreditEntry, CreditNote, Invoice, Status
from billing.pricing import Change
from billing.services.payments import quote_pay
from billing.services.quotes import quote_create
from store import clock
from store.models import Plan
from tests.accounts.factories import AdminFactory, UserFactory
from tests.billing.factories import subscription_in
from tests.billing.helpers import card_on_file

pytestmark = pytest.mark.usefixtures("payment_sandbox")

REGISTRATION = "T9876543210987"
START = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
HALFWAY = dt.datetime(2026, 12, 16, 21, 0, tzinfo=dt.UTC)  # 15.5 of 31 days left


@pytest.fixture(autouse=True)
def _registration():
    with override_settings(KANRI_INVOICE_ISSUER_REGISTRATION=REGISTRATION):
        yield


def payer(**kwargs):
    """An organisation's admin with a card on file at the sandbox."""
    admin = AdminFactory(**kwargs)
    card_on_file(organisation=admin.organisation, acting_user=admin)
    return admin


@pytest.fixture
def admin(db):
    return payer()


def buy(admin, code="standard", regular=3) -> Invoice:
    quote = quote_create(organisation=admin.organisation, acting_user=admin,
                         change=Change(Plan.objects.get(code=code), "monthly", regular, 0, 0))
    result = quote_pay(organisation=admin.organisation, quote_id=quote.pk, acting_user=admin)
    assert result.invoice is not None, result.failure
    return result.invoice


def text_of(pdf: bytes) -> str:
    """What a reader of the PDF sees, as one line of words."""
    pages = PdfReader(io.BytesIO(pdf)).pages
    return re.sub(r"\s+", " ", " ".join(page.extract_text() for page in pages))


def unwrapped(text: str) -> str:
    """Japanese has no spaces between words, and a table cell's wrapped line reads back as
    one: compare Japanese phrases with every space taken out."""
    return text.replace(" ", "")


def browser(user, language="ja") -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE=language)
    client.force_login(user)
    return client


def downgraded(admin) -> Invoice:
    """Professional × 3 bought on Dec 1, Standard × 3 from halfway through the month: the
    unused half of Professional (¥5,040 + tax) less the Standard half (¥3,060 + tax)."""
    with clock.travel(START):
        buy(admin, "professional")
    with clock.travel(HALFWAY):
        return buy(admin, "standard")


def test_the_invoice_pdf_in_japanese_is_a_qualified_invoice_with_tax_per_rate(admin):
    with clock.travel(dt.datetime(2026, 11, 30, 16, 0, tzinfo=dt.UTC)):  # Dec 1, 01:00 Tokyo
        invoice = buy(admin, "standard", regular=3)

    response = browser(admin, "ja").get(reverse("billing:invoice_pdf", args=[invoice.number]))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == f'attachment; filename="invoice-{invoice.number}.pdf"'
    text = text_of(response.content)
    assert "適格請求書" in text
    assert f"請求書番号 {invoice.number}" in text
    assert f"登録番号 {REGISTRATION}" in text
    assert f"{admin.organisation.name} 御中" in text
    assert "発行日 2026-12-01" in text  # the organisation's day (Tokyo), not UTC's
    assert "スタンダード" in text  # the item as issued, in Japanese
    assert "10%対象の小計 ￥6,120" in text  # 3 × ¥2,040
    assert "消費税(10%) ￥612" in text
    assert "合計 ￥6,732" in text
    assert "使用したアカウントクレジット ￥0" in text
    assert "カードでのお支払い額 ￥6,732" in text


def test_the_invoice_pdf_in_english_prints_the_names_it_was_issued_with(admin):
    with clock.travel(START):
        invoice = buy(admin, "standard", regular=3)
    admin.organisation.name = "Renamed K.K."
    admin.organisation.save()

    text = text_of(browser(admin, "en").get(
        reverse("billing:invoice_pdf", args=[invoice.number])).content)

    assert "Qualified invoice" in text and "適格" not in text
    assert f"To: {invoice.buyer_name}" in text and "Renamed" not in text
    assert f"Registration number {REGISTRATION}" in text
    assert "Standard 2026-12-01" in text
    assert "Subtotal taxed at 10% ¥6,120" in text
    assert "Consumption tax (10%) ¥612" in text
    assert "Total ¥6,732" in text
    assert "Account credit used ¥0" in text and "Paid by card ¥6,732" in text
    assert f"Payment ID: {invoice.payments.get().processor_id}" in text


def test_a_usd_invoice_prints_no_registration_number(db):
    admin = payer(organisation__currency="USD")
    with clock.travel(START):
        invoice = buy(admin, "standard", regular=1)

    text = text_of(invoice_pdf(invoice, "en"))

    assert invoice.currency == "USD"
    assert "Invoice" in text and "Qualified" not in text and REGISTRATION not in text
    assert re.search(r"Total \$\d+\.\d\d", text)


def test_a_downgrade_issues_a_credit_note_with_its_own_number(admin):
    invoice = downgraded(admin)

    note = CreditNote.objects.get()
    assert note.number == "CN-000001" and note.invoice == invoice
    assert note.kind == CreditNote.Kind.DOWNGRADE
    assert (note.subtotal, note.tax, note.total) == (
        Money(1980, "JPY"), Money(198, "JPY"), Money(2178, "JPY"))
    assert note.total == invoice.credit_to_account
    entry = CreditEntry.objects.get(invoice=invoice, kind=CreditEntry.Kind.CREDIT_NOTE)
    assert entry.amount == note.total
    assert (note.seller_name, note.buyer_name, note.issuer_registration) == (
        invoice.seller_name, invoice.buyer_name, REGISTRATION)


def test_the_credit_note_pdf_shows_its_number_the_invoice_and_the_amount_credited(admin):
    invoice = downgraded(admin)
    client = browser(admin, "ja")

    page = client.get(reverse("billing:invoice", args=[invoice.number])).content.decode()
    response = client.get(reverse("billing:credit_note_pdf", args=["CN-000001"]))

    assert reverse("billing:credit_note_pdf", args=["CN-000001"]) in page
    assert reverse("billing:invoice_pdf", args=[invoice.number]) in page
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == 'attachment; filename="credit-note-CN-000001.pdf"'
    text = text_of(response.content)
    assert "適格返還請求書" in text
    assert "返還請求書番号 CN-000001" in text
    assert f"元の請求書 {invoice.number}" in text
    assert f"登録番号 {REGISTRATION}" in text
    assert "プロフェッショナルの未使用期間分のクレジット" in unwrapped(text)
    assert "10%対象の返還額 ￥1,980" in text
    assert "返還消費税額(10%) ￥198" in text
    assert "返還額合計 ￥2,178" in text
    english = text_of(credit_note_pdf(CreditNote.objects.get(), "en"))
    assert "Qualified credit note" in english and "Total credited ¥2,178" in english
    assert "CN-000001: ¥2,178 credited to the account" in text_of(invoice_pdf(invoice, "en"))


def test_an_upgrade_issues_no_credit_note_and_numbers_run_without_gaps(admin):
    other = payer()
    with clock.travel(START):
        buy(admin, "standard")
    with clock.travel(HALFWAY):
        buy(admin, "professional")  # an upgrade: nothing credited
    assert not CreditNote.objects.exists()

    downgraded(other)
    with clock.travel(HALFWAY + dt.timedelta(hours=1)):
        buy(admin, "free", regular=3)  # Switch to Free credits the rest

    assert list(CreditNote.objects.order_by("pk").values_list("number", "organisation")) == [
        ("CN-000001", other.organisation_id), ("CN-000002", admin.organisation_id)]


def test_another_organisations_invoice_or_credit_note_is_not_found(admin):
    other = payer()
    invoice = downgraded(other)
    client = browser(admin)

    assert client.get(reverse("billing:invoice_pdf", args=[invoice.number])).status_code == 404
    assert client.get(reverse("billing:credit_note_pdf",
                              args=["CN-000001"])).status_code == 404


def test_a_member_cannot_download_and_a_visitor_must_log_in(admin):
    invoice = downgraded(admin)
    member = UserFactory(organisation=admin.organisation)
    urls = [reverse("billing:invoice_pdf", args=[invoice.number]),
            reverse("billing:credit_note_pdf", args=["CN-000001"])]

    assert [browser(member).get(url).status_code for url in urls] == [403, 403]
    assert [Client().get(url).status_code for url in urls] == [302, 302]


def test_a_locked_organisations_admin_can_still_download_the_invoice(admin):
    with clock.travel(START):
        subscription_in(Status.LOCKED, admin=admin)
    invoice = Invoice.objects.get(organisation=admin.organisation)

    response = browser(admin).get(reverse("billing:invoice_pdf", args=[invoice.number]))

    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
