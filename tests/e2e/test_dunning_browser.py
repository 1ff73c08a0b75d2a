"""In the browser, in Japanese: a renewal declined for real (purchase, a declining card, the
renewal sweep), then the admin sees the dates, changes the card in the processor's form and
renews: active again, the renewal paid."""
import datetime as dt

import pytest
from playwright.sync_api import expect

from billing.models import Invoice, Status, Subscription
from billing.pricing import Change
from billing.services import lifecycle
from billing.services.payments import quote_pay
from billing.services.quotes import quote_create
from store import clock
from store.models import Plan
from tests.accounts.factories import AdminFactory
from tests.billing.helpers import DECLINING_CARD, card_on_file
from tests.e2e.browser import log_in_in_japanese, type_card

pytestmark = pytest.mark.usefixtures("payment_sandbox")


def test_a_past_due_admin_changes_the_card_and_renews(page, live_server, transactional_db):
    admin = AdminFactory(email="late@browser.test")
    card_on_file(organisation=admin.organisation, acting_user=admin)
    bought = dt.datetime(2027, 1, 10, 0, 0, tzinfo=dt.UTC)
    with clock.travel(bought):
        quote = quote_create(organisation=admin.organisation, acting_user=admin,
                             change=Change(Plan.objects.get(code="standard"), "monthly", 3, 0,
                                           0))
        quote_pay(organisation=admin.organisation, quote_id=quote.pk, acting_user=admin)
    card_on_file(organisation=admin.organisation, acting_user=admin, number=DECLINING_CARD)
    due = Subscription.objects.get(organisation=admin.organisation).current_period_end
    with clock.travel(due):
        lifecycle.sweep_renewals()
    assert Subscription.objects.get(organisation=admin.organisation).status == Status.PAST_DUE

    with clock.travel(due + dt.timedelta(days=2)):  # the live server reads the same clock
        log_in_in_japanese(page, live_server, admin.email)
        page.goto(f"{live_server.url}/manage/")
        timeline = page.get_by_test_id("dunning-timeline")
        expect(timeline).to_contain_text((due + dt.timedelta(days=15)).strftime("%Y-%m-%d"))

        page.get_by_test_id("dunning").get_by_test_id("change-card").click()
        type_card(page, "4242424242424242")
        page.get_by_test_id("save-card").click()
        expect(page.get_by_test_id("default-card")).to_contain_text("4242")
        page.get_by_test_id("dunning").get_by_test_id("renew").click()
        expect(page.get_by_test_id("invoice-number")).to_be_visible()

    subscription = Subscription.objects.get(organisation=admin.organisation)
    assert subscription.status == Status.ACTIVE and subscription.current_period_start == due
    assert Invoice.objects.get(kind="renewal").state == "paid"
