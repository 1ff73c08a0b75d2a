"""Documents tell what happened (SPEC "The books" 10): the invoice page and the invoice PDF say
how the invoice was settled — by card, by account credit (granted by support or not), waived by
support with its reason, waived below the minimum charge, refunded to the card, credited to the
account, voided with its credit given back — each only when true, in English and Japanese, with
figures that add up with a pencil: total = card + credit + waived + still open."""
import datetime as dt
import io
import re
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from djmoney.money import Money
from pypdf import PdfReader

from accounts.models import User
from billing.documents import credit_note_pdf, invoice_pdf
from billing.models import Invoice, Payment, Status, Subscription
from billing.pricing import Change
from billing.selectors import Settlement, invoice_story
from billing.services import lifecycle
from billing.services.payments import quote_pay
from billing.services.quotes import quote_create
from billing.services.support import (
    support_credit_grant,
    support_plan_change,
    support_plan_quote,
    support_refund,
)
from store import clock
from store.models import Plan
from tests.accounts.factories import AdminFactory
from tests.billing.helpers import DECLINING_CARD, card_on_file

pytestmark = pytest.mark.usefixtures("payment_sandbox")
TOKYO = ZoneInfo("Asia/Tokyo")
BOUGHT = dt.datetime(2027, 1, 10, 9, 0, tzinfo=TOKYO)


@pytest.fixture
def staff(db):
    user = User.objects.create_user("support@kanri.example", "pw-not-used", is_staff=True)
    user.groups.add(Group.objects.get(name="support"))
    return user


def yen(amount) -> Money:
    return Money(amount, "JPY")


def sub(organisation) -> Subscription:
    return Subscription.objects.get(organisation=organisation)


def buy(admin, code="standard", regular=3) -> Invoice:
    quote = quote_create(organisation=admin.organisation, acting_user=admin,
                         change=Change(Plan.objects.get(code=code), "monthly", regular, 0, 0))
    result = quote_pay(organisation=admin.organisation, quote_id=quote.pk, acting_user=admin)
    assert result.invoice is not None, result.failure
    return result.invoice


def renewal_declined(admin) -> dt.datetime:
    """Standard × 3 bought with a good card, then only a declining card: the renewal is open."""
    card_on_file(organisation=admin.organisation, acting_user=admin)
    with clock.travel(BOUGHT):
        buy(admin)
    card_on_file(organisation=admin.organisation, acting_user=admin, number=DECLINING_CARD)
    due = sub(admin.organisation).current_period_end
    with clock.travel(due):
        lifecycle.sweep_renewals()
    assert sub(admin.organisation).status == Status.PAST_DUE
    return due


def page(admin, invoice: Invoice, language: str) -> str:
    """The invoice page's words, as one line (tags and runs of spaces taken out)."""
    client = Client(HTTP_ACCEPT_LANGUAGE=language)
    client.force_login(admin)
    html = client.get(reverse("billing:invoice", args=[invoice.number])).content.decode()
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def pdf(invoice: Invoice, language: str) -> str:
    pages = PdfReader(io.BytesIO(invoice_pdf(invoice, language))).pages
    return re.sub(r"\s+", " ", " ".join(p.extract_text() for p in pages))


def flat(text: str) -> str:
    """Japanese has no spaces between words and PDF lines wrap: compare without spaces."""
    return text.replace(" ", "")


def kinds(invoice: Invoice) -> list[Settlement]:
    return [statement.kind for statement in invoice_story(invoice).statements]


def assert_pencil(invoice: Invoice) -> None:
    story = invoice_story(invoice)
    assert invoice.total == story.card + story.credit + story.waived + story.voided + \
        story.still_open - story.credited


def test_an_invoice_paid_by_card_says_the_card_the_payment_and_the_day(db):
    admin = AdminFactory()
    card_on_file(organisation=admin.organisation, acting_user=admin)
    with clock.travel(BOUGHT):
        invoice = buy(admin)
    payment = Payment.objects.get(invoice=invoice)

    assert kinds(invoice) == [Settlement.PAID_BY_CARD]
    said = f"¥6,732 paid by Visa •••• 4242 on 2027-01-10. Payment ID: {payment.processor_id}"
    assert said in page(admin, invoice, "en") and said in pdf(invoice, "en")
    ja = f"2027-01-10にVisa••••4242で￥6,732をお支払いいただきました。決済ID:{payment.processor_id}"
    assert ja in flat(page(admin, invoice, "ja")) and ja in flat(pdf(invoice, "ja"))
    assert "account credit" not in page(admin, invoice, "en")
    assert_pencil(invoice)


