"""Changing plan through a quote: proration, credit, tax, payment, and what the ledger keeps."""
import datetime as dt
from decimal import Decimal

import pytest
from djmoney.money import Money

from accounts.models import AuditEvent, LicenceType
from billing.errors import BillingError
from billing.models import (
    CreditEntry,
    Invoice,
    Payment,
    Quote,
    Status,
    Subscription,
    SubscriptionStatusChange,
)
from billing.services.payments import quote_pay
from billing.services.quotes import Change, quote_create
from billing.services.subscriptions import subscription_transition, trial_start
from store import clock
from store.models import Plan, Price
from tests.accounts.factories import AdminFactory, UserFactory
from tests.billing.helpers import DECLINING_CARD, card_on_file, processor_charges

pytestmark = pytest.mark.usefixtures("payment_sandbox")

START = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def admin(db):
    return AdminFactory()


def plan(code):
    return Plan.objects.get(code=code)


def buy(admin, code="standard", cycle="monthly", regular=3, team=0, storage=0):
    quote = quote_create(organisation=admin.organisation, acting_user=admin,
                         change=Change(plan(code), cycle, regular, team, storage))
    return quote, quote_pay(organisation=admin.organisation, quote_id=quote.pk,
                            acting_user=admin)


def subscription(admin):
    return Subscription.objects.get(organisation=admin.organisation)


def test_a_new_organisation_is_on_free(admin):
    sub = subscription(admin)
    assert (sub.status, sub.plan.code, sub.regular_licences) == (Status.FREE, "free", 3)


def test_buying_standard_from_free_charges_a_full_month_with_tax(admin):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    with clock.travel(START):
        quote, result = buy(admin, regular=3)

    sub = subscription(admin)
    assert result.failure == "" and result.invoice is not None
    assert quote.subtotal == Money(3 * 2040, "JPY")
    assert quote.tax == Money(612, "JPY")
    assert result.invoice.amount_paid == Money(6732, "JPY")
    assert (sub.status, sub.plan.code, sub.cycle) == (Status.ACTIVE, "standard", "monthly")
    assert (sub.current_period_start, sub.current_period_end) == (
        START, dt.datetime(2027, 1, 1, 9, 0, tzinfo=dt.UTC))
    [charge] = processor_charges(sub.processor_customer_id)
    assert (charge.amount, charge.currency, charge.status) == (6732, "jpy", "succeeded")
    assert Payment.objects.get().state == Payment.State.SUCCEEDED
    change = SubscriptionStatusChange.objects.get()
    assert (change.from_status, change.to_status, change.actor) == ("free", "active", admin)
    assert AuditEvent.objects.filter(action="subscription.changed").count() == 1


def test_upgrading_halfway_charges_the_difference_for_the_remaining_half(admin):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    with clock.travel(START):
        buy(admin, "standard", regular=3)
    halfway = dt.datetime(2026, 12, 16, 21, 0, tzinfo=dt.UTC)  # 15.5 of 31 days left
    with clock.travel(halfway):
        quote, result = buy(admin, "professional", regular=3)

    credit, charge = sorted(quote.lines.all(), key=lambda line: line.amount.amount)
    assert credit.fraction == Decimal("0.5")
    assert credit.amount == Money(-3060, "JPY")  # 3 × 2,040 × ½
    assert charge.amount == Money(5040, "JPY")  # 3 × 3,360 × ½
    assert quote.subtotal == Money(1980, "JPY")
    assert quote.tax == Money(198, "JPY")
    assert result.invoice.amount_paid == Money(2178, "JPY")
    sub = subscription(admin)
    assert sub.plan.code == "professional"
    assert sub.current_period_end == dt.datetime(2027, 1, 1, 9, 0, tzinfo=dt.UTC)


def test_downgrading_credits_the_unused_part_and_the_credit_pays_the_next_upgrade(admin):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    with clock.travel(START):
        buy(admin, "professional", regular=3)
    halfway = dt.datetime(2026, 12, 16, 21, 0, tzinfo=dt.UTC)
    with clock.travel(halfway):
        quote, result = buy(admin, "standard", regular=3)

    assert quote.total == Money(-1980 - 198, "JPY")
    assert quote.amount_due == Money(0, "JPY")
    assert result.invoice.credit_to_account == Money(2178, "JPY")
    sub = subscription(admin)
    assert sub.credit_balance == Money(2178, "JPY")
    assert len(processor_charges(sub.processor_customer_id)) == 1  # the downgrade charged nothing

    with clock.travel(halfway + dt.timedelta(hours=1)):
        back, paid = buy(admin, "professional", regular=3)
    assert back.credit_applied == back.total  # about ¥2,178: fully covered by credit
    assert paid.invoice.amount_paid == Money(0, "JPY")
    assert len(processor_charges(sub.processor_customer_id)) == 1
    balance = sum(e.amount.amount for e in CreditEntry.objects.filter(
        organisation=admin.organisation))
    assert subscription(admin).credit_balance == Money(balance, "JPY")


