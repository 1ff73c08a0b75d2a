"""A subscription's life walked day by day with the clock (no sleeping): trials, renewals,
dunning, the lock and its choices, the move to Free. Charges go to localstripe."""
import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.test import Client
from djmoney.money import Money

from billing.models import Invoice, Notification, Payment, Status, Subscription
from billing.pricing import Change
from billing.selectors import free_move_at
from billing.services import lifecycle
from billing.services.payments import quote_pay
from billing.services.quotes import quote_create, quote_switch_to_free
from billing.services.subscriptions import trial_start
from store import clock
from store.models import Plan
from tests.accounts.factories import AdminFactory
from tests.billing.helpers import DECLINING_CARD, GOOD_CARD, card_on_file, processor_charges

pytestmark = pytest.mark.usefixtures("payment_sandbox")
TOKYO = ZoneInfo("Asia/Tokyo")


def tokyo(*args):
    return dt.datetime(*args, tzinfo=TOKYO)


@pytest.fixture
def admin(db):
    return AdminFactory()


def sub(admin) -> Subscription:
    return Subscription.objects.get(organisation=admin.organisation)


def buy(admin, code="standard", cycle="monthly", regular=3):
    quote = quote_create(organisation=admin.organisation, acting_user=admin,
                         change=Change(Plan.objects.get(code=code), cycle, regular, 0, 0))
    result = quote_pay(organisation=admin.organisation, quote_id=quote.pk, acting_user=admin)
    assert result.invoice is not None, result.failure
    return result.invoice


def succeeded(admin) -> list:
    return [i for i in processor_charges(sub(admin).processor_customer_id)
            if i.status == "succeeded"]


_ON_COMMIT = {}


@pytest.fixture(autouse=True)
def _emails_on_commit(django_capture_on_commit_callbacks):
    """The test's transaction never commits: run what would run on commit (the email task,
    eager) as each sweep's transactions end."""
    _ON_COMMIT["capture"] = django_capture_on_commit_callbacks


def run_all_at(moment):
    with clock.travel(moment), _ON_COMMIT["capture"](execute=True):
        return {name: sweep() for name, sweep in lifecycle.SWEEPS.items()}


def kinds(admin) -> list[str]:
    return list(Notification.objects.filter(organisation=admin.organisation)
                .order_by("created_at", "id").values_list("kind", flat=True))


# Trials ---------------------------------------------------------------------------------------

def test_a_trial_is_reminded_three_days_before_and_returns_to_free_at_its_end(admin):
    start = tokyo(2027, 3, 1, 10, 0)
    with clock.travel(start):
        trial_start(organisation=admin.organisation, plan=Plan.objects.get(code="standard"),
                    acting_user=admin)
    ends = sub(admin).trial_ends_at

    run_all_at(ends - dt.timedelta(days=3, minutes=1))  # not yet
    run_all_at(ends - dt.timedelta(days=3))
    run_all_at(ends - dt.timedelta(days=2))  # again: no second reminder
    assert kinds(admin) == ["trial_ending"]
    assert sub(admin).status == Status.TRIALING

    run_all_at(ends)
    run_all_at(ends + dt.timedelta(hours=1))

    subscription = sub(admin)
    assert (subscription.status, subscription.plan.code) == (Status.FREE, "free")
    assert kinds(admin) == ["trial_ending", "trial_ended"]
    assert [m.to for m in mail.outbox] == [[admin.email], [admin.email]]
    assert "スタンダード" in mail.outbox[0].subject  # the organisation's language: Japanese
    browser = Client(HTTP_ACCEPT_LANGUAGE="en")
    browser.force_login(admin)
    with clock.travel(ends + dt.timedelta(days=1)):
        page = browser.get("/manage/").content.decode()
    assert "Your Standard trial ended on" in page