def test_an_invoice_paid_wholly_by_granted_credit_never_says_paid_by_card(staff):
    admin = AdminFactory()
    due = renewal_declined(admin)
    renewal = sub(admin.organisation).open_invoice
    with clock.travel(due + dt.timedelta(days=1)):
        support_credit_grant(subscription_id=sub(admin.organisation).pk, amount=yen(6732),
                             staff=staff, reason="The bank transfer arrived")
    renewal.refresh_from_db()
    assert renewal.state == "paid"

    assert kinds(renewal) == [Settlement.PAID_BY_GRANTED_CREDIT]
    for text in (page(admin, renewal, "en"), pdf(renewal, "en")):
        assert "¥6,732 paid with account credit granted by Kanri support" in text
        assert "Paid by card" not in text and "paid by Visa" not in text
    for text in (page(admin, renewal, "ja"), pdf(renewal, "ja")):
        assert "Kanriサポートが付与したアカウントクレジットで" in flat(text)
        assert "カードでのお支払い" not in flat(text)
    assert_pencil(renewal)


def test_credit_short_of_the_minimum_says_the_rest_was_waived_below_the_minimum(staff):
    admin = AdminFactory()
    due = renewal_declined(admin)
    renewal = sub(admin.organisation).open_invoice
    with clock.travel(due + dt.timedelta(days=1)):
        support_credit_grant(subscription_id=sub(admin.organisation).pk, amount=yen(6700),
                             staff=staff, reason="The bank transfer, less the fee")
    renewal.refresh_from_db()

    assert kinds(renewal) == [Settlement.PAID_BY_GRANTED_CREDIT,
                              Settlement.WAIVED_BELOW_MINIMUM]
    en = page(admin, renewal, "en")
    assert "¥32 not charged: below the smallest amount the payment service can charge" in en
    assert "waived by Kanri support" not in en
    assert_pencil(renewal)


def test_a_support_waiver_says_waived_by_kanri_support_with_its_reason(staff):
    admin = AdminFactory()
    card_on_file(organisation=admin.organisation, acting_user=admin)
    with clock.travel(BOUGHT):
        buy(admin)
    with clock.travel(BOUGHT + dt.timedelta(days=3)):
        quote = support_plan_quote(
            organisation=admin.organisation, staff=staff,
            change=Change(Plan.objects.get(code="professional"), "monthly", 3, 0, 0))
        invoice = support_plan_change(organisation=admin.organisation, quote_id=quote.pk,
                                      charge=False, staff=staff,
                                      reason="Goodwill after the outage")
    assert invoice.amount_waived.amount > 0

    assert kinds(invoice) == [Settlement.WAIVED_BY_SUPPORT]
    for text in (page(admin, invoice, "en"), pdf(invoice, "en")):
        assert "waived by Kanri support: Goodwill after the outage" in text
        assert "below the smallest amount" not in text
        assert "Paid by card" not in text
    for text in (page(admin, invoice, "ja"), pdf(invoice, "ja")):
        assert "Kanriサポートにより免除されました：Goodwillaftertheoutage" in flat(text)
        assert "最低請求金額未満" not in flat(text)
    assert_pencil(invoice)


def test_a_partial_refund_says_how_much_went_back_to_which_card_and_when(staff):
    admin = AdminFactory()
    card_on_file(organisation=admin.organisation, acting_user=admin)
    with clock.travel(BOUGHT):
        invoice = buy(admin)
    payment = Payment.objects.get(invoice=invoice)
    with clock.travel(BOUGHT + dt.timedelta(days=5)):
        note = support_refund(payment_id=payment.pk, amount=yen(1000), staff=staff,
                              reason="Charged twice for one user")

    assert kinds(invoice) == [Settlement.PAID_BY_CARD, Settlement.REFUNDED_TO_CARD]
    said = f"¥1,000 refunded to Visa •••• 4242 on 2027-01-15 (credit note {note.number})"
    for text in (page(admin, invoice, "en"), pdf(invoice, "en")):
        assert said in text
        assert "credited to the account" not in text
    ja = f"2027-01-15にVisa••••4242へ￥1,000を返金しました（返還請求書{note.number}）"
    assert ja in flat(page(admin, invoice, "ja"))
    assert "アカウントへのクレジット" not in page(admin, invoice, "ja")
    assert_pencil(invoice)


