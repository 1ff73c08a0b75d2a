"""A model that tries every order: random sequences of what admins, support staff and the jobs do
to one organisation, on PostgreSQL and the payment sandbox, with the books checked after every
step (`check_books`' rules, and the processor's charges and refunds equal to Kanri's payments).

The actions: a card added (one that pays, or one every charge declines), a trial, a change of
plan or licences and its Pay (also with the processor stopped, and with its answer to the charge
dropped on the way back by a loopback proxy after it charged), Switch to Free, users invited and
deactivated, Renew while past due or locked, support's credit grant, refund (part or rest),
change without charging, trial extension, unlock and retry charge, deleting the account (the
example's last act), and the clock travelling 1 to 62 days with every subscription-life sweep run
at the new time, as beat would. A refusal with a message (BillingError) is an answer, not a
failure; anything else fails.
Each example runs in a savepoint that is rolled back at its end; the sandbox keeps its customers,
which later examples never see. CI runs a bounded number of examples; KANRI_MODEL_EXAMPLES and
KANRI_MODEL_STEPS make a longer run.
"""
import datetime as dt
import itertools
import os

import pytest
from django.conf import settings as django_settings
from django.db import transaction
from django.test import override_settings
from djmoney.money import Money
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from accounts.models import LicenceType, Role, User
from accounts.services import user_add, user_deactivate
from billing.books import books_discrepancies
from billing.errors import BillingError
from billing.models import Payment, Status, Subscription
from billing.pricing import Change
from billing.reconcile import processor_differences
from billing.services.charging import payments_settle_open
from billing.services.closure import organisation_delete
from billing.services.lifecycle import SWEEPS, renewal_pay_now
from billing.services.payments import quote_pay
from billing.services.quotes import quote_create, quote_switch_to_free
from billing.services.subscriptions import trial_start
from billing.services.support import (
    refundable,
    support_charge_retry,
    support_credit_grant,
    support_plan_change,
    support_plan_quote,
    support_refund,
    support_trial_extend,
    support_unlock,
)
from store import clock
from store.models import Plan
from tests.accounts.factories import AdminFactory
from tests.billing.faults import AnswerDroppingProxy, processor_down
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

        self.closed = False

    def teardown(self):
        transaction.savepoint_rollback(self.savepoint)

    def act(self, action, *args, **kwargs):
        """Run one action at the model's time; a refusal with a message is an answer. After the
        account is deleted nobody acts on it any more (its people are gone)."""
        if self.closed:
            return None
        with clock.travel(self.now):
            try:
                return action(*args, **kwargs)
            except BillingError as refused:
                assert str(refused), f"{action.__name__} refused without a message"
                return None

    @property
    def subscription(self) -> Subscription:
        return Subscription.objects.get(organisation=self.organisation)

    @initialize(start=st.sampled_from(["free", "paying", "card declining at renewal"]))
    def begin(self, start):
        """Where the organisation starts: on Free, or on a paid month with a card, which may
        decline the renewal (so that dunning is reached as often as the rest)."""
        if start == "free":
            return
        self.add_card(GOOD_CARD)
        self.change_and_pay("standard", "monthly", 3, 1, 0)
        if start == "card declining at renewal":
            self.add_card(DECLINING_CARD)

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

    @rule(plan=st.sampled_from(PAID), regular=st.integers(1, 6),
          fault=st.sampled_from(["down", "answer dropped"]))
    def change_and_pay_while_the_processor_fails(self, plan, regular, fault):
        """Pay when the processor is stopped, or when it charges and its answer is lost: the
        attempt stays open until the settle job asks the processor (at the next time step)."""
        quote = self.act(quote_create, organisation=self.organisation, acting_user=self.admin,
                         change=Change(Plan.objects.get(code=plan), "monthly", regular, 0, 0))
        if quote is None:
            return
        if fault == "down":
            with processor_down():
                self.act(quote_pay, organisation=self.organisation, quote_id=quote.pk,
                         acting_user=self.admin)
            return
        proxy = AnswerDroppingProxy(django_settings.STRIPE_API_BASE)
        proxy.drop_answers_to(r"POST /v1/payment_intents/\w+/confirm")
        try:
            with override_settings(STRIPE_API_BASE=proxy.url, STRIPE_TIMEOUT_SECONDS=5):
                self.act(quote_pay, organisation=self.organisation, quote_id=quote.pk,
                         acting_user=self.admin)
        finally:
            proxy.close()

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

    @rule(yen=st.sampled_from([100, 500, 1000, 5000]))
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

    @rule(days=st.integers(1, 20))
    def support_extends_the_trial(self, days):
        ends = self.subscription.trial_ends_at
        if ends is not None:
            self.act(support_trial_extend, subscription_id=self.subscription.pk,
                     ends_at=ends + dt.timedelta(days=days), staff=self.staff, reason="model")

    @rule(days=st.integers(1, 20))
    def support_unlocks(self, days):
        self.act(support_unlock, subscription_id=self.subscription.pk,
                 grace_ends_at=self.now + dt.timedelta(days=days), staff=self.staff,
                 reason="model")

    @rule()
    def support_retries_the_charge(self):
        self.act(support_charge_retry, subscription_id=self.subscription.pk, staff=self.staff,
                 reason="model")

    # Late in an example, so the account has a life to close first.
    @precondition(lambda self: self.now >= START + dt.timedelta(days=60))
    @rule()
    def delete_account(self):
        self.act(organisation_delete, organisation=self.organisation, acting_user=self.admin)
        self.organisation.refresh_from_db()
        self.closed = self.organisation.closed_at is not None  # or refused: a payment is open

    @rule(days=st.sampled_from([1, 3, 7, 15, 31, 62]))
    def time_passes(self, days):
        self.until(self.now + dt.timedelta(days=days))

    @rule(moment=st.sampled_from(["current_period_end", "trial_ends_at", "next_retry_at",
                                  "grace_ends_at"]))
    def time_passes_to_the_next_date(self, moment):
        """Straight to the subscription's next renewal, trial end, retry or lock."""
        when = getattr(self.subscription, moment)
        if when is not None and when > self.now:
            self.until(when + dt.timedelta(minutes=1))

    def until(self, moment: dt.datetime) -> None:
        """The clock moves on; the jobs run at the new time, as beat would."""
        self.now = moment
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
        stateful_step_count=int(os.environ.get("KANRI_MODEL_STEPS", "15")),
        deadline=None, derandomize="KANRI_MODEL_EXAMPLES" not in os.environ, database=None,
        suppress_health_check=list(HealthCheck))
    Books.TestCase().runTest()
