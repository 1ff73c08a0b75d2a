"""The licence ledger: every change of purchased licences and storage is an append-only row, and
a subscription's quantities always equal its rows' sums per item."""
import datetime as dt
import importlib
import io

import pytest
from django.apps import apps
from django.core import checks
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from djmoney.money import Money
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.services import organisation_sign_up
from billing.errors import BillingError
from billing.ledger_checks import ledger_mismatches
from billing.models import LedgerItem, LicenceLedgerEntry, Status, Subscription
from billing.models.ledger import LedgerIsAppendOnly
from billing.pricing import Change
from billing.services import lifecycle
from billing.services.closure import organisation_delete
from billing.services.ledger import ledger_record, quantities
from billing.services.payments import quote_pay
from billing.services.quotes import quote_create
from billing.services.subscriptions import (
    subscription_apply_quote,
    subscription_save,
    subscription_transition,
    trial_start,
)
from store import clock
from store.models import Plan
from tests.accounts.factories import AdminFactory, UserFactory
from tests.billing.factories import paid_quote_applied
from tests.billing.helpers import (
    DECLINING_CARD,
    assert_ledger_matches,
    card_on_file,
)
from tests.store.helpers import admin_login

pytestmark = pytest.mark.django_db
START = dt.datetime(2027, 4, 1, 9, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def rows(subscription) -> list[tuple]:
    """The subscription's ledger, oldest first: (item, delta, quantity after)."""
    return list(LicenceLedgerEntry.objects.filter(subscription=subscription)
                .values_list("item", "delta", "quantity_after"))


def held(subscription) -> tuple[int, int, int]:
    subscription.refresh_from_db()
    return subscription.regular_licences, subscription.team_licences, subscription.storage_units


def buy(admin, code="standard", regular=3, team=0, storage=0):
    quote = quote_create(organisation=admin.organisation, acting_user=admin,
                         change=Change(Plan.objects.get(code=code), "monthly", regular, team,
                                       storage))
    result = quote_pay(organisation=admin.organisation, quote_id=quote.pk, acting_user=admin)
    assert result.invoice is not None, result.failure
    return quote, result.invoice


def run_sweeps_at(moment, capture):
    with clock.travel(moment), capture(execute=True):
        for sweep in lifecycle.SWEEPS.values():
            sweep()


# Every way quantities change writes its rows ---------------------------------------------------

def test_signing_up_opens_the_ledger_with_free_s_three_user_licences(catalog):
    admin = organisation_sign_up(org_name="Sakura Shoji K.K.", email="owner@sakura.test",
                                 password="correct-horse-battery-9")
    subscription = admin.organisation.subscription

    assert rows(subscription) == [(LedgerItem.REGULAR, 3, 3)]  # team and storage: no rows, 0
    entry = LicenceLedgerEntry.objects.get(subscription=subscription)
    assert (entry.organisation, entry.actor, entry.actor_kind, entry.quote) == (
        admin.organisation, None, "system", None)
    assert_ledger_matches()


@pytest.mark.usefixtures("payment_sandbox")
def test_buying_adding_and_removing_write_one_row_per_changed_item_with_quote_and_invoice():
    admin = AdminFactory()
    subscription = admin.organisation.subscription
    card_on_file(organisation=admin.organisation, acting_user=admin)

    with clock.travel(START):
        bought, bought_invoice = buy(admin, regular=5, team=2, storage=3)
    assert rows(subscription)[1:] == [(LedgerItem.REGULAR, 2, 5), (LedgerItem.TEAM, 2, 2),
                                      (LedgerItem.STORAGE, 3, 3)]
    assert set(LicenceLedgerEntry.objects.filter(quote=bought).values_list(
        "invoice", "actor", "actor_kind")) == {(bought_invoice.pk, admin.pk, "user")}
    assert_ledger_matches()

    with clock.travel(START + 10 * DAY):
        added, added_invoice = buy(admin, regular=8, team=2, storage=3)
    assert list(LicenceLedgerEntry.objects.filter(quote=added).values_list(
        "item", "delta", "quantity_after", "invoice")) == [
        (LedgerItem.REGULAR, 3, 8, added_invoice.pk)]
    assert_ledger_matches()

    with clock.travel(START + 20 * DAY):
        removed, removed_invoice = buy(admin, regular=6, team=2, storage=1)
    assert removed.amount_due == Money(0, "JPY")  # removed licences become credit
    assert list(LicenceLedgerEntry.objects.filter(quote=removed).values_list(
        "item", "delta", "quantity_after", "invoice", "created_at")) == [
        (LedgerItem.REGULAR, -2, 6, removed_invoice.pk, START + 20 * DAY),
        (LedgerItem.STORAGE, -2, 1, removed_invoice.pk, START + 20 * DAY)]
    assert held(subscription) == (6, 2, 1)
    assert_ledger_matches()


def test_a_quote_that_changes_only_the_plan_writes_no_row():
    admin = AdminFactory()
    subscription = paid_quote_applied(admin=admin, regular=4)
    before = rows(subscription)

    paid_quote_applied(admin=admin, plan="professional", regular=4)

    assert rows(subscription) == before == [(LedgerItem.REGULAR, 3, 3), (LedgerItem.REGULAR, 1, 4)]
    assert_ledger_matches()


def test_a_trial_and_its_end_back_to_free_keep_the_ledger(django_capture_on_commit_callbacks):
    admin = AdminFactory()
    with clock.travel(START):
        subscription = trial_start(organisation=admin.organisation,
                                   plan=Plan.objects.get(code="standard"), acting_user=admin)
    assert_ledger_matches()

    run_sweeps_at(START + 16 * DAY, django_capture_on_commit_callbacks)

    assert Subscription.objects.get(pk=subscription.pk).status == Status.FREE
    assert rows(subscription) == [(LedgerItem.REGULAR, 3, 3)]  # a trial keeps Free's licences
    assert_ledger_matches()


@pytest.mark.usefixtures("payment_sandbox")
def test_locked_then_moved_to_free_records_what_the_move_took_away(
        django_capture_on_commit_callbacks):
    admin = AdminFactory()
    subscription = admin.organisation.subscription
    card_on_file(organisation=admin.organisation, acting_user=admin)
    with clock.travel(START):
        buy(admin, regular=5, team=2, storage=1)
    card_on_file(organisation=admin.organisation, acting_user=admin, number=DECLINING_CARD)
    due = Subscription.objects.get(pk=subscription.pk).current_period_end
    for day in (0, 1, 3, 7, 14, 15):
        run_sweeps_at(due + day * DAY, django_capture_on_commit_callbacks)
    assert Subscription.objects.get(pk=subscription.pk).status == Status.LOCKED
    assert_ledger_matches()

    run_sweeps_at(due + 90 * DAY, django_capture_on_commit_callbacks)

    assert Subscription.objects.get(pk=subscription.pk).status == Status.FREE
    assert held(subscription) == (3, 0, 0)
    moved = LicenceLedgerEntry.objects.filter(subscription=subscription, quote=None,
                                              reason="locked for too long: moved to Free")
    assert list(moved.values_list("item", "delta", "quantity_after", "actor_kind")) == [
        (LedgerItem.REGULAR, -2, 3, "system"), (LedgerItem.TEAM, -2, 0, "system"),
        (LedgerItem.STORAGE, -1, 0, "system")]
    assert_ledger_matches()


def test_closing_the_account_keeps_the_rows_and_forgets_who_made_them():
    admin = AdminFactory()
    subscription = paid_quote_applied(admin=admin, regular=4, team=1)

    organisation_delete(organisation=admin.organisation, acting_user=admin)

    assert rows(subscription) == [(LedgerItem.REGULAR, 3, 3), (LedgerItem.REGULAR, 1, 4),
                                  (LedgerItem.TEAM, 1, 1)]
    assert set(LicenceLedgerEntry.objects.filter(subscription=subscription, actor_kind="user")
               .values_list("actor", flat=True)) == {None}
    assert_ledger_matches()


CHANGES = st.lists(st.tuples(st.sampled_from(["free", "standard", "professional"]),
                              st.integers(1, 12), st.integers(0, 4), st.integers(0, 4)),
                    min_size=1, max_size=5)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=CHANGES)
