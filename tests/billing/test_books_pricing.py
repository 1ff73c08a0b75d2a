"""The books at the quote: a past-due "change" to what is held is refused (Renew pays the grace
days), and credit comes only from time paid for with money and not refunded (SPEC "The books",
invariant 3 and "Past due → change plan"). Charges and refunds go to localstripe."""
import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.utils import translation
from djmoney.money import Money

from billing.books import books_discrepancies
from billing.errors import BillingError
from billing.models import Invoice, Payment, Status, Subscription
from billing.pricing import Change
from billing.services import lifecycle
from billing.services.payments import quote_pay
from billing.services.quotes import quote_create, quote_switch_to_free
from billing.services.support import support_plan_change, support_plan_quote, support_refund
from store import clock
from store.models import Plan
from tests.accounts.factories import UserFactory
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


def _pay(admin, quote) -> Invoice:
    result = quote_pay(organisation=admin.organisation, quote_id=quote.pk, acting_user=admin)
    assert result.invoice is not None, result.failure
    return result.invoice


def test_a_past_due_change_charges_the_grace_days_used_at_the_old_price(past_due_admin):
    """Standard, 3 users at ¥2,040 a month = ¥6,120. Due 10 February (a 28-day period to
    10 March); a change to Professional on 17 February: 7 of 28 days used = ¼ × ¥6,120 =
    ¥1,530 at the old price, plus Professional 3 × ¥3,360 = ¥10,080 for a month from now.
    Subtotal ¥11,610, tax 10% ¥1,161, total ¥12,771."""
    admin, due = past_due_admin
    renewal = sub(admin).open_invoice
    card_on_file(organisation=admin.organisation, acting_user=admin)
    now = due + dt.timedelta(days=7)

    with clock.travel(now):
        quote = quote_create(organisation=admin.organisation, acting_user=admin,
                             change=change("professional"))
        invoice = _pay(admin, quote)

    lines = [(line.item.code, line.quantity, line.amount, line.period_start, line.period_end)
             for line in invoice.lines.order_by("id")]
    assert lines == [("standard", 3, Money(1530, "JPY"), due, now),
                     ("professional", 3, Money(10080, "JPY"), now, sub(admin).current_period_end)]
    assert (invoice.subtotal, invoice.tax, invoice.total, invoice.amount_paid) == (
        Money(11610, "JPY"), Money(1161, "JPY"), Money(12771, "JPY"), Money(12771, "JPY"))
    assert Invoice.objects.get(pk=renewal.pk).state == "void"
    subscription = sub(admin)
    assert (subscription.status, subscription.current_period_start) == (Status.ACTIVE, now)
    assert books_discrepancies() == []

    with clock.travel(now + dt.timedelta(hours=1)):  # the grace days are used: never credited
        credits = quote_switch_to_free(organisation=admin.organisation,
                                       acting_user=admin).lines.filter(kind="credit")
    assert [line.credits_line.item.code for line in credits] == ["professional"]


def test_a_past_due_change_of_cycle_charges_the_grace_days_and_can_be_paid(past_due_admin):
    """The grace days keep their monthly price when the new configuration is yearly: ¥1,530
    + Standard yearly 3 × ¥20,160 = ¥60,480; subtotal ¥62,010, tax ¥6,201, total ¥68,211."""
    admin, due = past_due_admin
    card_on_file(organisation=admin.organisation, acting_user=admin)

    with clock.travel(due + dt.timedelta(days=7)):
        quote = quote_create(organisation=admin.organisation, acting_user=admin,
                             change=change("standard", "yearly"))
        invoice = _pay(admin, quote)

    assert [line.amount for line in invoice.lines.order_by("id")] == [
        Money(1530, "JPY"), Money(60480, "JPY")]
    assert invoice.total == Money(68211, "JPY")
    assert sub(admin).cycle == "yearly"


# Credit is earned, never made ------------------------------------------------------------------

@pytest.fixture
def staff(db):
    return UserFactory(organisation=None, is_staff=True)


def _switch_to_free(admin):
    quote = quote_switch_to_free(organisation=admin.organisation, acting_user=admin)
    return quote, list(quote.lines.filter(kind="credit"))


def _bought_and_refunded(admin, staff, amount):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    with clock.travel(BOUGHT):
        invoice = buy(admin)
        support_refund(payment_id=Payment.objects.get(invoice=invoice).pk,
                       amount=Money(amount, "JPY"), staff=staff, reason="customer asked")
    assert invoice.total == Money(6732, "JPY")
    return invoice


