"""In the browser: sign up, log in, Manage for admins only, the Japanese labels."""
import re

from playwright.sync_api import expect

from tests.accounts.factories import PASSWORD, AdminFactory, UserFactory


def _log_in(page, live_server, email):
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def _sign_up(page, live_server, password):
    page.goto(f"{live_server.url}/signup/")
    page.get_by_label("Organisation name").fill("Browser K.K.")
    page.get_by_label("Email address").fill("owner@browser.test")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign up").click()


def test_sign_up_creates_the_organisation_and_logs_the_admin_in(page, live_server, catalog):
    _sign_up(page, live_server, "correct-horse-battery-9")

    expect(page.get_by_role("heading", level=1)).to_have_text("Browser K.K.")
    expect(page.get_by_text("Your organisation is on the Free plan.")).to_be_visible()


def test_sign_up_with_a_weak_password_says_why(page, live_server, catalog):
    _sign_up(page, live_server, "password")

    expect(page.get_by_role("alert").first).to_contain_text("too short")


def test_the_admin_opens_manage_from_the_profile_menu(page, live_server, transactional_db):
    admin = AdminFactory(email="boss@browser.test")
    _log_in(page, live_server, admin.email)

    page.get_by_test_id("profile-menu").locator("summary").click()
    page.get_by_test_id("manage-link").click()

    expect(page).to_have_url(re.compile(r"/manage/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Subscription details")
    expect(page.get_by_test_id("subscription")).to_contain_text(admin.organisation.name)


def test_a_member_has_no_manage_entry_and_is_refused_at_its_url(page, live_server,
                                                                transactional_db):
    member = UserFactory(email="member@browser.test")
    _log_in(page, live_server, member.email)

    page.get_by_test_id("profile-menu").locator("summary").click()
    expect(page.get_by_test_id("manage-link")).to_have_count(0)
    response = page.goto(f"{live_server.url}/manage/")

    assert response.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")


def test_switching_to_japanese_shows_the_seed_labels(page, live_server, transactional_db):
    admin = AdminFactory(email="boss@browser.test")
    _log_in(page, live_server, admin.email)

    page.get_by_test_id("language-select").select_option("ja")
    page.get_by_role("button", name="Switch").click()
    page.get_by_test_id("profile-menu").locator("summary").click()

    expect(page.get_by_test_id("manage-link")).to_have_text("管理")
    page.get_by_test_id("manage-link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("購入情報の詳細")
    expect(page.get_by_role("button", name="切り替え")).to_be_visible()


def test_the_pricing_cycle_toggle_updates_prices_in_place(page, live_server, catalog):
    page.goto(f"{live_server.url}/pricing/?currency=JPY")
    expect(page.get_by_test_id("price-standard")).to_have_text("¥1,680")

    page.get_by_label("Monthly").check()

    expect(page.get_by_test_id("price-standard")).to_have_text("¥2,040")
    expect(page).to_have_url(re.compile(r"cycle=monthly"))