def test_a_trial_bought_before_its_end_is_not_ended(admin):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    with clock.travel(tokyo(2027, 3, 1, 10, 0)):
        trial_start(organisation=admin.organisation, plan=Plan.objects.get(code="standard"),
                    acting_user=admin)
    with clock.travel(tokyo(2027, 3, 5, 10, 0)):
        buy(admin)

    run_all_at(tokyo(2027, 3, 20, 10, 0))

    assert (sub(admin).status, sub(admin).plan.code) == (Status.ACTIVE, "standard")
    assert "trial_ended" not in kinds(admin)


# Renewals -------------------------------------------------------------------------------------

def test_monthly_renewals_follow_the_anchor_through_month_ends(admin):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    with clock.travel(tokyo(2027, 1, 31, 9, 0)):
        buy(admin)

    run_all_at(tokyo(2027, 2, 28, 9, 0))
    assert sub(admin).current_period_end == tokyo(2027, 3, 31, 9, 0)
    run_all_at(tokyo(2027, 3, 31, 9, 0))
    run_all_at(tokyo(2027, 3, 31, 10, 0))  # a rerun changes nothing

    subscription = sub(admin)
    assert (subscription.current_period_start, subscription.current_period_end) == (
        tokyo(2027, 3, 31, 9, 0), tokyo(2027, 4, 30, 9, 0))
    renewals = Invoice.objects.filter(kind="renewal", state="paid").order_by("period_start")
    assert [(i.period_start, i.period_end) for i in renewals] == [
        (tokyo(2027, 2, 28, 9, 0), tokyo(2027, 3, 31, 9, 0)),
        (tokyo(2027, 3, 31, 9, 0), tokyo(2027, 4, 30, 9, 0))]
    assert all(i.amount_paid == Money(6732, "JPY") for i in renewals)
    assert len(succeeded(admin)) == 3
    assert subscription.paid_invoice == renewals.last()
    assert kinds(admin) == ["receipt"] * 3  # the purchase, then each renewal by card


def test_a_yearly_renewal_charges_a_year(admin):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    with clock.travel(tokyo(2028, 2, 29, 9, 0)):
        first = buy(admin, cycle="yearly")

    run_all_at(tokyo(2029, 2, 28, 9, 0))

    renewal = Invoice.objects.get(kind="renewal")
    assert (renewal.period_start, renewal.period_end) == (
        tokyo(2029, 2, 28, 9, 0), tokyo(2030, 2, 28, 9, 0))
    assert renewal.amount_paid == first.amount_paid and renewal.state == "paid"


def test_account_credit_pays_a_renewal_with_no_charge(admin):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    with clock.travel(tokyo(2027, 1, 1, 9, 0)):
        buy(admin, "professional", "yearly", regular=10)
    with clock.travel(tokyo(2027, 1, 2, 9, 0)):
        buy(admin, "standard", "monthly", regular=3)  # a big credit note
    credit_before = sub(admin).credit_balance
    charges_before = len(succeeded(admin))

    run_all_at(tokyo(2027, 2, 2, 9, 0))

    renewal = Invoice.objects.get(kind="renewal")
    assert renewal.state == "paid" and renewal.credit_applied == renewal.total
    assert renewal.amount_paid == Money(0, "JPY")
    # Its line in the payment history says credit paid it; nothing reached the processor.
    assert [(p.paid_with, p.state, p.amount, p.processor_id) for p in renewal.payments.all()] == [
        ("credit", "succeeded", renewal.total, "")]
    assert sub(admin).credit_balance == credit_before - renewal.total
    assert len(succeeded(admin)) == charges_before


# Dunning --------------------------------------------------------------------------------------

def _bought_then_card_declines(admin):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    with clock.travel(tokyo(2027, 1, 10, 9, 0)):
        buy(admin)
    card_on_file(organisation=admin.organisation, acting_user=admin, number=DECLINING_CARD)
    return sub(admin).current_period_end