def test_any_sequence_of_paid_changes_keeps_the_ledger_a_running_sum(changes):
    admin = AdminFactory()
    subscription = admin.organisation.subscription
    for code, regular, team, storage in changes:
        try:
            quote = quote_create(organisation=admin.organisation, acting_user=admin,
                                 change=Change(Plan.objects.get(code=code), "monthly", regular,
                                               team, storage))
        except BillingError:
            continue  # refused (Free's limits, no change): nothing applied, nothing recorded
        locked = Subscription.objects.select_for_update().get(pk=subscription.pk)
        subscription_apply_quote(quote=quote, subscription=locked, payment=None, actor=admin)

    now = dict(zip(LedgerItem.values, held(subscription), strict=True))
    for item in LedgerItem.values:
        running = 0
        for _, delta, after in [row for row in rows(subscription) if row[0] == item]:
            running += delta
            assert after == running
        assert running == now[item]
    assert_ledger_matches()


# The sweeps: one INSERT per batch ----------------------------------------------------------

def locked_long_ago(*, regular: int, team: int, storage: int) -> Subscription:
    """A subscription that bought these quantities, then locked 70 days ago."""
    subscription = paid_quote_applied(admin=AdminFactory(), regular=regular, team=team,
                                      storage=storage)
    for step in (Status.PAST_DUE, Status.LOCKED):
        subscription_transition(subscription=subscription, to=step, actor=None,
                                reason="renewal charge failed (test)")
        subscription_save(subscription)
    Subscription.objects.filter(pk=subscription.pk).update(
        locked_at=clock.now() - 70 * DAY)  # not a quantity: the ledger is unaffected
    return subscription


