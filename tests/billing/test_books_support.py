"""The books where support's actions meet the money path: credit that pays what it
can of an owed invoice, the tax on a payment refunded in parts, and support actions applied once
to their own subject. Through Django admin as a support user, against PostgreSQL and
localstripe."""
import datetime as dt
import uuid
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Group
from django.core import mail, signing
from django.test import override_settings
from djmoney.money import Money

from accounts.models import AuditEvent, User
from billing.admin_support import CONFIRMATION_SALT
from billing.errors import BillingError
from billing.models import (
    CreditEntry,
    CreditNote,
    Invoice,
    Notification,
    Payment,
    Status,
    Subscription,
)
from billing.pricing import Change
from billing.services import charging, lifecycle
from billing.services.payments import quote_pay
from billing.services.quotes import quote_create
from billing.services.support import support_plan_change
from store import clock
from store.models import Plan
from tests.accounts.factories import AdminFactory
from tests.billing.factories import subscription_in
from tests.billing.faults import processor_down
from tests.billing.helpers import DECLINING_CARD, GOOD_CARD, _sandbox, card_on_file
from tests.store.helpers import admin_login

pytestmark = pytest.mark.usefixtures("payment_sandbox")
TOKYO = ZoneInfo("Asia/Tokyo")
YEN = "JPY"


@pytest.fixture
def staff(db):
    user = User.objects.create_user("support@kanri.example", "pw-not-used", is_staff=True)
    user.groups.add(Group.objects.get(name="support"))
    return user


@pytest.fixture
def staff_client(client, staff):
    admin_login(client, staff)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def support_url(model: str, pk, action: str) -> str:
    return f"/admin/billing/{model}/{pk}/support/{action}/"


def review(client, model: str, pk, action: str, **data):
    page = client.post(support_url(model, pk, action), data)
    assert page.status_code == 200
    assert not page.context["form"].errors, page.context["form"].errors
    assert "What will change" in page.content.decode()
    return page


def confirm(client, model: str, pk, action: str, reviewed):
    return client.post(support_url(model, pk, action),
                       {**reviewed.context["carried"], "confirm": "1"})


def act(client, model: str, pk, action: str, **data):
    """Fill the action's form, see what will change, confirm."""
    reviewed = review(client, model, pk, action, **data)
    done = confirm(client, model, pk, action, reviewed)
    if done.status_code == 200:
        pytest.fail(str(done.context["form"].errors))
    assert done.status_code == 302
    return reviewed


def sub(organisation) -> Subscription:
    return Subscription.objects.get(organisation=organisation)


def yen(amount) -> Money:
    return Money(amount, YEN)


def buy(admin, code="standard", regular=3) -> Invoice:
    quote = quote_create(organisation=admin.organisation, acting_user=admin,
                         change=Change(Plan.objects.get(code=code), "monthly", regular, 0, 0))
    result = quote_pay(organisation=admin.organisation, quote_id=quote.pk, acting_user=admin)
    assert result.invoice is not None, result.failure
    return result.invoice


def renewal_declined(admin) -> dt.datetime:
    """Standard for 3 users bought with a good card, then only a declining card on file: the
    renewal's charge is refused and the subscription is past due with the invoice open."""
    card_on_file(organisation=admin.organisation, acting_user=admin)
    with clock.travel(dt.datetime(2027, 1, 10, 9, 0, tzinfo=TOKYO)):
        buy(admin)
    card_on_file(organisation=admin.organisation, acting_user=admin, number=DECLINING_CARD)
    due = sub(admin.organisation).current_period_end
    with clock.travel(due):
        lifecycle.sweep_renewals()
    assert sub(admin.organisation).status == Status.PAST_DUE
    return due


def intent_amount(payment: Payment) -> int:
    return _sandbox().v1.payment_intents.retrieve(payment.processor_id).amount


def assert_balances(invoice: Invoice) -> None:
    """SPEC invariant 2: total = paid by card + paid by account credit + waived + still open."""
    card = sum((p.amount for p in invoice.payments.filter(paid_with=Payment.Source.CARD,
                                                          state=Payment.State.SUCCEEDED)),
               yen(0))
    spent = -sum((e.amount for e in CreditEntry.objects.filter(
        invoice=invoice, kind=CreditEntry.Kind.APPLIED)), yen(0))
    still_open = invoice.total - invoice.credit_applied if invoice.state == "open" else yen(0)
    assert (card, spent) == (invoice.amount_paid, invoice.credit_applied)
    assert invoice.total == card + spent + invoice.amount_waived + still_open


# Partial credit -------------------------------------------------------------------------------