def test_a_declined_renewal_is_retried_and_paid_on_day_7(admin):
    due = _bought_then_card_declines(admin)

    run_all_at(due)
    subscription = sub(admin)
    assert subscription.status == Status.PAST_DUE
    assert subscription.grace_ends_at == due + dt.timedelta(days=15)
    assert subscription.next_retry_at == due + dt.timedelta(days=1)
    for day in (1, 2, 3, 4):
        run_all_at(due + dt.timedelta(days=day))
    assert sub(admin).next_retry_at == due + dt.timedelta(days=7)
    card_on_file(organisation=admin.organisation, acting_user=admin, number=GOOD_CARD)

    run_all_at(due + dt.timedelta(days=7))

    subscription = sub(admin)
    assert subscription.status == Status.ACTIVE and subscription.grace_ends_at is None
    assert subscription.current_period_start == due  # the period runs from the due date
    invoice = Invoice.objects.get(kind="renewal")
    assert invoice.state == "paid"
    assert list(invoice.payments.order_by("created_at").values_list("state", flat=True)) == [
        "failed", "failed", "failed", "succeeded"]
    assert kinds(admin) == ["receipt"] + ["payment_failed"] * 3 + ["receipt"]
    receipt, first_failure = mail.outbox[:2]  # the purchase's receipt went out first
    assert receipt.attachments[0][0] == "invoice-INV-000001.pdf"
    grace_end = (due + dt.timedelta(days=15)).astimezone(TOKYO).strftime("%Y-%m-%d")
    assert grace_end in first_failure.subject and grace_end in first_failure.body
    assert "/manage/" in first_failure.body


def test_declined_throughout_locks_on_day_15_then_moves_to_free_two_months_later(admin):
    due = _bought_then_card_declines(admin)
    for day in range(0, 16):
        run_all_at(due + dt.timedelta(days=day))

    locked = sub(admin)
    assert locked.status == Status.LOCKED
    assert locked.locked_at == due + dt.timedelta(days=15)
    invoice = locked.open_invoice
    assert invoice.payments.filter(state="failed").count() == 5  # due date + days 1, 3, 7, 14
    free_on = free_move_at(subscription=locked, time_zone=locked.organisation.time_zone)

    run_all_at(free_on - dt.timedelta(minutes=1))
    assert sub(admin).status == Status.LOCKED
    run_all_at(free_on)
    run_all_at(free_on + dt.timedelta(days=1))

    subscription = sub(admin)
    assert (subscription.status, subscription.plan.code) == (Status.FREE, "free")
    assert subscription.open_invoice is None
    assert Invoice.objects.get(pk=invoice.pk).state == "void"
    assert kinds(admin)[-2:] == ["locked", "moved_to_free"]
    assert not succeeded(admin)[1:]  # only the purchase was ever charged


@pytest.fixture
def locked_admin(admin):
    due = _bought_then_card_declines(admin)
    for day in (0, 1, 3, 7, 14, 15):
        run_all_at(due + dt.timedelta(days=day))
    assert sub(admin).status == Status.LOCKED
    return admin, due + dt.timedelta(days=16)


def test_locked_renew_now_pays_the_open_invoice(locked_admin):
    admin, today = locked_admin
    card_on_file(organisation=admin.organisation, acting_user=admin, number=GOOD_CARD)
    invoice = sub(admin).open_invoice

    with clock.travel(today):
        result = lifecycle.renewal_pay_now(organisation=admin.organisation, acting_user=admin)

    assert result.invoice == invoice
    subscription = sub(admin)
    assert (subscription.status, subscription.locked_at) == (Status.ACTIVE, None)
    assert subscription.current_period_start == invoice.period_start


