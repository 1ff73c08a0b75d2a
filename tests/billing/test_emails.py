"""Every email the product sends, in both languages, from its templates; the grace-ending, the
card-expiring and the licence-change emails sent once per event."""
import datetime as dt
import io

import pytest
from django.core import mail
from django.template.loader import render_to_string
from django.utils import translation
from djmoney.money import Money
from pypdf import PdfReader

from billing.models import Notification, Payment, PaymentMethod, Status, Subscription
from billing.services import lifecycle
from billing.services.payments import quote_pay
from billing.services.quotes import Change, quote_create
from billing.services.support import support_refund
from store import clock
from store.models import Plan
from tests.accounts.factories import UserFactory
from tests.billing.factories import paid_quote_applied, subscription_in
from tests.billing.helpers import card_on_file

SAMPLE = {"organisation": "Demo K.K.", "manage_url": "https://kanri.example/manage/",
          "amount": "¥3,300", "reason": "declined", "grace_ends": "2027-01-25",
          "next_retry": "2027-01-13", "plan": "Standard", "ends": "2027-01-20",
          "number": "INV-000001", "period_end": "2027-02-10", "free_on": "2027-03-25",
          "paid_on": "2027-01-10", "card": "Visa •••• 4242", "expiry": "12/2026",
          "next_charge": "2027-01-10", "changes": ["Regular user licences: 5 → 4"],
          "summary": "Regular user licences: 5 → 4"}


@pytest.mark.parametrize("kind", Notification.Kind.values)
def test_every_email_renders_in_japanese_and_english(kind):
    rendered = {}
    for language in ("ja", "en"):
        with translation.override(language):
            subject = render_to_string(f"billing/email/{kind}_subject.txt", SAMPLE).strip()
            body = render_to_string(f"billing/email/{kind}.txt", SAMPLE)
        assert subject and "\n" not in subject and body.strip()
        assert "{{" not in body and "{%" not in body
        rendered[language] = subject + body
    assert rendered["ja"] != rendered["en"]
    assert any("\u3040" <= char <= "\u30ff" or "\u4e00" <= char <= "\u9fff"
               for char in rendered["ja"])  # kana or kanji: really Japanese


def kinds(subscription) -> list[str]:
    return list(Notification.objects.filter(organisation_id=subscription.organisation_id)
                .values_list("kind", flat=True))


def test_the_grace_ending_reminder_goes_once_three_days_before(
        db, django_capture_on_commit_callbacks):
    subscription = subscription_in(Status.PAST_DUE)
    ends = clock.now() + dt.timedelta(days=10)
    Subscription.objects.filter(pk=subscription.pk).update(grace_ends_at=ends)
    with clock.travel(ends - dt.timedelta(days=4)):
        assert lifecycle.sweep_grace_reminders() == {"reminded": 0}
    with clock.travel(ends - dt.timedelta(days=2)), \
            django_capture_on_commit_callbacks(execute=True):
        assert lifecycle.sweep_grace_reminders() == {"reminded": 1}
        assert lifecycle.sweep_grace_reminders() == {"reminded": 0}
    assert kinds(subscription).count("grace_ending") == 1 and len(mail.outbox) == 1


def test_a_card_expiring_before_the_renewal_is_announced_once(
        db, django_capture_on_commit_callbacks):
    with clock.travel(dt.datetime(2026, 12, 20, 3, tzinfo=dt.UTC)):  # renews 2027-01-20
        subscription = paid_quote_applied(admin=subscription_in(Status.FREE).organisation
                                          .users.get())
        card = PaymentMethod.objects.create(organisation_id=subscription.organisation_id,
                                            processor_id="pm_expiring", brand="visa",
                                            last4="4242", exp_month=12, exp_year=2026)
        Subscription.objects.filter(pk=subscription.pk).update(default_payment_method=card)
    with clock.travel(dt.datetime(2026, 12, 28, 3, tzinfo=dt.UTC)), \
            django_capture_on_commit_callbacks(execute=True):  # the renewal 23 days ahead
        assert lifecycle.sweep_card_expiry_reminders() == {"reminded": 1}
        assert lifecycle.sweep_card_expiry_reminders() == {"reminded": 0}
    assert kinds(subscription) == ["card_expiring"]
    assert "•••• 4242" in mail.outbox[0].subject


def test_a_licence_change_is_emailed_with_before_and_after(
        db, django_capture_on_commit_callbacks):
    admin = subscription_in(Status.FREE).organisation.users.get()
    paid_quote_applied(admin=admin, regular=3)  # the purchase: a receipt's job, not this one
    with django_capture_on_commit_callbacks(execute=True):
        paid_quote_applied(admin=admin, regular=5)
    note = Notification.objects.get(organisation_id=admin.organisation_id,
                                    kind="licence_change")
    [change] = note.context["changes"]  # only the regular licences changed
    assert change.endswith(": 3 → 5")
    assert Notification.objects.filter(kind="licence_change").count() == 1


@pytest.mark.usefixtures("payment_sandbox")
def test_a_refund_is_emailed_with_its_credit_note(db, django_capture_on_commit_callbacks):
    admin = subscription_in(Status.FREE).organisation.users.get()
    card_on_file(organisation=admin.organisation, acting_user=admin)
    quote = quote_create(organisation=admin.organisation, acting_user=admin, change=Change(
        Plan.objects.get(code="standard"), "monthly", 3, 0, 0))
    assert quote_pay(organisation=admin.organisation, quote_id=quote.pk,
                     acting_user=admin).charged
    payment = Payment.objects.get(organisation=admin.organisation, paid_with="card")
    staff = UserFactory(organisation=None, is_staff=True)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        note = support_refund(payment_id=payment.pk, amount=Money(1000, "JPY"), staff=staff,
                              reason="charged twice")
    [message] = mail.outbox
    assert message.to == [admin.email] and note.number in message.subject
    [(filename, content, kind)] = message.attachments
    assert kind == "application/pdf" and note.number in filename
    assert note.number in "".join(page.extract_text() for page in
                                  PdfReader(io.BytesIO(content)).pages)