def test_credit_granted_short_of_an_overdue_renewal_pays_part_and_the_card_only_the_rest(
        staff_client, staff):
    admin = AdminFactory()
    due = renewal_declined(admin)
    subscription = sub(admin.organisation)
    renewal = subscription.open_invoice
    assert renewal.total == yen(6732)

    with clock.travel(due + dt.timedelta(days=1)):
        reviewed = act(staff_client, "subscription", subscription.pk, "grant-credit",
                       amount="5000", reason="Half the bank transfer arrived")
    renewal.refresh_from_db()
    subscription = sub(admin.organisation)
    assert (renewal.state, renewal.credit_applied) == ("open", yen(5000))
    assert (subscription.status, subscription.credit_balance) == (Status.PAST_DUE, yen(0))
    assert_balances(renewal)

    card_on_file(organisation=admin.organisation, acting_user=admin, number=GOOD_CARD)
    with clock.travel(due + dt.timedelta(days=3)):
        assert lifecycle.sweep_retries() == {"retried": 1}

    renewal.refresh_from_db()
    payment = renewal.payments.get(state=Payment.State.SUCCEEDED)
    assert (payment.paid_with, payment.amount) == (Payment.Source.CARD, yen(1732))
    assert intent_amount(payment) == 1732
    assert (renewal.state, renewal.amount_paid, renewal.credit_applied) == (
        "paid", yen(1732), yen(5000))
    assert_balances(renewal)
    assert sub(admin.organisation).status == Status.ACTIVE
    granted = AuditEvent.objects.get(action="support.credit_granted")
    assert granted.after["applied"] == str(yen(5000))
    assert "1,732" in reviewed.content.decode()  # the review said what the card still owes


def test_credit_granted_while_a_card_payment_is_being_confirmed_waits_in_the_balance(
        staff_client, staff, proxy):
    admin = AdminFactory()
    due = renewal_declined(admin)
    card_on_file(organisation=admin.organisation, acting_user=admin, number=GOOD_CARD)
    subscription = sub(admin.organisation)
    renewal = subscription.open_invoice
    proxy.drop_answers_to(r"/confirm")
    with override_settings(STRIPE_API_BASE=proxy.url), clock.travel(due + dt.timedelta(days=1)):
        lifecycle.renewal_retry(subscription_id=subscription.pk, scheduled=False)
    pending = renewal.payments.get(state=Payment.State.PENDING)

    with clock.travel(due + dt.timedelta(days=1, minutes=1)):
        act(staff_client, "subscription", subscription.pk, "grant-credit", amount="5000",
            reason="Half the bank transfer arrived")

    renewal.refresh_from_db()
    assert (renewal.state, renewal.credit_applied) == ("open", yen(0))
    assert sub(admin.organisation).credit_balance == yen(5000)
    assert AuditEvent.objects.get(action="support.credit_granted").after[
        "waits_for_open_payment"] is True
    with clock.travel(due + dt.timedelta(days=1, minutes=30)):
        charging.payments_settle_open()
    pending.refresh_from_db()
    renewal.refresh_from_db()
    assert (pending.state, pending.amount, renewal.state) == ("succeeded", yen(6732), "paid")
    assert_balances(renewal)
    assert sub(admin.organisation).credit_balance == yen(5000)  # kept for what comes next


def test_credit_that_leaves_less_than_the_minimum_charge_pays_the_renewal_and_waives_the_rest(
        staff_client, staff):
    admin = AdminFactory()
    due = renewal_declined(admin)
    subscription = sub(admin.organisation)
    renewal = subscription.open_invoice

    with clock.travel(due + dt.timedelta(days=1)):
        reviewed = act(staff_client, "subscription", subscription.pk, "grant-credit",
                       amount="6700", reason="The bank transfer, less the transfer fee")

    assert "paid from the credit now" in reviewed.content.decode()
    renewal.refresh_from_db()
    assert (renewal.state, renewal.credit_applied, renewal.amount_waived) == (
        "paid", yen(6700), yen(32))  # ¥32 is below the processor's ¥50 minimum
    assert_balances(renewal)
    assert sub(admin.organisation).status == Status.ACTIVE
    assert AuditEvent.objects.filter(action="invoice.minimum_charge_waived").count() == 1

def test_credit_a_grant_paid_towards_a_renewal_comes_back_when_the_renewal_is_voided(
        staff_client, staff):
    admin = AdminFactory()
    due = renewal_declined(admin)
    subscription = sub(admin.organisation)
    renewal = subscription.open_invoice
    with clock.travel(due + dt.timedelta(days=1)):
        act(staff_client, "subscription", subscription.pk, "grant-credit", amount="5000",
            reason="Half the bank transfer arrived")
    assert sub(admin.organisation).credit_balance == yen(0)

    with clock.travel(due + dt.timedelta(days=15, hours=1)):
        lifecycle.sweep_locks()
    with clock.travel(due + dt.timedelta(days=15 + 62, hours=2)):
        lifecycle.sweep_moves_to_free()

    renewal.refresh_from_db()
    subscription = sub(admin.organisation)
    assert (subscription.status, renewal.state) == (Status.FREE, "void")
    assert subscription.credit_balance == yen(5000)
    ledger = CreditEntry.objects.filter(organisation=admin.organisation)
    assert sum((entry.amount for entry in ledger), yen(0)) == subscription.credit_balance