def test_a_declined_card_records_the_reason_and_changes_nothing(admin):
    card_on_file(organisation=admin.organisation, acting_user=admin, number=DECLINING_CARD)
    before = subscription(admin)

    quote, result = buy(admin, "standard")

    assert result.invoice is None
    assert "declined" in result.failure
    payment = Payment.objects.get()
    assert payment.state == Payment.State.FAILED and "declined" in payment.failure_reason
    after = subscription(admin)
    assert (after.plan.code, after.status, after.version) == ("free", "free", before.version)
    assert not Invoice.objects.exists()
    assert Quote.objects.get().state == Quote.State.OPEN
    assert AuditEvent.objects.filter(action="payment.failed").exists()


def test_paying_the_same_quote_twice_charges_once_and_shows_the_same_invoice(admin):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    quote, first = buy(admin)

    second = quote_pay(organisation=admin.organisation, quote_id=quote.pk, acting_user=admin)

    assert second.invoice == first.invoice
    assert len(processor_charges(subscription(admin).processor_customer_id)) == 1
    assert Invoice.objects.count() == 1


def test_an_expired_quote_is_refused_and_nothing_is_charged(admin):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    with clock.travel(START):
        quote = quote_create(organisation=admin.organisation, acting_user=admin,
                             change=Change(plan("standard"), "monthly", 3, 0, 0))
    with clock.travel(START + dt.timedelta(minutes=31)), pytest.raises(BillingError,
                                                                        match="expired"):
        quote_pay(organisation=admin.organisation, quote_id=quote.pk, acting_user=admin)

    assert not Payment.objects.exists()
    assert subscription(admin).plan.code == "free"


def test_a_quote_whose_prices_changed_is_refused(admin):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    quote = quote_create(organisation=admin.organisation, acting_user=admin,
                         change=Change(plan("standard"), "monthly", 3, 0, 0))
    Price.objects.create(plan=plan("standard"), cycle="monthly", amount=Money(2100, "JPY"),
                         effective_from=clock.now())

    with pytest.raises(BillingError, match="Prices changed"):
        quote_pay(organisation=admin.organisation, quote_id=quote.pk, acting_user=admin)
    assert not Payment.objects.exists()


def test_a_quote_made_before_another_change_is_refused(admin):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    stale = quote_create(organisation=admin.organisation, acting_user=admin,
                         change=Change(plan("standard"), "monthly", 3, 0, 0))
    buy(admin, "professional")

    with pytest.raises(BillingError, match="changed after this quote"):
        quote_pay(organisation=admin.organisation, quote_id=stale.pk, acting_user=admin)
    assert subscription(admin).plan.code == "professional"


def test_fewer_licences_than_active_users_is_refused_with_how_many_to_deactivate(admin):
    UserFactory.create_batch(4, organisation=admin.organisation)  # 5 active regular users

    with pytest.raises(BillingError, match="deactivate 2 users"):
        quote_create(organisation=admin.organisation, acting_user=admin,
                     change=Change(plan("standard"), "monthly", 3, 0, 0))


def test_free_allows_three_users_at_most(admin):
    with pytest.raises(BillingError, match="at most 3 users"):
        quote_create(organisation=admin.organisation, acting_user=admin,
                     change=Change(plan("free"), "monthly", 4, 0, 0))


def test_downgrading_below_the_record_count_warns_with_figures(admin):
    admin.organisation.record_count = 12_340
    admin.organisation.save()

    quote = quote_create(organisation=admin.organisation, acting_user=admin,
                         change=Change(plan("standard"), "monthly", 3, 0, 0))

    assert quote.warnings == [{"kind": "records", "usage": 12_340, "limit": 10_000}]


def test_paying_without_a_card_asks_for_one(admin):
    quote = quote_create(organisation=admin.organisation, acting_user=admin,
                         change=Change(plan("standard"), "monthly", 3, 0, 0))

    with pytest.raises(BillingError, match="Add a card"):
        quote_pay(organisation=admin.organisation, quote_id=quote.pk, acting_user=admin)


