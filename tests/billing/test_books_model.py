"""A model that tries every order: random sequences of what admins, support staff and the jobs do
to one organisation, on PostgreSQL and the payment sandbox, with the books checked after every
step (`check_books`' rules, and the processor's charges and refunds equal to Kanri's payments).

The actions: a card added (one that pays, or one every charge declines), a trial, a change of
plan or licences and its Pay, Switch to Free, users invited and deactivated, Renew while past due
or locked, support's credit grant, refund (part or rest) and change without charging, and the
clock travelling 1 to 62 days with every subscription-life sweep run at the new time, as beat
would. A refusal with a message (BillingError) is an answer, not a failure; anything else fails.
Each example runs in a savepoint that is rolled back at its end; the sandbox keeps its customers,
which later examples never see. CI runs a bounded number of examples; KANRI_MODEL_EXAMPLES and
KANRI_MODEL_STEPS make a longer run.
"""
import datetime as dt
import itertools
import os

import pytest
from django.db import transaction
from djmoney.money import Money
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from accounts.models import LicenceType, Role, User
from accounts.services import user_add, user_deactivate
from billing.books import books_discrepancies
from billing.errors import BillingError
from billing.models import Payment, Status, Subscription
from billing.pricing import Change
from billing.reconcile import processor_differences
from billing.services.charging import payments_settle_open
from billing.services.lifecycle import SWEEPS, renewal_pay_now
from billing.services.payments import quote_pay
from billing.services.quotes import quote_create, quote_switch_to_free
from billing.services.subscriptions import trial_start
from billing.services.support import (
    refundable,
    support_credit_grant,
    support_plan_change,
    support_plan_quote,
    support_refund,
)
from store import clock
from store.models import Plan
from tests.accounts.factories import AdminFactory
from tests.billing.helpers import DECLINING_CARD, GOOD_CARD, card_on_file

pytestmark = pytest.mark.postgres

START = dt.datetime(2027, 1, 30, 1, 0, tzinfo=dt.UTC)
PAID = ("standard", "professional")
_people = itertools.count()


class Books(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.savepoint = transaction.savepoint()
        self.now = START
        with clock.travel(self.now):
            self.admin = AdminFactory()
        self.organisation = self.admin.organisation
        self.staff = User.objects.create_user(f"support{next(_people)}@kanri.example",
                                              "pw-not-used", is_staff=True)

    def teardown(self):
        transaction.savepoint_rollback(self.savepoint)

    def act(self, action, *args, **kwargs):
        """Run one action at the model's time; a refusal with a message is an answer."""
        with clock.travel(self.now):
            try:
                return action(*args, **kwargs)
            except BillingError as refused:
                assert str(refused), f"{action.__name__} refused without a message"
                return None

    @property
    def subscription(self) -> Subscription:
        return Subscription.objects.get(organisation=self.organisation)

    @rule(number=st.sampled_from([GOOD_CARD, GOOD_CARD, DECLINING_CARD]))
    def add_card(self, number):
        self.act(card_on_file, organisation=self.organisation, acting_user=self.admin,
                 number=number)

    @rule(plan=st.sampled_from(PAID))
    def start_trial(self, plan):
        self.act(trial_start, organisation=self.organisation,
                 plan=Plan.objects.get(code=plan), acting_user=self.admin)

    @rule(plan=st.sampled_from(PAID), cycle=st.sampled_from(["monthly", "yearly"]),
          regular=st.integers(1, 6), team=st.integers(0, 2), storage=st.integers(0, 2))
    def change_and_pay(self, plan, cycle, regular, team, storage):
        quote = self.act(quote_create, organisation=self.organisation, acting_user=self.admin,
                         change=Change(Plan.objects.get(code=plan), cycle, regular, team,
                                       storage))
        if quote is not None:
            self.act(quote_pay, organisation=self.organisation, quote_id=quote.pk,
                     acting_user=self.admin)

    @rule()
    def switch_to_free(self):
        quote = self.act(quote_switch_to_free, organisation=self.organisation,
                         acting_user=self.admin)
        if quote is not None:
            self.act(quote_pay, organisation=self.organisation, quote_id=quote.pk,
                     acting_user=self.admin)

    @rule(team=st.booleans())
    def invite_user(self, team):
        self.act(user_add, organisation=self.organisation,
                 email=f"person{next(_people)}@model.test", name="Person", role=Role.MEMBER,
                 licence_type=LicenceType.TEAM if team else LicenceType.REGULAR,
                 acting_user=self.admin)

    @rule(data=st.data())
    def deactivate_user(self, data):
        people = list(self.organisation.users.filter(is_active=True, role=Role.MEMBER))
        if people:
            self.act(user_deactivate, user=data.draw(st.sampled_from(people)),
                     acting_user=self.admin, reason="model")

    @precondition(lambda self: self.subscription.status in (Status.PAST_DUE, Status.LOCKED))
    @rule()
    def renew(self):
        self.act(renewal_pay_now, organisation=self.organisation, acting_user=self.admin)

    @rule(yen=st.sampled_from([100, 1000, 5000, 20000]))
    def support_grants_credit(self, yen):
        self.act(support_credit_grant, subscription_id=self.subscription.pk,
                 amount=Money(yen, "JPY"), staff=self.staff, reason="model")

    @rule(data=st.data(), whole=st.booleans())
    def support_refunds(self, data, whole):
        payments = [payment for payment in Payment.objects.filter(
            organisation=self.organisation, paid_with=Payment.Source.CARD,
            state=Payment.State.SUCCEEDED) if refundable(payment).amount > 0]
        if not payments:
            return
        payment = data.draw(st.sampled_from(payments))
        left = refundable(payment)
        amount = left if whole else Money(max(1, int(left.amount) // 3), left.currency)
        self.act(support_refund, payment_id=payment.pk, amount=amount, staff=self.staff,
                 reason="model")

    @rule(plan=st.sampled_from(PAID), regular=st.integers(1, 6))
    def support_changes_without_charging(self, plan, regular):
        quote = self.act(support_plan_quote, organisation=self.organisation,
                         change=Change(Plan.objects.get(code=plan), "monthly", regular, 0, 0),
                         staff=self.staff)
        if quote is not None:
            self.act(support_plan_change, organisation=self.organisation, quote_id=quote.pk,
                     charge=False, staff=self.staff,
                     reason="model")

    @rule(days=st.sampled_from([1, 3, 7, 15, 31, 62]))
    def time_passes(self, days):
        self.now += dt.timedelta(days=days)
        with clock.travel(self.now):
            payments_settle_open()
            for sweep in SWEEPS.values():
                sweep()

    @invariant()
    def the_books_balance(self):
        assert books_discrepancies() == []

    @invariant()
    def the_processor_agrees(self):
        assert processor_differences() == []


@pytest.mark.django_db
def test_the_books_balance_after_every_step_in_any_order(catalog, payment_sandbox):
    Books.TestCase.settings = settings(
        max_examples=int(os.environ.get("KANRI_MODEL_EXAMPLES", "8")),
        stateful_step_count=int(os.environ.get("KANRI_MODEL_STEPS", "12")),
        deadline=None, derandomize="KANRI_MODEL_EXAMPLES" not in os.environ, database=None,
        suppress_health_check=list(HealthCheck))
    Books.TestCase().runTest()
