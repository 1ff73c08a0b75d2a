"""Support staff resolve billing cases in Django admin: each action through the admin
pages (form → what will change → confirm), the service it calls, the audit row naming the staff
member and the reason; the permission boundary; and the issue's "done when" stories. Charges and
refunds go to localstripe."""
import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.core import mail
from django.core.management import call_command
from djmoney.money import Money

from accounts.models import AuditEvent, User
from billing.models import (
    CreditEntry,
    CreditNote,
    Invoice,
    Notification,
    Payment,
    Quote,
    Status,
    Subscription,
)
from billing.pricing import Change
from billing.services import lifecycle
from billing.services.payments import quote_pay
from billing.services.quotes import quote_create
from store import clock
from store.models import Plan
from tests.accounts.factories import AdminFactory
from tests.billing.factories import subscription_in
from tests.billing.faults import processor_down
from tests.billing.helpers import (
    DECLINING_CARD,
    GOOD_CARD,
    _sandbox,
    card_on_file,
    processor_charges,
)
from tests.store.helpers import admin_login

pytestmark = pytest.mark.usefixtures("payment_sandbox")
TOKYO = ZoneInfo("Asia/Tokyo")


@pytest.fixture
def staff(db):
    """A support staff member as `create_support_user` makes one: staff, no organisation."""
    user = User.objects.create_user("support@kanri.example", "pw-not-used", is_staff=True)
    user.groups.add(Group.objects.get(name="support"))
    return user


@pytest.fixture
def staff_client(client, staff):
    admin_login(client, staff)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def form_time(moment: dt.datetime) -> str:
    return moment.astimezone(ZoneInfo(settings.TIME_ZONE)).strftime("%Y-%m-%d %H:%M:%S")


def support_url(model: str, pk, action: str) -> str:
    return f"/admin/billing/{model}/{pk}/support/{action}/"


def act(client, model: str, pk, action: str, **data):
    """Fill the action's form, check the confirmation page shows what will change, confirm."""
    review = client.post(support_url(model, pk, action), data)
    assert review.status_code == 200
    errors = review.context["form"].errors
    assert not errors, errors
    assert "What will change" in review.content.decode()
    assert not review.context["carried"].get("confirm")
    done = client.post(support_url(model, pk, action), {**review.context["carried"],
                                                         "confirm": "1"})
    if done.status_code == 200:  # refused: the form again, with the reason
        pytest.fail(str(done.context["form"].errors))
    assert done.status_code == 302
    return review


def audited(action: str) -> AuditEvent:
    return AuditEvent.objects.get(action=action)


def assert_audited_by(event: AuditEvent, staff, reason: str) -> None:
    assert (event.actor, event.actor_kind, event.actor_label, event.reason) == (
        staff, "staff", staff.email, reason)


def sub(organisation) -> Subscription:
    return Subscription.objects.get(organisation=organisation)


def buy(admin, code="standard", regular=3):
    quote = quote_create(organisation=admin.organisation, acting_user=admin,
                         change=Change(Plan.objects.get(code=code), "monthly", regular, 0, 0))
    result = quote_pay(organisation=admin.organisation, quote_id=quote.pk, acting_user=admin)
    assert result.invoice is not None, result.failure
    return result.invoice


def refunds_at_processor(payment: Payment) -> list[int]:
    listed = _sandbox().v1.refunds.list(params={"payment_intent": payment.processor_id})
    return sorted(refund.amount for refund in listed.auto_paging_iter())


# Each action through the admin ----------------------------------------------------------------

def test_extend_a_trial(staff_client, staff):
    subscription = subscription_in(Status.TRIALING)
    later = subscription.trial_ends_at.replace(microsecond=0) + dt.timedelta(days=7)

    review = act(staff_client, "subscription", subscription.pk, "extend-trial",
                 ends_at=form_time(later), reason="Onboarding call was postponed")

    assert "Trial ends" in review.content.decode()
    assert sub(subscription.organisation).trial_ends_at == later
    event = audited("support.trial_extended")
    assert_audited_by(event, staff, "Onboarding call was postponed")
    assert event.after == {"trial_ends_at": later.isoformat()}


def test_a_trial_cannot_be_shortened(staff_client):
    subscription = subscription_in(Status.TRIALING)
    page = staff_client.post(support_url("subscription", subscription.pk, "extend-trial"), {
        "ends_at": form_time(subscription.trial_ends_at - dt.timedelta(days=1)),
        "reason": "typo"})
    assert "later than the trial" in page.content.decode()
    assert not page.context["rows"]
    assert not AuditEvent.objects.filter(action="support.trial_extended").exists()


