"""The books through the subscription's life without a person (SPEC "The books"): a renewal
charged again commits its attempt before the processor is asked; a voided renewal gives back the
credit it spent; one failing row never stops a sweep; the move to Free leaves no more active
users than Free's licences; sweeps leave an open payment alone.

Real faults only: PostgreSQL triggers that refuse one organisation's rows, or fail a commit."""
import datetime as dt
import uuid
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.db import DatabaseError, connection
from django.db.models import Sum
from djmoney.money import Money

from accounts.models import AuditEvent, LicenceType, User
from billing.books import books_discrepancies
from billing.models import CreditEntry, Invoice, Payment, Status, Subscription
from billing.pricing import Change
from billing.selectors import free_move_at
from billing.services import lifecycle
from billing.services.licences import active_users
from billing.services.payments import quote_pay
from billing.services.quotes import quote_create
from billing.services.subscriptions import trial_start
from billing.services.support import support_credit_grant
from store import clock
from store.models import Plan
from tests.accounts.factories import AdminFactory, UserFactory
from tests.billing.faults import processor_down
from tests.billing.helpers import DECLINING_CARD, GOOD_CARD, card_on_file, processor_charges
from tests.billing.test_processor_down import BOUGHT, bought

pytestmark = pytest.mark.usefixtures("payment_sandbox")
TOKYO = ZoneInfo("Asia/Tokyo")


def sub(admin) -> Subscription:
    return Subscription.objects.get(organisation=admin.organisation)


def processor_succeeded(admin) -> set[str]:
    return {intent.id for intent in processor_charges(sub(admin).processor_customer_id)
            if intent.status == "succeeded"}


def kanri_charges(admin) -> set[str]:
    """What Kanri has on record as charged, or possibly charged (an attempt still open)."""
    return set(Payment.objects.filter(
        organisation=admin.organisation,
        state__in=[Payment.State.SUCCEEDED, *Payment.OPEN]).exclude(processor_id="")
        .values_list("processor_id", flat=True))


class refused_at_commit:
    """A deferred constraint trigger: the transaction that inserted a matching row fails at its
    commit, whatever it did before (the processor may have charged by then)."""

    def __init__(self, table: str, condition: str):
        self.table, self.condition = table, condition

    def __enter__(self):
        with connection.cursor() as cursor:
            cursor.execute(f"""
                CREATE FUNCTION kanri_test_refuse() RETURNS trigger AS $$
                BEGIN IF {self.condition} THEN RAISE EXCEPTION 'injected commit failure';
                END IF; RETURN NULL; END $$ LANGUAGE plpgsql;
                CREATE CONSTRAINT TRIGGER kanri_test_refuse AFTER INSERT ON {self.table}
                DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
                EXECUTE FUNCTION kanri_test_refuse();""")

    def __exit__(self, *exc):
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER kanri_test_refuse ON {self.table};"
                           "DROP FUNCTION kanri_test_refuse();")


# 1. No charge inside a transaction ---------------------------------------------------------

@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_renewal_charged_again_after_a_silent_processor_commits_its_attempt_first(catalog):
    """The processor did not answer the renewal's first charge; at its next_retry_at the
    renewals sweep charges again. If the attempt's commit fails, nothing may have been charged:
    the processor is asked only after the attempt is committed (three steps)."""
    admin = AdminFactory()
    due = bought(admin)
    with processor_down(), clock.travel(due):
        lifecycle.sweep_renewals()
    subscription = sub(admin)
    assert subscription.status == Status.ACTIVE and subscription.next_retry_at is not None

    with refused_at_commit("billing_payment", "NEW.idempotency_key LIKE '%:attempt:2'"), \
            clock.travel(subscription.next_retry_at), pytest.raises(DatabaseError):
        lifecycle.subscription_renew(subscription_id=subscription.pk)

    # Every charge at the processor has its record in Kanri (SPEC "The books" 1).
    assert processor_succeeded(admin) == kanri_charges(admin)


# 2. A voided invoice gives back the credit it consumed --------------------------------------

def ledger_sum(admin) -> Money:
    total = CreditEntry.objects.filter(organisation=admin.organisation).aggregate(
        total=Sum("amount"))["total"]
    return Money(total or 0, "JPY")


def past_due_with_credit_spent(admin) -> Invoice:
    """Bought Standard; support granted ¥1,000 of credit; the renewal spent it first and the
    card declined the rest: past due, the open invoice holding the ¥1,000."""
    bought(admin, number=DECLINING_CARD)
    support_credit_grant(subscription_id=sub(admin).pk, amount=Money(1000, "JPY"),
                         staff=UserFactory(organisation=None, is_staff=True),
                         reason="goodwill after an outage")
    with clock.travel(sub(admin).current_period_end):
        lifecycle.sweep_renewals()
    subscription = sub(admin)
    assert subscription.status == Status.PAST_DUE
    assert subscription.open_invoice.credit_applied == Money(1000, "JPY")
    assert subscription.credit_balance == Money(0, "JPY")
    return subscription.open_invoice