def test_team_licences_and_storage_are_billed_as_add_ons(admin):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    UserFactory(organisation=admin.organisation, licence_type=LicenceType.TEAM)

    quote, result = buy(admin, "standard", "yearly", regular=2, team=2, storage=3)

    assert quote.subtotal == Money(2 * 20160 + 2 * 12000 + 3 * 6000, "JPY")
    sub = subscription(admin)
    assert (sub.team_licences, sub.storage_units, sub.cycle) == (2, 3, "yearly")
    assert sub.current_period_end.year == sub.current_period_start.year + 1


def test_a_trial_of_a_paid_plan_needs_no_card_and_happens_once(admin):
    with clock.travel(START):
        trial_start(organisation=admin.organisation, plan=plan("enterprise"), acting_user=admin)
    sub = subscription(admin)
    assert (sub.status, sub.plan.code) == (Status.TRIALING, "enterprise")
    assert sub.trial_ends_at == START + dt.timedelta(days=15)

    with pytest.raises(BillingError, match="Trials start from the Free plan"):
        trial_start(organisation=admin.organisation, plan=plan("ultimate"), acting_user=admin)


def test_buying_during_a_trial_ends_it_and_starts_a_paid_period_now(admin):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    with clock.travel(START):
        trial_start(organisation=admin.organisation, plan=plan("standard"), acting_user=admin)
    paid_at = START + dt.timedelta(days=4)
    with clock.travel(paid_at):
        quote, result = buy(admin, "standard")

    sub = subscription(admin)
    assert (sub.status, sub.trial_ends_at, sub.current_period_start) == (
        Status.ACTIVE, None, paid_at)
    assert quote.subtotal == Money(3 * 2040, "JPY")


def test_switching_to_free_credits_the_unused_time(admin):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    with clock.travel(START):
        buy(admin, "standard")
    with clock.travel(dt.datetime(2026, 12, 16, 21, 0, tzinfo=dt.UTC)):
        quote, result = buy(admin, "free")

    sub = subscription(admin)
    assert (sub.status, sub.plan.code, sub.current_period_end) == (Status.FREE, "free", None)
    assert sub.credit_balance == Money(3060 + 306, "JPY")
    assert result.invoice.amount_paid == Money(0, "JPY")


def test_monthly_to_yearly_credits_the_month_left_and_starts_a_year_now(admin):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    with clock.travel(START):
        buy(admin, "standard", "monthly", regular=3)
    switch_at = dt.datetime(2026, 12, 16, 21, 0, tzinfo=dt.UTC)
    with clock.travel(switch_at):
        quote, result = buy(admin, "standard", "yearly", regular=3)

    credit = quote.lines.get(kind="credit")
    charge = quote.lines.get(kind="charge")
    assert (credit.fraction, credit.amount) == (Decimal("0.5"), Money(-3060, "JPY"))
    assert (charge.fraction, charge.amount) == (Decimal(1), Money(3 * 20160, "JPY"))
    sub = subscription(admin)
    assert (sub.cycle, sub.current_period_start, sub.current_period_end) == (
        "yearly", switch_at, dt.datetime(2027, 12, 16, 21, 0, tzinfo=dt.UTC))


def test_invoice_numbers_run_without_gaps_across_organisations(admin):
    other = AdminFactory()
    for payer in (admin, other, admin):
        card_on_file(organisation=payer.organisation, acting_user=payer)
    buy(admin, "standard")
    buy(other, "standard")
    buy(admin, "professional")

    assert list(Invoice.objects.order_by("pk").values_list("number", flat=True)) == [
        "INV-000001", "INV-000002", "INV-000003"]


def test_a_plan_tried_once_cannot_be_tried_again(admin):
    trial_start(organisation=admin.organisation, plan=plan("enterprise"), acting_user=admin)
    buy(admin, "free")  # ends the trial early, back on Free

    assert subscription(admin).status == Status.FREE
    with pytest.raises(BillingError, match="already tried Enterprise"):
        trial_start(organisation=admin.organisation, plan=plan("enterprise"), acting_user=admin)


def test_an_illegal_status_move_is_refused_and_writes_no_history(admin):
    sub = subscription(admin)

    with pytest.raises(BillingError, match="cannot go from free to locked"):
        subscription_transition(subscription=sub, to=Status.LOCKED, actor=admin, reason="test")
    assert not SubscriptionStatusChange.objects.exists()
