"""購入設定 → 決済方法: cards added, made default, changed and deleted through the portal, with
the processor (localstripe) seeing the same: a replaced or deleted card is detached there."""
import datetime as dt

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import AuditEvent
from billing.models import Payment, PaymentMethod, Subscription
from store import clock
from tests.accounts.factories import AdminFactory, UserFactory
from tests.billing.factories import paid_quote_applied
from tests.billing.faults import closed_port
from tests.billing.helpers import processor_card, processor_card_customer

pytestmark = pytest.mark.usefixtures("payment_sandbox")
MASTERCARD = "5555555555554444"


def subscription(admin) -> Subscription:
    return Subscription.objects.select_related("default_payment_method").get(
        organisation=admin.organisation)


def add(client, number=None, **fields) -> tuple[int, dict]:
    pm = processor_card(number) if number else processor_card()
    response = client.post(reverse("billing:card_add"), {"payment_method": pm, **fields})
    return response.status_code, {**response.json(), "pm": pm}


def cards(admin) -> list[str]:
    return list(PaymentMethod.objects.filter(organisation=admin.organisation)
                .order_by("pk").values_list("last4", flat=True))


def test_cards_are_listed_with_the_default_marked_and_the_default_can_move(admin_client, admin):
    assert add(admin_client)[0] == 200  # the first card becomes the default
    status, second = add(admin_client, MASTERCARD, make_default="0")
    assert status == 200 and "•••• 4444 (12/2030)" in second["card"]  # localstripe: all "visa"
    assert subscription(admin).default_payment_method.last4 == "4242"

    page = admin_client.get(reverse("billing:payment_methods")).content.decode()
    assert page.count('data-testid="card-row"') == 2 and page.count("default-badge") == 1
    assert "•••• 4242" in page and "•••• 4444" in page

    mastercard = PaymentMethod.objects.get(organisation=admin.organisation, last4="4444")
    response = admin_client.post(reverse("billing:card_default", args=[mastercard.pk]),
                                 follow=True)
    assert "•••• 4444 (12/2030) is now your default card." in response.content.decode()
    assert subscription(admin).default_payment_method == mastercard
    assert AuditEvent.objects.filter(organisation=admin.organisation,
                                     action="card.default").count() == 1


def test_change_puts_the_new_card_in_the_old_ones_place_and_detaches_the_old(admin_client,
                                                                           admin):
    _status, old = add(admin_client)
    old_card = subscription(admin).default_payment_method
    assert processor_card_customer(old["pm"]) == subscription(admin).processor_customer_id

    page = admin_client.get(reverse("billing:card_replace", args=[old_card.pk]))
    assert f'name="replaces" value="{old_card.pk}"' in page.content.decode()
    status, new = add(admin_client, MASTERCARD, replaces=str(old_card.pk))

    assert status == 200
    assert cards(admin) == ["4444"]
    assert subscription(admin).default_payment_method.processor_id == new["pm"]
    assert processor_card_customer(old["pm"]) is None  # detached at the processor
    event = AuditEvent.objects.get(organisation=admin.organisation, action="card.replaced")
    assert (event.before["last4"], event.after["last4"]) == ("4242", "4444")


def test_deleting_the_default_moves_it_to_the_newest_other_card(admin_client, admin):
    _s, first = add(admin_client)
    add(admin_client, MASTERCARD, make_default="0")
    visa = PaymentMethod.objects.get(processor_id=first["pm"])

    response = admin_client.post(reverse("billing:card_delete", args=[visa.pk]), follow=True)

    text = response.content.decode()
    assert "Visa •••• 4242 (12/2030) was deleted." in text
    assert "•••• 4444 (12/2030) is now your default card." in text
    assert cards(admin) == ["4444"] and subscription(admin).default_payment_method.last4 == "4444"
    assert processor_card_customer(first["pm"]) is None
    # Deleting it again: the card is gone, so is the page.
    assert admin_client.post(reverse("billing:card_delete", args=[visa.pk])).status_code == 404


def test_deleting_the_only_card_of_a_renewing_plan_asks_first_and_says_renewals_will_fail(
        admin_client, admin):
    paid_quote_applied(admin=admin)
    _s, only = add(admin_client)
    card = subscription(admin).default_payment_method

    question = admin_client.post(reverse("billing:card_delete", args=[card.pk]))
    assert question.status_code == 200
    assert "renewals will fail" in question.content.decode()
    assert cards(admin) == ["4242"] and processor_card_customer(only["pm"]) is not None

    admin_client.post(reverse("billing:card_delete", args=[card.pk]), {"confirmed": "1"})
    assert cards(admin) == [] and subscription(admin).default_payment_method is None
    assert processor_card_customer(only["pm"]) is None
    event = AuditEvent.objects.get(organisation=admin.organisation, action="card.deleted")
    assert event.reason == "confirmed: renewals will fail"