def test_unlock_a_locked_account_with_a_new_grace_end(staff_client, staff):
    subscription = subscription_in(Status.LOCKED)
    grace = clock.now().replace(microsecond=0) + dt.timedelta(days=10)

    act(staff_client, "subscription", subscription.pk, "unlock", grace_ends_at=form_time(grace),
        reason="Customer is paying by bank transfer")

    subscription = sub(subscription.organisation)
    assert (subscription.status, subscription.grace_ends_at, subscription.locked_at) == (
        Status.PAST_DUE, grace, None)
    change = subscription.status_changes.last()
    assert (change.from_status, change.to_status, change.actor) == ("locked", "past_due", staff)
    assert_audited_by(audited("support.unlocked"), staff, "Customer is paying by bank transfer")


def test_grant_account_credit(staff_client, staff):
    subscription = subscription_in(Status.ACTIVE)
    before = subscription.credit_balance

    act(staff_client, "subscription", subscription.pk, "grant-credit", amount="1500",
        reason="Goodwill for the outage")

    subscription = sub(subscription.organisation)
    assert subscription.credit_balance == before + Money(1500, "JPY")
    entry = CreditEntry.objects.get(kind="granted")
    assert (entry.amount, entry.invoice) == (Money(1500, "JPY"), None)
    assert_audited_by(audited("support.credit_granted"), staff, "Goodwill for the outage")