def assert_credit_given_back(admin, invoice: Invoice) -> None:
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.VOID
    assert sub(admin).credit_balance == Money(1000, "JPY") == ledger_sum(admin)
    # The ledger says where it came back from, and the void invoice nets to nothing.
    assert invoice.credit_entries.aggregate(total=Sum("amount"))["total"] == 0
    assert invoice.credit_entries.filter(kind=CreditEntry.Kind.RETURNED).exists()
    assert not books_discrepancies()


def test_a_renewal_voided_by_a_change_while_past_due_gives_back_the_credit_it_spent(admin):
    invoice = past_due_with_credit_spent(admin)
    card_on_file(organisation=admin.organisation, acting_user=admin, number=GOOD_CARD)

    with clock.travel(invoice.period_start + dt.timedelta(days=2)):
        quote = quote_create(organisation=admin.organisation, acting_user=admin, change=Change(
            Plan.objects.get(code="professional"), "monthly", 3, 0, 0))
        assert quote_pay(organisation=admin.organisation, quote_id=quote.pk,
                         acting_user=admin).charged

    assert_credit_given_back(admin, invoice)


def test_a_renewal_voided_by_the_move_to_free_gives_back_the_credit_it_spent(admin):
    invoice = past_due_with_credit_spent(admin)
    grace_ends = sub(admin).grace_ends_at
    with clock.travel(grace_ends):
        lifecycle.sweep_locks()
    locked = sub(admin)

    with clock.travel(free_move_at(subscription=locked, time_zone=locked.organisation.time_zone)):
        assert lifecycle.sweep_moves_to_free() == {"moved_to_free": 1}

    assert_credit_given_back(admin, invoice)


# 3. One failing row never stops a sweep for the others -------------------------------------

class refused_for:
    """A trigger that refuses inserting one organisation's rows into `table` at once: that
    organisation's service raises, as a bug or a bad row would."""

    def __init__(self, table: str, organisation_id: int):
        self.table, self.organisation_id = table, organisation_id

    def __enter__(self):
        with connection.cursor() as cursor:
            cursor.execute(f"""
                CREATE FUNCTION kanri_test_refuse_org() RETURNS trigger AS $$
                BEGIN IF NEW.organisation_id = {int(self.organisation_id)} THEN
                RAISE EXCEPTION 'injected failure for one organisation'; END IF;
                RETURN NEW; END $$ LANGUAGE plpgsql;
                CREATE TRIGGER kanri_test_refuse_org BEFORE INSERT ON {self.table}
                FOR EACH ROW EXECUTE FUNCTION kanri_test_refuse_org();""")

    def __exit__(self, *exc):
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER kanri_test_refuse_org ON {self.table};"
                           "DROP FUNCTION kanri_test_refuse_org();")


def test_a_renewal_that_fails_does_not_stop_the_sweep_for_later_organisations(db, caplog):
    first, later = AdminFactory(), AdminFactory()
    due = bought(first)
    assert bought(later) == due
    assert sub(first).pk < sub(later).pk  # the failing row comes first

    with refused_for("billing_invoice", first.organisation_id), clock.travel(due):
        counts = lifecycle.sweep_renewals()

    assert counts == {"error": 1, "succeeded": 1}
    assert sub(later).current_period_start == due  # renewed and paid
    assert sub(first).current_period_end == due and sub(first).open_invoice is None
    assert f"subscription {sub(first).pk}" in caplog.text
    with clock.travel(due + dt.timedelta(hours=1)):  # the next run renews it
        assert lifecycle.sweep_renewals() == {"succeeded": 1}
    assert sub(first).current_period_start == due


def test_a_retry_that_fails_does_not_stop_the_sweep_for_later_organisations(db, caplog):
    first, later = AdminFactory(), AdminFactory()
    due = bought(first, number=DECLINING_CARD)
    bought(later, number=DECLINING_CARD)
    with clock.travel(due):
        assert lifecycle.sweep_renewals() == {"failed": 2}
    card_on_file(organisation=later.organisation, acting_user=later, number=GOOD_CARD)
    retry_at = sub(later).next_retry_at

    with refused_for("billing_payment", first.organisation_id), clock.travel(retry_at):
        counts = lifecycle.sweep_retries()

    assert counts == {"retried": 1, "error": 1}
    assert sub(later).status == Status.ACTIVE
    assert sub(first).status == Status.PAST_DUE
    assert f"subscription {sub(first).pk}" in caplog.text


# 4. No more active users than licences after the move to Free ------------------------------