def test_a_period_refunded_in_full_earns_no_credit(admin, staff):
    _bought_and_refunded(admin, staff, 6732)

    with clock.travel(BOUGHT + dt.timedelta(days=1)):
        quote, credits = _switch_to_free(admin)

    assert credits == []
    assert quote.credit_to_account == Money(0, "JPY")


def test_a_period_refunded_in_half_earns_half_the_credit(admin, staff):
    """Standard ¥6,120 + tax ¥612 = ¥6,732 paid for 10 January to 10 February (31 days);
    ¥3,366 refunded. Switching to Free half way (25 January 21:00) credits half of the half
    that stays paid: ¼ × ¥6,120 = ¥1,530, tax ¥153, ¥1,683 to the account."""
    _bought_and_refunded(admin, staff, 3366)

    with clock.travel(BOUGHT + dt.timedelta(days=15, hours=12)):
        quote, [credit] = _switch_to_free(admin)

    assert credit.amount == Money(-1530, "JPY")
    assert quote.credit_to_account == Money(1683, "JPY")


def test_a_plan_given_by_support_without_charging_earns_no_credit(admin, staff):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    with clock.travel(BOUGHT):
        quote = support_plan_quote(organisation=admin.organisation, staff=staff,
                                   change=change("professional"))
        invoice = support_plan_change(organisation=admin.organisation, quote_id=quote.pk,
                                      charge=False, staff=staff, reason="goodwill")
    assert invoice.amount_waived == invoice.total and invoice.total.amount > 0

    with clock.travel(BOUGHT + dt.timedelta(days=1)):
        free, credits = _switch_to_free(admin)
        invoice = _pay(admin, free)
        standard = quote_create(organisation=admin.organisation, acting_user=admin,
                                change=change("standard"))

    assert credits == [] and free.credit_to_account == Money(0, "JPY")
    assert sub(admin).credit_balance == Money(0, "JPY")
    assert standard.amount_due == standard.total == Money(6732, "JPY")  # the card pays it all
    assert books_discrepancies() == []


def test_a_plan_given_by_support_keeps_the_credit_of_the_time_paid_before(admin, staff):
    """Standard ¥6,120 a month, paid, 10 January to 10 February. Half way (25 January 21:00)
    support gives Professional without charging: −¥3,060 for Standard's unused half, ¥5,040
    for Professional's half, the rest waived. Switching to Free at once credits the ¥3,060 of
    Standard that was paid for, not Professional's ¥5,040 that nobody paid."""
    card_on_file(organisation=admin.organisation, acting_user=admin)
    with clock.travel(BOUGHT):
        buy(admin)
    half_way = BOUGHT + dt.timedelta(days=15, hours=12)
    with clock.travel(half_way):
        quote = support_plan_quote(organisation=admin.organisation, staff=staff,
                                   change=change("professional"))
        support_plan_change(organisation=admin.organisation, quote_id=quote.pk, charge=False,
                            staff=staff, reason="goodwill")
        free, [credit] = _switch_to_free(admin)

    assert [line.amount for line in quote.lines.order_by("id")] == [
        Money(-3060, "JPY"), Money(5040, "JPY")]
    assert credit.amount == Money(-3060, "JPY")


@pytest.fixture
def locked_admin(past_due_admin, django_capture_on_commit_callbacks):
    admin, due = past_due_admin
    for day in (1, 3, 7, 14, 15):
        run_sweeps_at(due + dt.timedelta(days=day), django_capture_on_commit_callbacks)
    assert sub(admin).status == Status.LOCKED
    return admin, due


def test_a_locked_change_charges_the_grace_days_up_to_the_lock_only(locked_admin):
    """Locked on day 15 of the 28-day unpaid period, changed on day 20: 15 of 28 days of
    ¥6,120 = ¥3,278.57, ¥3,279 (the locked days are free), plus Professional ¥10,080."""
    admin, due = locked_admin
    card_on_file(organisation=admin.organisation, acting_user=admin)

    with clock.travel(due + dt.timedelta(days=20)):
        quote = quote_create(organisation=admin.organisation, acting_user=admin,
                             change=change("professional"))

    [grace, professional] = quote.lines.order_by("id")
    assert (grace.amount, grace.period_end) == (Money(3279, "JPY"), due + dt.timedelta(days=15))
    assert professional.amount == Money(10080, "JPY")


def test_the_configure_page_opened_while_past_due_points_to_renew(past_due_admin, client):
    admin, due = past_due_admin
    client.force_login(admin)

    with clock.travel(due + dt.timedelta(days=5)):
        response = client.get("/manage/plans/standard/", HTTP_ACCEPT_LANGUAGE="ja")

    assert response.status_code == 200
    assert "サブスクリプションの更新" in response.content.decode()