def test_refund_half_then_the_rest_through_the_processor(staff_client, staff, admin):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    invoice = buy(admin)
    payment = Payment.objects.get(invoice=invoice)
    half = Money(payment.amount.amount // 2, "JPY")
    rest = payment.amount - half

    act(staff_client, "payment", payment.pk, "refund", amount=str(half.amount),
        reason="Charged for a seat they never used")
    payment.refresh_from_db()
    assert (payment.state, payment.amount_refunded) == ("succeeded", half)
    act(staff_client, "payment", payment.pk, "refund", amount=str(rest.amount),
        reason="Customer cancelled within the cooling-off period")

    payment.refresh_from_db()
    assert (payment.state, payment.amount_refunded) == ("refunded", payment.amount)
    assert refunds_at_processor(payment) == sorted([int(half.amount), int(rest.amount)])
    notes = list(CreditNote.objects.filter(kind="refund").order_by("number"))
    assert [(n.total, n.invoice, n.payment) for n in notes] == [
        (half, invoice, payment), (rest, invoice, payment)]
    assert sum((n.tax for n in notes), Money(0, "JPY")) <= invoice.tax
    events = AuditEvent.objects.filter(action="support.refunded").order_by("created_at", "id")
    assert [(e.actor, e.reason) for e in events] == [
        (staff, "Charged for a seat they never used"),
        (staff, "Customer cancelled within the cooling-off period")]


def test_a_refund_above_what_is_left_is_refused_and_nothing_is_sent(staff_client, admin):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    payment = Payment.objects.get(invoice=buy(admin))

    page = staff_client.post(support_url("payment", payment.pk, "refund"), {
        "amount": str(payment.amount.amount + 1), "reason": "too much"})

    assert "can be refunded" in page.content.decode()
    assert refunds_at_processor(payment) == []


def test_retry_a_failed_renewal_charge_now(staff_client, staff):
    admin = AdminFactory()
    due = _renewal_declined(admin)
    card_on_file(organisation=admin.organisation, acting_user=admin, number=GOOD_CARD)

    with clock.travel(due + dt.timedelta(hours=5)):
        act(staff_client, "subscription", sub(admin.organisation).pk, "retry-charge",
            reason="Customer replaced the card")

    assert sub(admin.organisation).status == Status.ACTIVE
    event = audited("support.charge_retried")
    assert_audited_by(event, staff, "Customer replaced the card")
    assert event.after["state"] == "succeeded"


def _renewal_unanswered(admin) -> dt.datetime:
    """Standard bought, then the renewal's charge met a stopped processor: still active, the
    renewal invoice open, charged again by the sweep at next_retry_at."""
    card_on_file(organisation=admin.organisation, acting_user=admin)
    with clock.travel(dt.datetime(2027, 1, 10, 9, 0, tzinfo=TOKYO)):
        buy(admin)
    due = sub(admin.organisation).current_period_end
    with processor_down(), clock.travel(due):
        lifecycle.sweep_renewals()
    subscription = sub(admin.organisation)
    assert subscription.status == Status.ACTIVE and subscription.open_invoice is not None
    return due


def test_retry_now_charges_a_renewal_the_processor_did_not_answer(staff_client, staff):
    admin = AdminFactory()
    due = _renewal_unanswered(admin)

    with clock.travel(due + dt.timedelta(minutes=10)):
        review = act(staff_client, "subscription", sub(admin.organisation).pk, "retry-charge",
                     reason="Processor back after the outage")
    assert "unpaid:" in review.content.decode()
    subscription = sub(admin.organisation)
    assert subscription.open_invoice is None and subscription.current_period_start == due
    assert audited("support.charge_retried").after["state"] == "succeeded"
    with clock.travel(due + dt.timedelta(hours=1)):
        assert lifecycle.sweep_renewals() == {}
    renewal = Invoice.objects.get(organisation=admin.organisation, kind="renewal")
    assert renewal.state == Invoice.State.PAID
    assert renewal.payments.filter(state=Payment.State.SUCCEEDED).count() == 1


def test_credit_granted_pays_a_renewal_the_processor_did_not_answer(staff_client, staff):
    admin = AdminFactory()
    due = _renewal_unanswered(admin)
    renewal = Invoice.objects.get(organisation=admin.organisation, kind="renewal")

    with clock.travel(due + dt.timedelta(minutes=10)):
        act(staff_client, "subscription", sub(admin.organisation).pk, "grant-credit",
            amount=str(renewal.total.amount), reason="Goodwill after the outage")
    renewal.refresh_from_db()
    assert renewal.state == Invoice.State.PAID
    subscription = sub(admin.organisation)
    assert subscription.open_invoice is None and subscription.current_period_start == due
    assert subscription.credit_balance.amount == 0
    with clock.travel(due + dt.timedelta(hours=1)):
        assert lifecycle.sweep_renewals() == {}  # nothing charged to the card after all
    assert not renewal.payments.filter(paid_with=Payment.Source.CARD,
                                       state=Payment.State.SUCCEEDED).exists()


def test_change_the_plan_and_charge_the_card_on_file(staff_client, staff, admin):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    buy(admin)
    subscription = sub(admin.organisation)

    review = act(staff_client, "subscription", subscription.pk, "change-plan",
                 plan=Plan.objects.get(code="professional").pk, cycle="monthly",
                 regular_licences=3, team_licences=0, storage_units=0, payment="charge",
                 reason="Upgrade requested by phone")

    assert "is charged now to Visa" in review.content.decode()
    assert sub(admin.organisation).plan.code == "professional"
    quote = Quote.objects.get(pk=review.context["carried"]["quote"])
    assert quote.created_by == staff
    assert Payment.objects.get(quote=quote).state == "succeeded"
    assert_audited_by(audited("support.plan_changed"), staff, "Upgrade requested by phone")


def test_change_the_plan_without_charging_says_so_and_waives_the_amount(staff_client, staff):
    subscription = subscription_in(Status.ACTIVE)

    review = act(staff_client, "subscription", subscription.pk, "change-plan",
                 plan=Plan.objects.get(code="professional").pk, cycle="monthly",
                 regular_licences=3, team_licences=0, storage_units=0, payment="no_charge",
                 reason="Compensation for the migration trouble")

    assert "NOTHING IS CHARGED" in review.content.decode()
    quote = Quote.objects.get(pk=review.context["carried"]["quote"])
    invoice = Invoice.objects.get(quote=quote)
    assert sub(subscription.organisation).plan.code == "professional"
    assert not Payment.objects.filter(quote=quote).exists()
    assert invoice.amount_waived == quote.amount_due
    event = audited("support.plan_changed")
    assert_audited_by(event, staff, "Compensation for the migration trouble")
    assert event.after["charged"] is False


def test_resend_an_email(staff_client, staff, admin, django_capture_on_commit_callbacks):
    notification = Notification.objects.create(
        organisation=admin.organisation, kind="trial_ending", key="trial_ending:test",
        context={"plan": "Standard", "ends": "2027-03-16"}, recipients=[admin.email],
        sent_at=clock.now())

    with django_capture_on_commit_callbacks(execute=True):
        act(staff_client, "notification", notification.pk, "resend",
            reason="Customer deleted it by mistake")

    assert [message.to for message in mail.outbox] == [[admin.email]]
    notification.refresh_from_db()
    assert notification.sent_at is not None
    assert_audited_by(audited("support.email_resent"), staff, "Customer deleted it by mistake")


def test_a_reason_is_required(staff_client):
    subscription = subscription_in(Status.ACTIVE)
    page = staff_client.post(support_url("subscription", subscription.pk, "grant-credit"),
                             {"amount": "100", "reason": ""})
    assert page.context["form"].errors["reason"]
    assert not CreditEntry.objects.filter(kind="granted").exists()


# Permissions ----------------------------------------------------------------------------------

def test_staff_outside_the_support_group_cannot_run_the_actions(db, client):
    outsider = User.objects.create_user("ops@kanri.example", "pw", is_staff=True)
    admin_login(client, outsider)
    subscription = subscription_in(Status.TRIALING)
    later = form_time(subscription.trial_ends_at + dt.timedelta(days=7))

    for action in ("extend-trial", "unlock", "grant-credit", "retry-charge", "change-plan"):
        url = support_url("subscription", subscription.pk, action)
        assert client.get(url).status_code == 403
        assert client.post(url, {"ends_at": later, "reason": "x", "confirm": "1"}
                           ).status_code == 403
    assert sub(subscription.organisation).trial_ends_at == subscription.trial_ends_at
    assert not AuditEvent.objects.filter(action__startswith="support.").exists()


def test_the_change_page_links_only_the_actions_the_staff_member_may_run(client, staff):
    subscription = subscription_in(Status.TRIALING)
    url = f"/admin/billing/subscription/{subscription.pk}/change/"
    admin_login(client, staff)
    assert "support/extend-trial/" in client.get(url).content.decode()

    outsider = User.objects.create_user("ops@kanri.example", "pw", is_staff=True)
    outsider.user_permissions.add(*Group.objects.get(name="support").permissions.filter(
        codename="view_subscription"))
    admin_login(client, outsider)
    page = client.get(url)
    assert page.status_code == 200 and "support/extend-trial/" not in page.content.decode()


def test_the_support_group_can_view_and_act_but_not_edit(db):
    codenames = set(Group.objects.get(name="support").permissions
                    .values_list("codename", flat=True))
    assert {"support_extend_trial", "support_unlock", "support_grant_credit",
            "support_retry_charge", "support_change_plan", "support_refund",
            "support_resend", "view_subscription", "view_payment",
            "view_organisation"} <= codenames
    assert not [code for code in codenames if code.split("_")[0] in {"add", "change", "delete"}]


def test_create_support_user_prints_a_one_time_password(db, client, capsys):
    call_command("create_support_user", "helpdesk@kanri.example")

    out = capsys.readouterr().out
    password = re.search(r"One-time password .*: (\S+)$", out, re.MULTILINE).group(1)
    user = User.objects.get(email="helpdesk@kanri.example")
    assert (user.is_staff, user.organisation, user.is_superuser) == (True, None, False)
    assert list(user.groups.values_list("name", flat=True)) == ["support"]
    assert user.check_password(password)
    assert user.has_perm("billing.support_refund")


# The stories --------------------------------------------------------------------------

def test_story_my_trial_ran_out_too_early(staff_client, staff):
    """The trial ends tomorrow but the customer lost a week to an outage: extend it a week."""
    subscription = subscription_in(Status.TRIALING)
    ends = subscription.trial_ends_at
    act(staff_client, "subscription", subscription.pk, "extend-trial",
        ends_at=form_time(ends + dt.timedelta(days=7)), reason="Lost a week to our outage")

    with clock.travel(ends + dt.timedelta(hours=1)):
        lifecycle.sweep_trial_ends()
    assert sub(subscription.organisation).status == Status.TRIALING
    with clock.travel(ends + dt.timedelta(days=7)):
        lifecycle.sweep_trial_ends()
    assert sub(subscription.organisation).status == Status.FREE


def test_story_we_were_charged_twice(staff_client, staff, admin):
    """The customer paid for extra licences twice over (two changes, the second unintended):
    support refunds the second charge in full, back to the card."""
    card_on_file(organisation=admin.organisation, acting_user=admin)
    buy(admin, regular=3)
    duplicate = Payment.objects.get(invoice=buy(admin, regular=5))

    act(staff_client, "payment", duplicate.pk, "refund", amount=str(duplicate.amount.amount),
        reason="Customer was charged twice")

    duplicate.refresh_from_db()
    assert duplicate.state == "refunded"
    assert refunds_at_processor(duplicate) == [int(duplicate.amount.amount)]
    note = CreditNote.objects.get(kind="refund")
    assert (note.total, note.payment) == (duplicate.amount, duplicate)
    assert_audited_by(audited("support.refunded"), staff, "Customer was charged twice")


def _renewal_declined(admin) -> dt.datetime:
    """Standard bought with a good card, then only a declining card: the renewal fails."""
    card_on_file(organisation=admin.organisation, acting_user=admin)
    with clock.travel(dt.datetime(2027, 1, 10, 9, 0, tzinfo=TOKYO)):
        buy(admin)
    card_on_file(organisation=admin.organisation, acting_user=admin, number=DECLINING_CARD)
    due = sub(admin.organisation).current_period_end
    with clock.travel(due):
        lifecycle.sweep_renewals()
    assert sub(admin.organisation).status == Status.PAST_DUE
    return due


def test_story_we_are_locked_and_paid_by_bank_transfer(staff_client, staff):
    admin = AdminFactory()
    due = _renewal_declined(admin)
    with clock.travel(due + dt.timedelta(days=15)):
        lifecycle.sweep_locks()
    subscription = sub(admin.organisation)
    invoice = subscription.open_invoice
    assert subscription.status == Status.LOCKED
    today = due + dt.timedelta(days=20)

    with clock.travel(today):
        act(staff_client, "subscription", subscription.pk, "unlock",
            grace_ends_at=form_time(today + dt.timedelta(days=5)),
            reason="Bank transfer announced")
        assert sub(admin.organisation).status == Status.PAST_DUE
        review = act(staff_client, "subscription", subscription.pk, "grant-credit",
                     amount=str(invoice.total.amount), reason="Bank transfer received")

    assert "paid from the credit now" in review.content.decode()
    subscription = sub(admin.organisation)
    invoice.refresh_from_db()
    assert (subscription.status, invoice.state) == (Status.ACTIVE, "paid")
    assert subscription.credit_balance == Money(0, "JPY")
    assert invoice.payments.get(state="succeeded").paid_with == "credit"
    charged = [i for i in processor_charges(subscription.processor_customer_id)
               if i.status == "succeeded"]
    assert len(charged) == 1  # only the purchase: the renewal was paid by the transfer
    assert [e.action for e in AuditEvent.objects.filter(actor=staff).order_by("id")] == [
        "support.unlocked", "support.credit_granted"]


def test_story_the_renewal_failed_but_my_card_is_fine_now(staff_client, staff):
    admin = AdminFactory()
    due = _renewal_declined(admin)
    card_on_file(organisation=admin.organisation, acting_user=admin, number=GOOD_CARD)
    subscription = sub(admin.organisation)

    with clock.travel(due + dt.timedelta(days=2)):
        act(staff_client, "subscription", subscription.pk, "retry-charge",
            reason="Card works again")

    subscription = sub(admin.organisation)
    invoice = Invoice.objects.get(kind="renewal")
    assert (subscription.status, invoice.state) == (Status.ACTIVE, "paid")
    assert list(invoice.payments.order_by("created_at", "id").values_list("state", flat=True)
                ) == ["failed", "succeeded"]
    charged = [i for i in processor_charges(subscription.processor_customer_id)
               if i.status == "succeeded"]
    assert len(charged) == 2  # the purchase and the one retry


def test_every_action_page_opens_from_its_change_page(staff_client, admin):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    payment = Payment.objects.get(invoice=buy(admin))
    notification = Notification.objects.get(kind="receipt")
    pages = {"subscription": (sub(admin.organisation).pk, ["extend-trial", "unlock",
                                                            "grant-credit", "retry-charge",
                                                            "change-plan"]),
             "payment": (payment.pk, ["refund"]), "notification": (notification.pk, ["resend"])}
    for model, (pk, actions) in pages.items():
        change_page = staff_client.get(f"/admin/billing/{model}/{pk}/change/").content.decode()
        for action in actions:
            assert support_url(model, pk, action) in change_page
            page = staff_client.get(support_url(model, pk, action))
            assert page.status_code == 200 and 'name="reason"' in page.content.decode()