def test_locked_choose_another_plan_voids_the_unpaid_renewal(locked_admin):
    admin, today = locked_admin
    card_on_file(organisation=admin.organisation, acting_user=admin, number=GOOD_CARD)
    invoice = sub(admin).open_invoice

    with clock.travel(today):
        buy(admin, "professional")

    subscription = sub(admin)
    assert (subscription.status, subscription.plan.code) == (Status.ACTIVE, "professional")
    assert subscription.current_period_start == today  # a new period, nothing credited
    assert Invoice.objects.get(pk=invoice.pk).state == "void"


def test_locked_downgrade_to_free_resolves_the_lock_at_once(locked_admin):
    admin, today = locked_admin

    with clock.travel(today):
        quote = quote_switch_to_free(organisation=admin.organisation, acting_user=admin)
        result = quote_pay(organisation=admin.organisation, quote_id=quote.pk, acting_user=admin)

    assert result.invoice is not None and quote.amount_due == Money(0, "JPY")
    assert quote.credit_to_account == Money(0, "JPY")  # an unpaid period earns no credit
    subscription = sub(admin)
    assert (subscription.status, subscription.plan.code) == (Status.FREE, "free")
    assert not Invoice.objects.filter(state="open").exists()


def test_a_renewal_with_no_card_goes_past_due_with_a_failed_attempt_on_record(admin):
    from billing.services.subscriptions import subscription_apply_quote  # paid without a card

    quote = quote_create(organisation=admin.organisation, acting_user=admin,
                         change=Change(Plan.objects.get(code="standard"), "monthly", 3, 0, 0))
    with clock.travel(tokyo(2027, 1, 10, 9, 0)):
        subscription = Subscription.objects.select_for_update().get(
            organisation=admin.organisation)
        subscription_apply_quote(quote=quote, subscription=subscription, payment=None,
                                 actor=admin)

    run_all_at(sub(admin).current_period_end)

    assert sub(admin).status == Status.PAST_DUE
    [payment] = Payment.objects.all()
    assert (payment.state, payment.failure_code) == ("failed", "no_card")


def test_a_renewal_whose_answer_was_lost_is_settled_by_the_next_sweep_and_charged_once(
        admin, payment_sandbox):
    from django.test import override_settings

    from tests.billing.faults import AnswerDroppingProxy

    card_on_file(organisation=admin.organisation, acting_user=admin)
    with clock.travel(tokyo(2027, 1, 10, 9, 0)):
        buy(admin)
    due = sub(admin).current_period_end
    proxy = AnswerDroppingProxy(payment_sandbox)
    proxy.drop_answers_to(r"/confirm")
    try:
        with override_settings(STRIPE_API_BASE=proxy.url), clock.travel(due):
            lifecycle.sweep_renewals()
    finally:
        proxy.close()
    pending = Payment.objects.get(invoice__kind="renewal")
    assert pending.state == Payment.State.PENDING and pending.processor_id
    assert sub(admin).status == Status.ACTIVE and sub(admin).open_invoice is not None

    run_all_at(due + dt.timedelta(minutes=15))
    run_all_at(due + dt.timedelta(minutes=30))

    pending.refresh_from_db()
    assert pending.state == Payment.State.SUCCEEDED
    subscription = sub(admin)
    assert subscription.open_invoice is None and subscription.paid_invoice == pending.invoice
    assert len(succeeded(admin)) == 2  # the purchase and one renewal
    assert Payment.objects.filter(invoice__kind="renewal").count() == 1


def test_the_payment_history_shows_an_unpaid_renewal_as_open_with_its_plan(admin, client):
    due = _bought_then_card_declines(admin)
    run_all_at(due)
    client.force_login(admin)

    with clock.travel(due + dt.timedelta(days=1)):
        page = client.get("/manage/", HTTP_ACCEPT_LANGUAGE="en").content.decode()

    history = page[page.index('data-testid="payment-history"'):]
    assert history.count('data-testid="invoice-state">Open<') == 1
    assert history.count('data-testid="invoice-state">Paid<') == 1
    assert history.count("Standard") == 2  # the renewal names its plan too