def test_the_move_to_free_keeps_the_admins_and_longest_standing_users_within_free_limits(
        admin, django_capture_on_commit_callbacks):
    organisation = admin.organisation
    card_on_file(organisation=organisation, acting_user=admin)
    with clock.travel(BOUGHT):
        quote = quote_create(organisation=organisation, acting_user=admin, change=Change(
            Plan.objects.get(code="standard"), "monthly", 5, 1, 0))
        assert quote_pay(organisation=organisation, quote_id=quote.pk, acting_user=admin).charged
    card_on_file(organisation=organisation, acting_user=admin, number=DECLINING_CARD)
    # The admin joined last: admins stay first all the same, then by how long they have been.
    admin.date_joined = BOUGHT + dt.timedelta(days=5)
    admin.save(update_fields=["date_joined"])
    members = [UserFactory(organisation=organisation, name=f"Member {n}",
                           date_joined=BOUGHT + dt.timedelta(days=n)) for n in range(4)]
    team = UserFactory(organisation=organisation, name="Team member",
                       licence_type=LicenceType.TEAM, date_joined=BOUGHT - dt.timedelta(days=1))
    due = sub(admin).current_period_end
    with clock.travel(due):
        lifecycle.sweep_renewals()
    with clock.travel(sub(admin).grace_ends_at):
        lifecycle.sweep_locks()
    locked = sub(admin)
    mail.outbox.clear()

    with clock.travel(free_move_at(subscription=locked, time_zone=organisation.time_zone)), \
            django_capture_on_commit_callbacks(execute=True):
        assert lifecycle.sweep_moves_to_free() == {"moved_to_free": 1}

    subscription = sub(admin)
    assert (subscription.regular_licences, subscription.team_licences) == (3, 0)
    assert active_users(organisation.pk) == {"regular": 3, "team": 0}
    active = set(User.objects.filter(organisation=organisation, is_active=True))
    assert active == {admin, members[0], members[1]}
    gone = [members[2], members[3], team]
    audited = AuditEvent.objects.filter(organisation=organisation, action="user.deactivated")
    assert sorted(int(e.target_id) for e in audited) == sorted(u.pk for u in gone)
    assert {(e.actor_kind, e.after["is_active"]) for e in audited} == {("system", False)}
    [email] = mail.outbox
    assert email.to == [admin.email]
    for user in gone:
        assert user.email in email.body
    for user in (members[0], members[1]):
        assert user.email not in email.body
    assert not books_discrepancies()


# 5. Jobs leave an open payment alone --------------------------------------------------------

def payment_in_flight(admin) -> Payment:
    """An attempt another request is still asking the processor about (its lease is live)."""
    return Payment.objects.create(
        organisation=admin.organisation, idempotency_key=f"test:in-flight:{admin.pk}",
        amount=Money(6732, "JPY"), state=Payment.State.PENDING, lease_token=uuid.uuid4(),
        lease_until=clock.now() + dt.timedelta(days=365))


def settled(payment: Payment) -> None:
    Payment.objects.filter(pk=payment.pk).update(state=Payment.State.FAILED,
                                                 lease_until=None, failure_code="card_declined")


def test_the_lock_sweep_leaves_a_subscription_with_an_open_payment_for_the_next_run(admin):
    bought(admin, number=DECLINING_CARD)
    with clock.travel(sub(admin).current_period_end):
        lifecycle.sweep_renewals()
    grace_ends = sub(admin).grace_ends_at
    with clock.travel(grace_ends):
        payment = payment_in_flight(admin)

        assert lifecycle.sweep_locks() == {"locked": 0}
        assert sub(admin).status == Status.PAST_DUE

        settled(payment)
        assert lifecycle.sweep_locks() == {"locked": 1}
    assert sub(admin).status == Status.LOCKED


def test_the_renewals_sweep_leaves_a_subscription_with_an_open_payment_for_the_next_run(admin):
    due = bought(admin)
    with clock.travel(due):
        payment = payment_in_flight(admin)

        assert lifecycle.sweep_renewals() == {"payment_open": 1}
        assert not Invoice.objects.filter(organisation=admin.organisation,
                                          kind=Invoice.Kind.RENEWAL).exists()

        settled(payment)
        assert lifecycle.sweep_renewals() == {"succeeded": 1}
    assert sub(admin).current_period_start == due


def test_the_trial_end_sweep_leaves_a_trial_with_an_open_payment_for_the_next_run(admin):
    """Buying the plan at the trial's last minute: the sweep does not move it to Free under
    the payment's feet."""
    trial = trial_start(organisation=admin.organisation,
                        plan=Plan.objects.get(code="standard"), acting_user=admin)
    with clock.travel(trial.trial_ends_at):
        payment = payment_in_flight(admin)

        assert lifecycle.sweep_trial_ends() == {"trials_ended": 0}
        assert sub(admin).status == Status.TRIALING

        settled(payment)
        assert lifecycle.sweep_trial_ends() == {"trials_ended": 1}


def test_the_move_to_free_sweep_leaves_a_subscription_with_an_open_payment_for_the_next_run(
        admin):
    bought(admin, number=DECLINING_CARD)
    with clock.travel(sub(admin).current_period_end):
        lifecycle.sweep_renewals()
    with clock.travel(sub(admin).grace_ends_at):
        lifecycle.sweep_locks()
    locked = sub(admin)
    with clock.travel(free_move_at(subscription=locked, time_zone=locked.organisation.time_zone)):
        payment = payment_in_flight(admin)

        assert lifecycle.sweep_moves_to_free() == {"moved_to_free": 0}
        assert sub(admin).status == Status.LOCKED

        settled(payment)
        assert lifecycle.sweep_moves_to_free() == {"moved_to_free": 1}
