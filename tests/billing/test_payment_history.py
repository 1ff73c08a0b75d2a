"""決済の履歴: every attempt of the organisation as the admin reads it, filtered, paginated and
exported, with a fixed number of queries whatever the number of payments."""
import csv
import datetime as dt
import io
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from billing.models import Payment
from billing.services.payments import quote_pay
from billing.services.quotes import Change, quote_create
from store import clock
from store.models import Plan
from tests.accounts.factories import AdminFactory, UserFactory
from tests.billing.helpers import DECLINING_CARD, card_on_file

pytestmark = pytest.mark.usefixtures("payment_sandbox")
TOKYO_NOON = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC)  # 12:00 in Tokyo


def pay(admin, code="standard", regular=3):
    quote = quote_create(organisation=admin.organisation, acting_user=admin,
                         change=Change(Plan.objects.get(code=code), "monthly", regular, 0, 0))
    return quote_pay(organisation=admin.organisation, quote_id=quote.pk, acting_user=admin)


@pytest.fixture
def history(admin):
    """A plan bought on Dec 1 (paid), licences added on Dec 3 with a card that declines."""
    with clock.travel(TOKYO_NOON):
        card_on_file(organisation=admin.organisation, acting_user=admin)
        assert pay(admin).invoice is not None
    with clock.travel(TOKYO_NOON + dt.timedelta(days=2)):
        card_on_file(organisation=admin.organisation, acting_user=admin, number=DECLINING_CARD)
        assert pay(admin, regular=5).failure
    return list(Payment.objects.filter(organisation=admin.organisation).order_by("created_at"))


def rows(response) -> list[str]:
    return [line for line in response.content.decode().splitlines()
            if 'data-testid="payment-row"' in line]


def test_every_attempt_is_listed_newest_first_with_what_it_paid_for(admin_client, history):
    paid, failed = history
    page = admin_client.get(reverse("billing:payment_history")).content.decode()

    assert page.index(failed.processor_id) < page.index(paid.processor_id)
    assert page.count('data-testid="payment-row"') == 2
    for text in ("Kanri CRM", "Standard", "Monthly", "Plan change", "Users and add-ons",
                 "2026-12-01 12:00", "2026-12-03 12:00", "•••• 4242", "•••• 0341",
                 "¥", "Paid", "Failed: <span data-testid=\"failure-reason\">Your card was "
                 "declined."):
        assert text in page, text


def test_times_are_printed_on_the_organisations_clock(admin_client, admin, history):
    admin.organisation.time_zone = "America/New_York"
    admin.organisation.save(update_fields=["time_zone"])

    page = admin_client.get(reverse("billing:payment_history")).content.decode()

    # 12:00 in Tokyo on Dec 1 and Dec 3 is 22:00 the evening before in New York
    assert "2026-11-30 22:00" in page and "2026-12-02 22:00" in page
    assert "2026-12-01 12:00" not in page


def test_a_failed_payments_reason_is_in_the_readers_language(admin_client, history):
    english = admin_client.get(reverse("billing:payment_history"),
                               HTTP_ACCEPT_LANGUAGE="en").content.decode()
    page = admin_client.get(reverse("billing:payment_history"),
                            HTTP_ACCEPT_LANGUAGE="ja").content.decode()
    assert "カードが拒否されました" in page and "決済ID" in page
    # the labels each row repeats, kept per language, are in the reader's language too
    assert ">Paid<" in english and ">Monthly<" in english and ">Failed" in english
    assert ">支払済み<" in page and ">月払い<" in page and ">失敗" in page


def test_filters_by_outcome_and_by_days_on_the_organisations_clock(admin_client, history):
    paid, failed = history
    url = reverse("billing:payment_history")
    only_failed = admin_client.get(url, {"status": "failed"}).content.decode()
    assert failed.processor_id in only_failed and paid.processor_id not in only_failed

    december_first = admin_client.get(url, {"start": "2026-12-01", "end": "2026-12-01"})
    assert paid.processor_id in december_first.content.decode()
    assert failed.processor_id not in december_first.content.decode()
    assert len(rows(admin_client.get(url, {"start": "2026-12-02"}))) == 1
    assert 'data-testid="no-payments"' in admin_client.get(
        url, {"end": "2026-11-30"}).content.decode()


@pytest.mark.parametrize("query, message", [
    ({"start": "2026-13-45"}, "Enter a valid date."),
    ({"start": "yesterday"}, "Enter a valid date."),
    ({"start": "2026-12-05", "end": "2026-12-01"}, "The start date is after the end date."),
    ({"status": "stolen"}, "Select a valid choice."),
])
def test_a_malformed_filter_is_a_400_with_a_message(admin_client, history, query, message):
    response = admin_client.get(reverse("billing:payment_history"), query)
    assert response.status_code == 400
    assert message in response.content.decode() and not rows(response)
    csv_response = admin_client.get(reverse("billing:payment_history_csv"), query)
    assert csv_response.status_code == 400 and message in csv_response.content.decode()


