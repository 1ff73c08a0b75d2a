"""The receipt email after each card payment: in the organisation's language, with the invoice's
PDF attached; once per invoice; a renewal paid by card gets it instead of "renewed". Charges go to
localstripe; the emails to Django's outbox; the PDFs are read back with pypdf."""
import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.core import mail

from billing import notifications
from billing.models import CreditNote, Invoice, Notification
from billing.notifications import notifications_send, notifications_send_pending
from billing.pricing import Change
from billing.services import lifecycle
from billing.services.payments import quote_pay
from billing.services.quotes import quote_create
from store import clock
from store.models import Plan
from tests.accounts.factories import AdminFactory
from tests.billing.helpers import card_on_file
from tests.billing.test_documents import text_of, unwrapped

pytestmark = pytest.mark.usefixtures("payment_sandbox")
TOKYO = ZoneInfo("Asia/Tokyo")


def tokyo(*args):
    return dt.datetime(*args, tzinfo=TOKYO)


@pytest.fixture
def admin(db):
    admin = AdminFactory()
    card_on_file(organisation=admin.organisation, acting_user=admin)
    return admin


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks):
    """The test's transaction never commits: run the email task as each payment's ends."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def buy(admin, code="standard", cycle="monthly", regular=3) -> Invoice:
    quote = quote_create(organisation=admin.organisation, acting_user=admin,
                         change=Change(Plan.objects.get(code=code), cycle, regular, 0, 0))
    result = quote_pay(organisation=admin.organisation, quote_id=quote.pk, acting_user=admin)
    assert result.invoice is not None, result.failure
    return result.invoice


def kinds(admin) -> list[str]:
    return list(Notification.objects.filter(organisation=admin.organisation)
                .order_by("created_at", "id").values_list("kind", flat=True))


def test_paying_by_card_emails_a_receipt_with_the_invoice_pdf_in_english(admin, on_commit):
    admin.organisation.language = "en"
    admin.organisation.save()

    with clock.travel(tokyo(2027, 1, 10, 9, 0)), on_commit():
        invoice = buy(admin)

    assert Notification.objects.get(kind=Notification.Kind.RECEIPT).key == (
        f"receipt:{invoice.number}")
    [email] = mail.outbox
    assert email.to == [admin.email]
    assert email.subject == f"Receipt for invoice {invoice.number}: ¥6,732 paid"
    assert f"We received ¥6,732 from {admin.organisation.name} on 2027-01-10" in email.body
    assert f"/manage/invoices/{invoice.number}/" in email.body
    [(filename, content, mimetype)] = email.attachments
    assert (filename, mimetype) == (f"invoice-{invoice.number}.pdf", "application/pdf")
    text = text_of(content)
    assert f"Invoice number {invoice.number}" in text
    assert "Status Paid" in text and "Paid by card ¥6,732" in text


def test_the_receipt_of_a_japanese_organisation_is_in_japanese(admin, on_commit):
    with on_commit():
        invoice = buy(admin)

    [email] = mail.outbox
    assert "領収書" in email.subject and invoice.number in email.subject
    assert "￥6,732" in email.body
    text = unwrapped(text_of(email.attachments[0][1]))
    assert f"請求書番号{invoice.number}" in text
    assert "適格請求書" in text and "カードでのお支払い額￥6,732" in text


def test_a_renewal_paid_by_card_sends_one_email_the_receipt(admin, on_commit):
    admin.organisation.language = "en"
    admin.organisation.save()
    with clock.travel(tokyo(2027, 1, 31, 9, 0)), on_commit():
        buy(admin)

    with clock.travel(tokyo(2027, 2, 28, 9, 0)), on_commit():
        lifecycle.sweep_renewals()

    renewal = Invoice.objects.get(kind=Invoice.Kind.RENEWAL)
    assert kinds(admin) == ["receipt", "receipt"]  # the purchase's, then the renewal's
    email = mail.outbox[-1]
    assert email.subject == f"Receipt for invoice {renewal.number}: ¥6,732 paid"
    assert "The subscription was renewed until 2027-03-31." in email.body
    text = text_of(email.attachments[0][1])
    assert renewal.number in text and "Period 2027-02-28 – 2027-03-31" in text


def test_a_renewal_paid_by_credit_sends_renewed_and_no_receipt(admin, on_commit):
    with clock.travel(tokyo(2027, 1, 1, 9, 0)), on_commit():
        buy(admin, "professional", "yearly", regular=10)
    with clock.travel(tokyo(2027, 1, 2, 9, 0)), on_commit():
        downgrade = buy(admin, "standard", "monthly", regular=3)  # nothing charged: a credit note

    with clock.travel(tokyo(2027, 2, 2, 9, 0)), on_commit():
        lifecycle.sweep_renewals()

    assert kinds(admin) == ["receipt", "renewed"]
    assert CreditNote.objects.get().invoice == downgrade
    assert [len(email.attachments) for email in mail.outbox] == [1, 0]


def test_a_receipt_whose_pdf_fails_is_given_back_and_sent_later(admin, monkeypatch):
    monkeypatch.setattr(notifications, "invoice_pdf", _broken_pdf)
    invoice = buy(admin)  # on_commit not run: the send below is the task's
    key = f"receipt:{invoice.number}"

    with pytest.raises(RuntimeError):
        notifications_send(keys=[key])

    assert Notification.objects.get(key=key).sent_at is None and mail.outbox == []
    monkeypatch.undo()
    with clock.travel(clock.now() + dt.timedelta(minutes=10)):
        assert notifications_send_pending() == {"sent": 1, "failed_batches": 0}
    assert invoice.number in text_of(mail.outbox[0].attachments[0][1])


def _broken_pdf(invoice, language):
    raise RuntimeError("the PDF could not be made")