def ledger_inserts(sweep) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        sweep()
    return [query["sql"] for query in queries.captured_queries
            if query["sql"].startswith(f'INSERT INTO "{LicenceLedgerEntry._meta.db_table}"')]


def test_the_move_to_free_writes_one_ledger_insert_per_batch_whatever_its_size(monkeypatch):
    one = [locked_long_ago(regular=6, team=1, storage=0)]
    assert len(ledger_inserts(lifecycle.sweep_moves_to_free)) == 1
    five = [locked_long_ago(regular=3 + n, team=n, storage=n % 2) for n in range(5)]
    assert len(ledger_inserts(lifecycle.sweep_moves_to_free)) == 1
    seven = [locked_long_ago(regular=9, team=2, storage=2) for _ in range(7)]
    monkeypatch.setattr(lifecycle, "BATCH", 3)
    assert len(ledger_inserts(lifecycle.sweep_moves_to_free)) == 3  # batches of 3, 3 and 1

    assert not Subscription.objects.exclude(status=Status.FREE).exists()
    assert rows(one[0])[-2:] == [(LedgerItem.REGULAR, -3, 3), (LedgerItem.TEAM, -1, 0)]
    assert rows(five[0])[-1:] == [(LedgerItem.REGULAR, 3, 3)]  # bought 3, kept 3: nothing moved
    assert all(rows(s)[-3:] == [(LedgerItem.REGULAR, -6, 3), (LedgerItem.TEAM, -2, 0),
                                (LedgerItem.STORAGE, -2, 0)] for s in seven)
    assert_ledger_matches()


def test_a_trial_s_end_writes_rows_only_for_quantities_the_move_changed(monkeypatch):
    trials = []
    for _ in range(5):
        admin = AdminFactory()
        trials.append(trial_start(organisation=admin.organisation,
                                  plan=Plan.objects.get(code="standard"), acting_user=admin))
    # Quantities a trial cannot reach through the product, written with their ledger rows.
    for subscription in trials[:3]:
        before = quantities(subscription)
        Subscription.objects.filter(pk=subscription.pk).update(regular_licences=7,
                                                               storage_units=2)
        subscription.refresh_from_db()
        ledger_record(subscription, before, quantities(subscription), actor=None,
                      reason="test")
    Subscription.objects.filter(pk__in=[s.pk for s in trials]).update(
        trial_ends_at=clock.now() - DAY)
    monkeypatch.setattr(lifecycle, "BATCH", 2)

    assert len(ledger_inserts(lifecycle.sweep_trial_ends)) == 2  # the third batch: no change

    assert rows(trials[0])[-2:] == [(LedgerItem.REGULAR, -4, 3), (LedgerItem.STORAGE, -2, 0)]
    assert rows(trials[4]) == [(LedgerItem.REGULAR, 3, 3)]
    assert_ledger_matches()


# Verification on a live database --------------------------------------------------------------

def check_command() -> tuple[int, str]:
    """The command's exit status as `manage.py` would set it, and what it printed. (In-process:
    `manage.py` itself would close the test's database connection when it exits.)"""
    out = io.StringIO()
    try:
        call_command("check_licence_ledger", stdout=out)
    except CommandError as error:
        return error.returncode, f"{out.getvalue()}{error}"
    return 0, out.getvalue()


