"""The books at the quote: a past-due "change" to what is held is refused (Renew pays the grace
days), and credit comes only from time paid for with money and not refunded (SPEC "The books",
invariant 3 and "Past due → change plan"). Charges and refunds go to localstripe."""
import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.utils import translation
from djmoney.money import Money

from billing.errors import BillingError
from billing.models import Invoice, Status, Subscription
from billing.pricing import Change
from billing.services import lifecycle
from billing.services.payments import quote_pay
from billing.services.quotes import quote_create, quote_switch_to_free
from store import clock
from store.models import Plan
from tests.billing.helpers import DECLINING_CARD, card_on_file

pytestmark = pytest.mark.usefixtures("payment_sandbox")
TOKYO = ZoneInfo("Asia/Tokyo")
BOUGHT = dt.datetime(2027, 1, 10, 9, 0, tzinfo=TOKYO)


def sub(admin) -> Subscription:
    return Subscription.objects.get(organisation=admin.organisation)


def change(code="standard", cycle="monthly", regular=3) -> Change:
    return Change(Plan.objects.get(code=code), cycle, regular, 0, 0)


def buy(admin, code="standard", cycle="monthly", regular=3) -> Invoice:
    quote = quote_create(organisation=admin.organisation, acting_user=admin,
                         change=change(code, cycle, regular))
    result = quote_pay(organisation=admin.organisation, quote_id=quote.pk, acting_user=admin)
    assert result.invoice is not None, result.failure
    return result.invoice


def run_sweeps_at(moment, capture):
    with clock.travel(moment), capture(execute=True):
        return {name: sweep() for name, sweep in lifecycle.SWEEPS.items()}


@pytest.fixture
def past_due_admin(admin, django_capture_on_commit_callbacks):
    """Standard, 3 users, monthly, bought on 10 January; the renewal on 10 February is
    declined: past due from then, with the renewal invoice open."""
    card_on_file(organisation=admin.organisation, acting_user=admin)
    with clock.travel(BOUGHT):
        buy(admin)
    card_on_file(organisation=admin.organisation, acting_user=admin, number=DECLINING_CARD)
    due = sub(admin).current_period_end
    run_sweeps_at(due, django_capture_on_commit_callbacks)
    assert sub(admin).status == Status.PAST_DUE and sub(admin).open_invoice is not None
    return admin, due


# Past due → change plan -----------------------------------------------------------------------

@pytest.mark.parametrize("language, renew", [("en", "Renew subscription"),
                                             ("ja", "サブスクリプションの更新")])
def test_a_past_due_change_to_the_identical_configuration_is_refused(past_due_admin, language,
                                                                      renew):
    admin, due = past_due_admin
    invoice = sub(admin).open_invoice

    with clock.travel(due + dt.timedelta(days=5)), translation.override(language), \
            pytest.raises(BillingError) as refused:
        quote_create(organisation=admin.organisation, acting_user=admin, change=change())

    assert renew in str(refused.value)
    assert refused.value.code == "renew_instead"
    assert Invoice.objects.get(pk=invoice.pk).state == "open"  # the renewal stays owed


def test_the_configure_page_shows_the_refusal_while_past_due(past_due_admin, client):
    admin, due = past_due_admin
    client.force_login(admin)

    with clock.travel(due + dt.timedelta(days=5)):
        response = client.post("/manage/plans/standard/", {
            "cycle": "monthly", "regular_licences": 3, "team_licences": 0, "storage_units": 0},
            HTTP_ACCEPT_LANGUAGE="en")

    assert response.status_code == 400
    assert "Renew subscription" in response.content.decode()