# Tax on refunds in parts ----------------------------------------------------------------------

def refund_in_parts(client, admin, parts: list[int]) -> tuple[Invoice, Payment]:
    card_on_file(organisation=admin.organisation, acting_user=admin)
    invoice = buy(admin)
    payment = Payment.objects.get(invoice=invoice)
    assert (payment.amount, invoice.tax) == (yen(6732), yen(612))
    for part in parts:
        act(client, "payment", payment.pk, "refund", amount=str(part),
            reason="Refunded in parts")
    payment.refresh_from_db()
    assert (payment.state, payment.amount_refunded) == ("refunded", payment.amount)
    return invoice, payment


def assert_notes_carry_the_payment(invoice: Invoice, payment: Payment) -> None:
    notes = list(CreditNote.objects.filter(payment=payment))
    assert sum((note.tax for note in notes), yen(0)) == invoice.tax
    assert sum((note.subtotal for note in notes), yen(0)) == invoice.subtotal
    for note in notes:
        assert note.subtotal + note.tax == note.total
        assert [(group["subtotal"], group["tax"]) for group in note.taxes] == [
            (note.subtotal, note.tax)]


def test_a_payment_refunded_in_two_parts_gives_back_exactly_the_tax_it_was_charged(
        staff_client, admin):
    invoice, payment = refund_in_parts(staff_client, admin, [1, 6731])
    assert_notes_carry_the_payment(invoice, payment)


def test_a_payment_refunded_in_three_parts_gives_back_exactly_the_tax_it_was_charged(
        staff_client, admin):
    invoice, payment = refund_in_parts(staff_client, admin, [1, 3, 6728])
    assert_notes_carry_the_payment(invoice, payment)


# Support actions apply once, to their own subject ---------------------------------------------

def refunds_at_processor(payment: Payment) -> list[int]:
    listed = _sandbox().v1.refunds.list(params={"payment_intent": payment.processor_id})
    return sorted(refund.amount for refund in listed.auto_paging_iter())


def change_plan_review(client, subscription: Subscription):
    return review(client, "subscription", subscription.pk, "change-plan",
                  plan=Plan.objects.get(code="professional").pk, cycle="monthly",
                  regular_licences=3, team_licences=0, storage_units=0, payment="no_charge",
                  reason="Compensation")


def test_confirming_a_credit_grant_twice_grants_once(staff_client):
    subscription = subscription_in(Status.ACTIVE)
    reviewed = review(staff_client, "subscription", subscription.pk, "grant-credit",
                      amount="1500", reason="Goodwill for the outage")

    first = confirm(staff_client, "subscription", subscription.pk, "grant-credit", reviewed)
    again = confirm(staff_client, "subscription", subscription.pk, "grant-credit", reviewed)

    assert first.status_code == 302
    assert again.status_code == 409 and "already" in again.content.decode()
    assert CreditEntry.objects.filter(kind=CreditEntry.Kind.GRANTED).count() == 1
    assert sub(subscription.organisation).credit_balance == yen(1500)
    assert AuditEvent.objects.filter(action="support.credit_granted").count() == 1


def test_a_confirmation_without_its_review_is_refused(staff_client):
    subscription = subscription_in(Status.ACTIVE)

    skipped = staff_client.post(support_url("subscription", subscription.pk, "grant-credit"),
                                {"amount": "1500", "reason": "No review", "confirm": "1"})

    assert skipped.status_code == 400 and "Review" in skipped.content.decode()
    assert not CreditEntry.objects.filter(kind=CreditEntry.Kind.GRANTED).exists()


def test_a_reviewed_amount_cannot_be_changed_at_confirmation(staff_client):
    subscription = subscription_in(Status.ACTIVE)
    reviewed = review(staff_client, "subscription", subscription.pk, "grant-credit",
                      amount="15", reason="Goodwill")

    changed = staff_client.post(support_url("subscription", subscription.pk, "grant-credit"),
                                {**reviewed.context["carried"], "amount": "150000",
                                 "confirm": "1"})

    assert changed.status_code == 400
    assert not CreditEntry.objects.filter(kind=CreditEntry.Kind.GRANTED).exists()