def test_the_command_names_a_subscription_changed_behind_the_ledger_s_back():
    honest = AdminFactory().organisation.subscription
    tampered = paid_quote_applied(admin=AdminFactory(), regular=4, team=1)
    assert check_command() == (0, "ledger matches 2 subscriptions\n")

    Subscription.objects.filter(pk=tampered.pk).update(team_licences=5)

    code, output = check_command()
    assert code == 1
    assert f"subscription {tampered.pk} ({tampered.organisation.name}): team 5, ledger 1" in output
    assert f"subscription {honest.pk} " not in output
    assert [m.subscription_id for m in ledger_mismatches()] == [tampered.pk]


def test_the_database_system_check_warns_of_mismatches_without_blocking_migrate():
    subscription = AdminFactory().organisation.subscription
    assert checks.run_checks(databases=["default"], tags=[checks.Tags.database]) == []

    Subscription.objects.filter(pk=subscription.pk).update(regular_licences=2)

    errors = checks.run_checks(databases=["default"], tags=[checks.Tags.database])
    assert [(error.id, error.level) for error in errors] == [("billing.W001", checks.WARNING)]
    assert f"subscription {subscription.pk} " in errors[0].msg
    assert "regular 2, ledger 3" in errors[0].msg
    assert checks.run_checks(tags=[checks.Tags.database]) == []  # only with --database


def test_the_mismatch_query_is_one_query(django_assert_num_queries):
    for regular in (4, 5, 6):
        paid_quote_applied(admin=AdminFactory(), regular=regular)
    with django_assert_num_queries(1):
        assert ledger_mismatches() == []


# Append-only ----------------------------------------------------------------------------------

def test_a_ledger_row_cannot_be_edited_or_deleted():
    entry = LicenceLedgerEntry.objects.get(subscription=AdminFactory().organisation.subscription)
    entry.delta = 30

    with pytest.raises(LedgerIsAppendOnly):
        entry.save()
    with pytest.raises(LedgerIsAppendOnly):
        entry.delete()
    with pytest.raises(LedgerIsAppendOnly):
        LicenceLedgerEntry.objects.filter(pk=entry.pk).update(delta=30)
    with pytest.raises(LedgerIsAppendOnly):
        LicenceLedgerEntry.objects.filter(pk=entry.pk).delete()
    assert LicenceLedgerEntry.objects.values_list("delta", flat=True).get(pk=entry.pk) == 3


def test_support_staff_see_the_ledger_in_admin_read_only(client):
    subscription = paid_quote_applied(admin=AdminFactory(), regular=4)
    AdminFactory()  # another organisation's rows are not found
    admin_login(client, UserFactory(organisation=None, is_staff=True, is_superuser=True))
    entry = LicenceLedgerEntry.objects.filter(subscription=subscription).last()

    found = client.get(reverse("admin:billing_licenceledgerentry_changelist"),
                       {"q": subscription.organisation.name, "item": "regular"})
    edit = client.post(reverse("admin:billing_licenceledgerentry_change", args=[entry.pk]),
                       {"delta": 9})
    delete = client.get(reverse("admin:billing_licenceledgerentry_delete", args=[entry.pk]))

    assert found.status_code == 200 and found.context["cl"].result_count == 2
    assert not found.context["has_add_permission"]
    assert edit.status_code == delete.status_code == 403
    assert LicenceLedgerEntry.objects.get(pk=entry.pk).delta == 1


# The opening balance of subscriptions made before the ledger -----------------------------------

def test_the_opening_balance_migration_writes_rows_once():
    from accounts.models import Organisation

    AdminFactory()  # already has its ledger: untouched
    organisation = Organisation.objects.create(name="Before Ledger K.K.", currency="JPY")
    old = Subscription.objects.create(  # as a subscription made before the ledger existed
        organisation=organisation, plan=Plan.objects.get(code="standard"), currency="JPY",
        regular_licences=7, team_licences=2, storage_units=0,
        credit_balance=Money(0, "JPY"), status=Status.ACTIVE)
    assert [m.subscription_id for m in ledger_mismatches()] == [old.pk]
    migration = importlib.import_module("billing.migrations.0013_licence_ledger")

    migration.open_balances(apps, None)
    migration.open_balances(apps, None)

    assert list(LicenceLedgerEntry.objects.filter(subscription=old).values_list(
        "item", "delta", "quantity_after", "reason", "actor_kind")) == [
        (LedgerItem.REGULAR, 7, 7, "opening balance", "system"),
        (LedgerItem.TEAM, 2, 2, "opening balance", "system")]
    assert LicenceLedgerEntry.objects.count() == 3
    assert_ledger_matches()
