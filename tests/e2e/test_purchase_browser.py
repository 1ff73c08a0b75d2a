"""In the browser, in Japanese: trial, upgrade, review with proration, pay with a card typed into
the processor's form (localstripe's Stripe.js stand-in), and a declined card."""
import re

import pytest
from playwright.sync_api import expect

from billing.models import Subscription
from tests.accounts.factories import AdminFactory
from tests.e2e.browser import log_in_in_japanese, type_card

pytestmark = pytest.mark.usefixtures("payment_sandbox")


@pytest.fixture
def japanese_admin(page, live_server, transactional_db):
    admin = AdminFactory(email="boss@browser.test")
    log_in_in_japanese(page, live_server, admin.email)
    page.goto(f"{live_server.url}/manage/")
    return admin


def test_trial_then_upgrade_and_pay_by_card_then_a_prorated_upgrade(page, live_server,
                                                                    japanese_admin):
    page.get_by_role("link", name="他のプランを試す").click()
    page.get_by_test_id("try-professional").click()
    expect(page.get_by_test_id("status")).to_have_text("試用中")
    expect(page.get_by_test_id("trial-ends")).to_have_text(re.compile(r"\d{4}-\d{2}-\d{2}"))

    page.get_by_role("link", name="プランを変更する").click()
    page.locator("[data-plan=enterprise]").get_by_role("link", name="アップグレードする").click()
    page.get_by_label("通常ユーザーライセンス").fill("2")
    expect(page.get_by_test_id("due-now")).to_have_text("￥12,672")  # 2 × 5,760 + 10%, live
    page.get_by_role("button", name="続ける").click()

    expect(page.get_by_test_id("due-now")).to_have_text("￥12,672")
    type_card(page, "4242424242424242")
    page.get_by_test_id("pay").click()

    expect(page.get_by_test_id("invoice-number")).to_have_text("INV-000001")
    page.get_by_role("link", name="購入情報の詳細").last.click()
    expect(page.get_by_test_id("current-plan")).to_have_text("エンタープライズ")
    expect(page.get_by_test_id("payment-history")).to_contain_text("INV-000001")
    expect(page.get_by_test_id("default-card")).to_contain_text("Visa •••• 4242")

    page.get_by_role("link", name="プランを変更する").click()
    page.locator("[data-plan=ultimate]").get_by_role("link", name="アップグレードする").click()
    page.get_by_role("button", name="続ける").click()
    lines = page.get_by_test_id("lines")
    expect(lines).to_contain_text("エンタープライズの未使用期間分のクレジット")
    expect(lines).to_contain_text("アルティメット")
    page.get_by_test_id("pay").click()
    expect(page.get_by_test_id("invoice-number")).to_have_text("INV-000002")


def test_a_declined_card_shows_the_reason_and_keeps_the_plan(page, live_server, japanese_admin):
    page.goto(f"{live_server.url}/manage/plans/standard/")
    page.get_by_role("button", name="続ける").click()
    type_card(page, "4000000000000341")
    page.get_by_test_id("pay").click()

    expect(page.get_by_test_id("pay-error")).to_contain_text("カードが拒否されました")
    subscription = Subscription.objects.get(organisation=japanese_admin.organisation)
    assert subscription.plan.code == "free"
    page.goto(f"{live_server.url}/manage/")
    expect(page.get_by_test_id("current-plan")).to_have_text("無料")


def test_the_live_price_shows_a_refusal_in_place_and_recovers(page, live_server,
                                                              japanese_admin):
    page.goto(f"{live_server.url}/manage/plans/standard/")
    page.get_by_label("通常ユーザーライセンス").fill("0")

    expect(page.get_by_test_id("summary").get_by_role("alert")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_have_text("スタンダード")  # still the page

    page.get_by_label("通常ユーザーライセンス").fill("1")
    expect(page.get_by_test_id("due-now")).to_have_text("￥2,244")  # 2,040 + 10%