def test_the_confirmation_is_in_japanese_for_a_japanese_admin(admin_client, admin):
    paid_quote_applied(admin=admin)
    add(admin_client)
    card = subscription(admin).default_payment_method
    question = admin_client.post(reverse("billing:card_delete", args=[card.pk]),
                                 HTTP_ACCEPT_LANGUAGE="ja")
    assert "更新の決済ができなくなり" in question.content.decode()


def test_a_card_the_processor_refuses_is_not_saved_and_the_page_says_why(admin_client, admin):
    status, answer = add(admin_client, "4000000000000002")
    assert status == 400 and answer["code"] == "card_declined"
    assert "declined" in answer["error"]
    assert cards(admin) == []



def test_processor_down_when_deleting_keeps_the_card_and_says_so(admin_client, admin):
    _s, only = add(admin_client)
    card = subscription(admin).default_payment_method
    with override_settings(STRIPE_API_BASE=f"http://127.0.0.1:{closed_port()}"):
        response = admin_client.post(reverse("billing:card_delete", args=[card.pk]),
                                     follow=True)
    assert "not reachable" in response.content.decode()
    assert cards(admin) == ["4242"] and subscription(admin).default_payment_method == card
    assert processor_card_customer(only["pm"]) is not None


def test_a_card_an_attempt_is_being_confirmed_with_cannot_be_deleted(admin_client, admin):
    add(admin_client)
    card = subscription(admin).default_payment_method
    Payment.objects.create(organisation=admin.organisation, idempotency_key="open-attempt",
                           amount=card.organisation.subscription.credit_balance,
                           card_processor_id=card.processor_id, state=Payment.State.PROCESSING)
    response = admin_client.post(reverse("billing:card_delete", args=[card.pk]), follow=True)
    assert "being confirmed" in response.content.decode()
    assert cards(admin) == ["4242"]


def test_a_default_card_expiring_before_the_renewal_is_flagged(admin_client, admin):
    with clock.travel(dt.datetime(2026, 12, 10, 12, tzinfo=dt.UTC)):
        paid_quote_applied(admin=admin)  # renews on January 10, 2027
        pm = processor_card(exp_month=12, exp_year=2026)
        admin_client.post(reverse("billing:card_add"), {"payment_method": pm})
        details = admin_client.get(reverse("billing:details")).content.decode()
        methods = admin_client.get(reverse("billing:payment_methods")).content.decode()
    assert 'data-testid="card-runs-out"' in details
    assert "Expires before the next charge on 2027-01-10" in methods


def test_other_organisations_cards_are_unreachable(admin_client, admin):
    other = AdminFactory()
    stranger = PaymentMethod.objects.create(organisation=other.organisation, processor_id="pm_x",
                                            brand="visa", last4="1111", exp_month=1,
                                            exp_year=2030)
    for name in ("card_default", "card_delete"):
        assert admin_client.post(reverse(f"billing:{name}", args=[stranger.pk])).status_code == 404
    assert admin_client.get(reverse("billing:card_replace", args=[stranger.pk])).status_code == 404
    response = admin_client.post(reverse("billing:card_add"),
                                 {"payment_method": processor_card(), "replaces": stranger.pk})
    assert response.status_code == 404
    assert PaymentMethod.objects.filter(pk=stranger.pk).exists() and cards(admin) == []


def test_members_cannot_manage_cards(client, admin):
    client.force_login(UserFactory(organisation=admin.organisation))
    assert client.get(reverse("billing:payment_methods")).status_code == 403


def test_the_cards_page_costs_the_same_queries_with_one_card_as_with_six(admin_client, admin):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(reverse("billing:payment_methods")).status_code == 200
        return len(captured.captured_queries)

    add(admin_client)
    one = queries()
    PaymentMethod.objects.bulk_create(
        PaymentMethod(organisation=admin.organisation, processor_id=f"pm_more_{n}",
                      brand="visa", last4=f"100{n}", exp_month=n + 1, exp_year=2031)
        for n in range(5))
    assert queries() == one
