"""In the browser, in Japanese: a locked organisation's admin is sent to the choice screen from
any page and chooses the Free plan; its members are told their administrator must act; a
past-due organisation sees the dates of what comes next.

The lock is set directly on the Subscription row (status, payment_failed_at, grace_ends_at,
locked_at): walking a subscription there takes a purchase, a declining card and sixteen days of
sweeps, which tests/billing/test_lifecycle.py does. open_invoice stays None: the Free path never
reads it (voiding it on the way is the lifecycle tests' business), and making one would need
that same walk."""
import datetime as dt
import re

import pytest
from playwright.sync_api import expect

from billing.models import Status, Subscription
from store import clock
from store.models import Plan
from tests.accounts.factories import AdminFactory, UserFactory
from tests.e2e.browser import log_in_in_japanese

pytestmark = pytest.mark.usefixtures("payment_sandbox")


def _set_subscription(organisation, **fields):
    Subscription.objects.filter(organisation=organisation).update(
        plan=Plan.objects.get(code="standard"), **fields)


def _locked(organisation):
    now = clock.now()
    _set_subscription(organisation, status=Status.LOCKED,
                      payment_failed_at=now - dt.timedelta(days=16),
                      grace_ends_at=now - dt.timedelta(days=1),
                      locked_at=now - dt.timedelta(days=1), next_retry_at=None)


def test_a_locked_admin_is_sent_to_the_choices_and_downgrades_to_free(page, live_server,
                                                                     transactional_db):
    admin = AdminFactory(email="boss@locked.test")
    _locked(admin.organisation)
    log_in_in_japanese(page, live_server, admin.email)

    for path in ("/manage/", "/manage/users/", "/manage/trial/"):
        page.goto(f"{live_server.url}{path}")
        expect(page).to_have_url(re.compile(r"/manage/locked/$"))
    choices = page.get_by_test_id("choices")
    expect(choices.get_by_role("button", name="サブスクリプションの更新")).to_be_visible()
    expect(choices.get_by_role("link", name="他のプランの選択")).to_be_visible()
    expect(choices.get_by_role("button", name="無料プランへのダウングレード")).to_be_visible()

    choices.get_by_role("button", name="無料プランへのダウングレード").click()
    expect(page.get_by_test_id("due-now")).to_have_text("￥0")
    page.get_by_test_id("pay").click()  # confirms the move on the review

    expect(page.get_by_test_id("invoice-number")).to_be_visible()
    subscription = Subscription.objects.select_related("plan").get(
        organisation=admin.organisation)
    assert (subscription.status, subscription.plan.code) == (Status.FREE, "free")
    page.goto(f"{live_server.url}/manage/")
    expect(page).to_have_url(re.compile(r"/manage/$"))  # unlocked
    expect(page.get_by_test_id("current-plan")).to_have_text("無料")


def test_a_member_of_a_locked_organisation_is_told_the_administrator_must_act(
        page, live_server, transactional_db):
    admin = AdminFactory()
    member = UserFactory(organisation=admin.organisation, email="member@locked.test")
    _locked(admin.organisation)
    log_in_in_japanese(page, live_server, member.email)

    expect(page.get_by_test_id("administrator-must-act")).to_contain_text(
        "管理者による対応が必要です")
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "組織のアカウントはロックされています")


def test_a_past_due_admin_sees_the_dates_of_what_comes_next(page, live_server,
                                                            transactional_db):
    admin = AdminFactory(email="boss@pastdue.test")
    _set_subscription(admin.organisation, status=Status.PAST_DUE,
                      payment_failed_at=dt.datetime(2027, 12, 16, 0, 0, tzinfo=dt.UTC),
                      next_retry_at=dt.datetime(2027, 12, 17, 0, 0, tzinfo=dt.UTC),
                      grace_ends_at=dt.datetime(2027, 12, 31, 0, 0, tzinfo=dt.UTC))
    log_in_in_japanese(page, live_server, admin.email)

    page.goto(f"{live_server.url}/manage/")

    dunning = page.get_by_test_id("dunning")
    expect(dunning.get_by_role("heading")).to_have_text("猶予期間")
    expect(dunning).to_contain_text("猶予期間は 2027-12-31 に終了し")
    expect(dunning).to_contain_text("2028-02-29 に無料プランへ移行します")
    expect(dunning.get_by_role("button", name="サブスクリプションの更新")).to_be_visible()
