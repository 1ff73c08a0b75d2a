"""In the browser, in Japanese: add 2 regular licences and 1 GB and pay; invite users up to the
limit and see the refusal with its way out; deactivate a user and see the panel's offer; remove
the unused licence and see the credit on the details page."""
import pytest
from playwright.sync_api import expect

from accounts.models import User
from billing.models import Subscription
from billing.pricing import Change
from billing.services.payments import quote_pay
from billing.services.quotes import quote_create
from store.models import Plan
from tests.accounts.factories import AdminFactory
from tests.billing.helpers import card_on_file
from tests.e2e.browser import log_in_in_japanese

pytestmark = pytest.mark.usefixtures("payment_sandbox")


def add_user(page, live_server, email):
    page.goto(f"{live_server.url}/manage/users/add/")
    page.get_by_label("メールアドレス").fill(email)
    page.get_by_role("button", name="ユーザーを追加").click()


def test_licences_are_bought_used_up_and_returned(page, live_server, transactional_db):
    admin = AdminFactory(email="licences@browser.test")
    card_on_file(organisation=admin.organisation, acting_user=admin)
    quote = quote_create(organisation=admin.organisation, acting_user=admin, change=Change(
        Plan.objects.get(code="standard"), "monthly", 3, 0, 0))
    assert quote_pay(organisation=admin.organisation, quote_id=quote.pk,
                     acting_user=admin).invoice is not None

    log_in_in_japanese(page, live_server, admin.email)
    page.goto(f"{live_server.url}/manage/")
    page.get_by_test_id("add-users-addons").click()
    expect(page.get_by_role("heading", name="ユーザー/アドオンのアップグレード")).to_be_visible()
    page.get_by_label("通常ユーザーライセンス").fill("2")
    page.get_by_label("追加ストレージ(GB)").fill("1")
    expect(page.get_by_test_id("due-now")).to_contain_text("￥")
    page.get_by_test_id("continue").click()
    page.get_by_test_id("pay").click()
    expect(page.get_by_test_id("invoice-number")).to_be_visible()
    subscription = Subscription.objects.get(organisation=admin.organisation)
    assert (subscription.regular_licences, subscription.storage_units) == (5, 1)

    for n in range(4):  # 5 licences: the admin and 4 more
        add_user(page, live_server, f"member{n}@browser.test")
        expect(page.get_by_role("status")).to_contain_text(f"member{n}@browser.test")
    add_user(page, live_server, "one-too-many@browser.test")
    expect(page.get_by_role("alert").first).to_contain_text("通常ライセンス 5 件はすべて使用中です")
    expect(page.get_by_test_id("buy-missing-licences")).to_contain_text("1")
    assert not User.objects.filter(email="one-too-many@browser.test").exists()

    page.goto(f"{live_server.url}/manage/users/")
    page.locator('[data-testid="user-row"][data-email="member0@browser.test"]').get_by_test_id(
        "deactivate").click()
    expect(page.get_by_test_id("deactivate-confirm")).to_contain_text("請求")
    page.get_by_test_id("confirm-deactivate").click()
    expect(page.get_by_test_id("licence-regular")).to_contain_text("無効 1 件")
    page.get_by_test_id("remove-unused-regular").click()
    expect(page.get_by_test_id("lines")).to_contain_text("クレジット")
    page.get_by_test_id("pay").click()
    expect(page.get_by_test_id("invoice-number")).to_be_visible()

    page.goto(f"{live_server.url}/manage/")
    expect(page.get_by_test_id("credit")).not_to_have_text("￥0")
    assert Subscription.objects.get(organisation=admin.organisation).regular_licences == 4