def copies(payment: Payment, count: int, start: int = 0) -> None:
    """`count` more attempts like `payment` (its invoice, quote and card), a minute apart."""
    Payment.objects.bulk_create(
        Payment(organisation_id=payment.organisation_id, quote_id=payment.quote_id,
                invoice_id=payment.invoice_id, idempotency_key=f"copy:{start + n}",
                processor_id=f"pi_copy_{start + n:04d}", amount=payment.amount,
                state=payment.state, card_brand=payment.card_brand,
                card_last4=payment.card_last4,
                created_at=payment.created_at + dt.timedelta(minutes=start + n + 1))
        for n in range(count))


def test_a_page_costs_the_same_queries_with_one_payment_as_with_500(admin_client, admin):
    with clock.travel(TOKYO_NOON):
        card_on_file(organisation=admin.organisation, acting_user=admin)
        pay(admin)
    paid = Payment.objects.get(organisation=admin.organisation)
    url = reverse("billing:payment_history")

    def queries(**query):
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(url, query).status_code == 200
        return len(captured.captured_queries)

    one = queries()
    copies(paid, 499)
    assert queries() == queries(page=3) == queries(status="paid") == one
    page = admin_client.get(url, {"page": 20})
    assert len(rows(page)) == 25 and "Page 20 of 20" in page.content.decode()


def test_pages_keep_the_filter_and_the_csv_holds_every_filtered_row(admin_client, history):
    paid, failed = history
    copies(paid, 30)
    url = reverse("billing:payment_history")
    first = admin_client.get(url, {"status": "paid"})
    assert len(rows(first)) == 25 and "?status=paid&amp;page=2" in first.content.decode()
    second = admin_client.get(url, {"status": "paid", "page": 2})
    assert len(rows(second)) == 6

    export = admin_client.get(reverse("billing:payment_history_csv"), {"status": "paid"})
    assert export["Content-Type"] == "text/csv; charset=utf-8"
    table = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode("utf-8-sig"))))
    assert table[0][:3] == ["Payment ID", "Date", "Amount (tax included)"]
    ids_on_pages = [found for page in (first, second) for found in
                    re.findall(r'data-testid="payment-id">([^<]*)<', page.content.decode())]
    assert [row[0] for row in table[1:]] == ids_on_pages
    assert failed.processor_id not in ids_on_pages


def test_the_csv_escapes_text_a_spreadsheet_would_run(admin_client, admin):
    Payment.objects.create(organisation=admin.organisation, idempotency_key="formula",
                           processor_id="pi_formula", amount=admin.organisation.subscription
                           .credit_balance, state=Payment.State.FAILED,
                           failure_reason="=cmd|' /C calc'!A0")
    export = admin_client.get(reverse("billing:payment_history_csv"))
    table = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode("utf-8-sig"))))
    assert table[1][-2] == "'=cmd|' /C calc'!A0"


def test_a_payments_page_shows_its_invoice_lines_and_others_are_404(admin_client, admin,
                                                                    history):
    paid, failed = history
    detail = admin_client.get(reverse("billing:payment_detail", args=[paid.pk])).content.decode()
    assert paid.invoice.number in detail and 'data-testid="lines"' in detail
    refused = admin_client.get(reverse("billing:payment_detail", args=[failed.pk]))
    assert "Your card was declined." in refused.content.decode()

    stranger = Payment.objects.create(organisation=AdminFactory().organisation,
                                      idempotency_key="stranger", amount=paid.amount)
    assert admin_client.get(reverse("billing:payment_detail",
                                    args=[stranger.pk])).status_code == 404
    assert "pi_" not in admin_client.get(reverse("billing:payment_history"),
                                         {"status": "pending"}).content.decode()


def test_members_cannot_read_the_payment_history(client, admin):
    client.force_login(UserFactory(organisation=admin.organisation))
    assert client.get(reverse("billing:payment_history")).status_code == 403
    assert client.get(reverse("billing:payment_history_csv")).status_code == 403


def test_a_change_paid_by_account_credit_is_listed_as_such(admin_client, admin):
    with clock.travel(TOKYO_NOON):
        card_on_file(organisation=admin.organisation, acting_user=admin)
        assert pay(admin, code="professional", regular=10).invoice is not None
    with clock.travel(TOKYO_NOON + dt.timedelta(days=1)):
        assert pay(admin, code="standard", regular=3).invoice is not None  # credit to account
        covered = pay(admin, code="standard", regular=4)  # one more licence, from the credit
    assert covered.invoice is not None and not covered.charged

    by_credit = Payment.objects.get(organisation=admin.organisation, paid_with="credit")
    assert (by_credit.invoice, by_credit.amount) == (covered.invoice, covered.invoice.total)
    page = admin_client.get(reverse("billing:payment_history"), {"status": "credit"})
    assert len(rows(page)) == 1
    assert "Paid by account credit" in page.content.decode()
    assert covered.invoice.number in admin_client.get(
        reverse("billing:payment_detail", args=[by_credit.pk])).content.decode()