def test_confirming_a_partial_refund_twice_refunds_once_at_the_processor(staff_client, admin):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    payment = Payment.objects.get(invoice=buy(admin))
    reviewed = review(staff_client, "payment", payment.pk, "refund", amount="1000",
                      reason="A seat never used")

    first = confirm(staff_client, "payment", payment.pk, "refund", reviewed)
    again = confirm(staff_client, "payment", payment.pk, "refund", reviewed)

    assert (first.status_code, again.status_code) == (302, 409)
    assert refunds_at_processor(payment) == [1000]
    payment.refresh_from_db()
    assert payment.amount_refunded == yen(1000)
    assert CreditNote.objects.filter(payment=payment).count() == 1


def test_a_plan_change_reviewed_for_another_organisation_is_not_applied_to_it(staff_client):
    mine = subscription_in(Status.ACTIVE)
    theirs = subscription_in(Status.ACTIVE)
    for_mine = change_plan_review(staff_client, mine)
    for_theirs = change_plan_review(staff_client, theirs)

    crossed = staff_client.post(support_url("subscription", mine.pk, "change-plan"), {
        **for_mine.context["carried"], "quote": for_theirs.context["carried"]["quote"],
        "confirm": "1"})
    posted_elsewhere = staff_client.post(support_url("subscription", mine.pk, "change-plan"), {
        **for_theirs.context["carried"], "confirm": "1"})

    assert (crossed.status_code, posted_elsewhere.status_code) == (400, 400)
    assert [sub(s.organisation).plan.code for s in (mine, theirs)] == [mine.plan.code,
                                                                      theirs.plan.code]
    assert not Invoice.objects.filter(quote__isnull=False,
                                      organisation__in=[mine.organisation,
                                                        theirs.organisation]).exclude(
        pk__in=[mine.paid_invoice_id, theirs.paid_invoice_id]).exists()
    assert not AuditEvent.objects.filter(action="support.plan_changed").exists()


def test_a_plan_change_for_another_organisations_quote_is_refused_by_the_service(staff):
    mine = subscription_in(Status.ACTIVE)
    theirs = subscription_in(Status.ACTIVE)
    quote = quote_create(organisation=theirs.organisation, acting_user=staff,
                         change=Change(Plan.objects.get(code="professional"), "monthly", 3, 0,
                                       0))

    with pytest.raises(BillingError) as refused:
        support_plan_change(organisation=mine.organisation, quote_id=quote.pk, charge=False,
                            staff=staff, reason="Crossed")

    assert refused.value.code == "unknown_quote"
    assert sub(theirs.organisation).plan.code == theirs.plan.code


def test_an_unknown_quote_id_is_refused_with_a_message(staff_client):
    subscription = subscription_in(Status.ACTIVE)
    reviewed = change_plan_review(staff_client, subscription)

    unknown = staff_client.post(support_url("subscription", subscription.pk, "change-plan"), {
        **reviewed.context["carried"], "quote": str(uuid.uuid4()), "confirm": "1"})

    assert unknown.status_code == 400 and "Review" in unknown.content.decode()
    assert sub(subscription.organisation).plan.code == subscription.plan.code


def test_a_refund_whose_processor_did_not_answer_is_confirmed_again_under_the_same_key(
        staff_client, admin):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    payment = Payment.objects.get(invoice=buy(admin))
    reviewed = review(staff_client, "payment", payment.pk, "refund", amount="1000",
                      reason="A seat never used")
    with processor_down():
        unanswered = confirm(staff_client, "payment", payment.pk, "refund", reviewed)
    assert unanswered.status_code == 400 and "did not answer" in unanswered.content.decode()
    offered = unanswered.context["carried"]
    assert offered["confirmation"] == reviewed.context["carried"]["confirmation"]

    again = staff_client.post(support_url("payment", payment.pk, "refund"),
                              {**offered, "confirm": "1"})

    assert again.status_code == 302
    assert refunds_at_processor(payment) == [1000]
    [note] = CreditNote.objects.filter(payment=payment)
    event = AuditEvent.objects.get(action="support.refunded")
    once = signing.loads(offered["confirmation"], salt=CONFIRMATION_SALT)["once"]
    assert (event.after["confirmation"], event.after["credit_note"]) == (once, note.number)


def test_confirming_an_email_resend_twice_sends_once(staff_client, admin,
                                                      django_capture_on_commit_callbacks):
    notification = Notification.objects.create(
        organisation=admin.organisation, kind="trial_ending", key="trial_ending:test",
        context={"plan": "Standard", "ends": "2027-03-16"}, recipients=[admin.email],
        sent_at=clock.now())
    reviewed = review(staff_client, "notification", notification.pk, "resend",
                      reason="Deleted by mistake")

    with django_capture_on_commit_callbacks(execute=True):
        first = confirm(staff_client, "notification", notification.pk, "resend", reviewed)
        again = confirm(staff_client, "notification", notification.pk, "resend", reviewed)

    assert (first.status_code, again.status_code) == (302, 409)
    assert len(mail.outbox) == 1
    assert AuditEvent.objects.filter(action="support.email_resent").count() == 1
