"""In the browser, in Japanese: 購入設定 → 決済方法 (add a card in the processor's form, make it the
default, delete the old one), then 決済の履歴 with an earlier payment and a failed one whose
reason is in Japanese, and the paid one's invoice downloaded as a PDF."""
import re

import pytest
from playwright.sync_api import expect
from pypdf import PdfReader

from billing.models import PaymentMethod, Subscription
from billing.pricing import Change
from billing.services.payments import quote_pay
from billing.services.quotes import quote_create
from store.models import Plan
from tests.accounts.factories import AdminFactory
from tests.billing.helpers import DECLINING_CARD, card_on_file
from tests.e2e.browser import log_in_in_japanese, type_card

pytestmark = pytest.mark.usefixtures("payment_sandbox")


def pay(admin, regular):
    quote = quote_create(organisation=admin.organisation, acting_user=admin,
                         change=Change(Plan.objects.get(code="standard"), "monthly", regular, 0,
                                       0))
    return quote_pay(organisation=admin.organisation, quote_id=quote.pk, acting_user=admin)


def test_cards_are_managed_and_the_history_read_in_japanese(page, live_server, transactional_db):
    admin = AdminFactory(email="settings@browser.test")
    card_on_file(organisation=admin.organisation, acting_user=admin)
    assert pay(admin, 3).invoice is not None  # paid with 4242
    card_on_file(organisation=admin.organisation, acting_user=admin, number=DECLINING_CARD)
    assert pay(admin, 5).failure  # declined with 0341, now the default

    log_in_in_japanese(page, live_server, admin.email)
    page.goto(f"{live_server.url}/manage/")
    page.get_by_test_id("manage-cards").click()
    expect(page.get_by_role("heading", name="決済方法")).to_be_visible()
    expect(page.get_by_test_id("card-row")).to_have_count(2)

    type_card(page, "5555555555554444")
    page.get_by_test_id("save-card").click()
    expect(page.get_by_test_id("card-row")).to_have_count(3)

    new_card = page.locator('[data-testid="card-row"][data-card="4444"]')
    new_card.get_by_test_id("make-default").click()
    expect(page.get_by_role("status")).to_contain_text("をデフォルトのカードにしました")
    expect(page.locator('[data-testid="card-row"][data-card="4444"]')
           .get_by_test_id("default-badge")).to_be_visible()

    page.locator('[data-testid="card-row"][data-card="0341"]').get_by_test_id(
        "delete-card").click()
    expect(page.get_by_role("status")).to_contain_text("を削除しました")
    expect(page.get_by_test_id("card-row")).to_have_count(2)

    page.get_by_role("link", name="決済の履歴").click()
    rows = page.get_by_test_id("payment-row")
    expect(rows).to_have_count(2)
    failed = page.locator('[data-testid="payment-row"][data-outcome="failed"]')
    expect(failed.get_by_test_id("failure-reason")).to_contain_text("カードが拒否されました")
    expect(page.locator('[data-testid="payment-row"][data-outcome="paid"]')).to_contain_text(
        "支払済み")
    expect(page.get_by_test_id("payments")).to_contain_text(re.compile("スタンダード"))

    # The paid one's page, its invoice, and the invoice's PDF.
    page.locator('[data-testid="payment-row"][data-outcome="paid"]').get_by_test_id(
        "payment-id").click()
    page.get_by_test_id("payment-invoice").get_by_role("link").first.click()
    with page.expect_download() as download:
        page.get_by_test_id("invoice-pdf").click()
    pdf = download.value
    assert pdf.suggested_filename.startswith("invoice-") and pdf.suggested_filename.endswith(
        ".pdf")
    text = "".join(p.extract_text() for p in PdfReader(pdf.path()).pages)
    assert "適格請求書" in text and "登録番号" in text

    subscription = Subscription.objects.get(organisation=admin.organisation)
    assert subscription.default_payment_method.last4 == "4444"
    assert sorted(PaymentMethod.objects.filter(organisation=admin.organisation)
                  .values_list("last4", flat=True)) == ["4242", "4444"]