def test_a_downgrade_says_its_credit_went_to_the_account(db):
    admin = AdminFactory()
    card_on_file(organisation=admin.organisation, acting_user=admin)
    with clock.travel(BOUGHT):
        buy(admin, "professional")
    with clock.travel(BOUGHT + dt.timedelta(days=15)):
        invoice = buy(admin, "standard")
    note = invoice.credit_notes.get()

    assert Settlement.CREDITED_TO_ACCOUNT in kinds(invoice)
    said = (f"Credit note {note.number}: ¥{note.total.amount:,.0f} credited to the account "
            "on 2027-01-25")
    for text in (page(admin, invoice, "en"), pdf(invoice, "en")):
        assert said in text and "refunded to" not in text
    assert_pencil(invoice)


def test_a_voided_renewal_says_it_was_voided_and_gave_back_its_credit(staff):
    admin = AdminFactory()
    due = renewal_declined(admin)
    renewal = sub(admin.organisation).open_invoice
    with clock.travel(due + dt.timedelta(days=1)):
        support_credit_grant(subscription_id=sub(admin.organisation).pk, amount=yen(5000),
                             staff=staff, reason="Half the bank transfer arrived")
    renewal.refresh_from_db()
    assert kinds(renewal) == [Settlement.PAID_BY_GRANTED_CREDIT, Settlement.STILL_OPEN]
    assert "¥1,732 still owed" in page(admin, renewal, "en")
    assert_pencil(renewal)

    with clock.travel(due + dt.timedelta(days=15, hours=1)):
        lifecycle.sweep_locks()
    with clock.travel(due + dt.timedelta(days=15 + 62, hours=2)):
        lifecycle.sweep_moves_to_free()
    renewal.refresh_from_db()
    assert renewal.state == "void"

    assert kinds(renewal) == [Settlement.VOIDED, Settlement.CREDIT_GIVEN_BACK]
    for text in (page(admin, renewal, "en"), pdf(renewal, "en")):
        assert "Voided on" in text and "nothing is owed" in text
        assert "¥5,000 of account credit given back to the account" in text
        assert "paid with account credit" not in text
    assert "￥5,000のアカウントクレジットをアカウントに戻しました" in flat(
        page(admin, renewal, "ja"))
    assert_pencil(renewal)


def test_a_refund_credit_note_says_the_money_went_back_to_the_card_not_to_the_credit(staff):
    admin = AdminFactory()
    card_on_file(organisation=admin.organisation, acting_user=admin)
    with clock.travel(BOUGHT):
        invoice = buy(admin)
    payment = Payment.objects.get(invoice=invoice)
    with clock.travel(BOUGHT + dt.timedelta(days=5)):
        note = support_refund(payment_id=payment.pk, amount=yen(1000), staff=staff,
                              reason="Charged twice for one user")

    english = text_of_credit_note(note, "en")
    assert f"¥1,000 refunded to Visa •••• 4242 on 2027-01-15 (credit note {note.number})" \
        in english
    assert "stays on the account" not in english
    assert "Visa••••4242へ￥1,000を返金しました" in flat(text_of_credit_note(note, "ja"))


def text_of_credit_note(note, language: str) -> str:
    pages = PdfReader(io.BytesIO(credit_note_pdf(note, language))).pages
    return re.sub(r"\s+", " ", " ".join(p.extract_text() for p in pages))


def test_the_invoice_page_reads_a_few_queries_however_many_refunds(staff,
                                                                   django_assert_max_num_queries):
    admin = AdminFactory()
    card_on_file(organisation=admin.organisation, acting_user=admin)
    with clock.travel(BOUGHT):
        invoice = buy(admin)
    payment = Payment.objects.get(invoice=invoice)
    for day in (1, 2, 3):
        with clock.travel(BOUGHT + dt.timedelta(days=day)):
            support_refund(payment_id=payment.pk, amount=yen(100), staff=staff,
                           reason="Goodwill, in parts")
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(admin)
    # session, user, organisation and subscription checks, the invoice with its lines,
    # payments and credit notes (with their payments), and the invoice's credit entries.
    with django_assert_max_num_queries(10):
        html = client.get(reverse("billing:invoice", args=[invoice.number])).content.decode()
    assert html.count("refunded to Visa") == 3
