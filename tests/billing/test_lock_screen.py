"""A locked organisation (unpaid after its grace period): its admins reach only the choice screen
and the pages its three choices need; its members are told their administrator must act; Renew
pays the open renewal invoice.

The lock itself is set directly on the Subscription row here (the lifecycle tests walk a real
subscription into it); Renew's tests make the open invoice the real way, through the renewal
sweep and a declining card at localstripe."""
import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from djmoney.money import Money

from accounts.models import Organisation, User
from billing.models import Invoice, Quote, Status, Subscription, TrialUse
from billing.pricing import Change
from billing.services import lifecycle
from billing.services.payments import quote_pay
from billing.services.quotes import quote_create
from store import clock
from store.models import Plan
from tests.accounts.factories import AdminFactory, UserFactory
from tests.billing.helpers import DECLINING_CARD, GOOD_CARD, card_on_file

TOKYO = ZoneInfo("Asia/Tokyo")
FAILED = dt.datetime(2026, 12, 16, 0, 30, tzinfo=TOKYO)  # 2026-12-15 in UTC: dates are local
GRACE_ENDS = dt.datetime(2026, 12, 31, 0, 30, tzinfo=TOKYO)
LOCKED_AT = dt.datetime(2026, 12, 31, 0, 35, tzinfo=TOKYO)
TODAY = dt.datetime(2027, 1, 5, 10, 0, tzinfo=TOKYO)


def tokyo(*args):
    return dt.datetime(*args, tzinfo=TOKYO)


def _subscription(admin) -> Subscription:
    return Subscription.objects.get(organisation=admin.organisation)


def _open_invoice(subscription: Subscription, *, total: int, credit: int) -> Invoice:
    """An unpaid renewal invoice as the renewal sweep leaves it (only what the screen reads)."""
    return Invoice.objects.create(
        number="INV-900001", organisation=subscription.organisation, subscription=subscription,
        state=Invoice.State.OPEN, kind=Invoice.Kind.RENEWAL, period_start=FAILED,
        period_end=tokyo(2027, 1, 16, 0, 30), currency="JPY", subtotal=Money(6120, "JPY"),
        tax_rate=Decimal("0.10"), tax_rounding="ROUND_DOWN", tax=Money(612, "JPY"),
        total=Money(total, "JPY"), credit_applied=Money(credit, "JPY"),
        amount_paid=Money(0, "JPY"), credit_to_account=Money(0, "JPY"), seller_name="Kanri K.K.",
        buyer_name=subscription.organisation.name, plan_name="Standard",
        plan_name_ja="スタンダード")


def lock(admin, *, invoice: bool = True) -> Subscription:
    """The organisation on Standard, locked after a failed renewal and its grace period."""
    subscription = _subscription(admin)
    Subscription.objects.filter(pk=subscription.pk).update(
        plan=Plan.objects.get(code="standard"), status=Status.LOCKED, payment_failed_at=FAILED,
        grace_ends_at=GRACE_ENDS, locked_at=LOCKED_AT, next_retry_at=None, retries_made=4,
        current_period_start=tokyo(2026, 11, 16, 0, 30), current_period_end=FAILED)
    if invoice:
        Subscription.objects.filter(pk=subscription.pk).update(
            open_invoice=_open_invoice(subscription, total=6732, credit=1000))
    return _subscription(admin)


def _state(admin) -> tuple:
    """Everything a forged post could have changed."""
    organisation = Organisation.objects.get(pk=admin.organisation_id)
    return (_subscription(admin).version, _subscription(admin).status,
            TrialUse.objects.count(), Quote.objects.count(), organisation.closed_at,
            sorted(User.objects.filter(organisation=organisation)
                   .values_list("email", "is_active")))


# The choice screen --------------------------------------------------------------------------

def test_the_choice_screen_says_what_happened_what_is_owed_and_when_it_moves_to_free(
        admin_client, admin):
    lock(admin)

    with clock.travel(TODAY):
        response = admin_client.get(reverse("billing:locked"), HTTP_ACCEPT_LANGUAGE="ja")

    page = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="payment-failed">2026-12-16<' in page  # Tokyo's date, not UTC's
    assert "2026-12-31 に終了" in page and "猶予期間" in page
    assert 'data-testid="open-invoice"><a href="/manage/invoices/INV-900001/">INV-900001<' in page
    assert 'data-testid="amount-due">￥5,732<' in page  # 6,732 less the 1,000 credit applied
    # Two calendar months after the lock, the month end clamped (Dec 31 → Feb 28).
    assert "2027-02-28 にアカウントは無料プランへ移行します" in page


def test_the_three_choices_carry_the_seeds_words_and_go_where_each_choice_is_made(
        admin_client, admin):
    lock(admin)

    ja = admin_client.get(reverse("billing:locked"), HTTP_ACCEPT_LANGUAGE="ja").content.decode()
    en = admin_client.get(reverse("billing:locked")).content.decode()

    for page, words in ((ja, ["サブスクリプションの更新", "他のプランの選択",
                              "無料プランへのダウングレード"]),
                        (en, ["Renew subscription", "Choose another plan",
                              "Downgrade to Free plan"])):
        renew, plans, free = words
        assert (f'action="{reverse("billing:renew")}">' in page
                and f'data-testid="renew">{renew}</button>' in page)
        assert (f'href="{reverse("billing:plans")}" data-testid="choose-plan">{plans}</a>'
                in page)
        assert (f'action="{reverse("billing:switch_to_free")}">' in page
                and f'data-testid="downgrade">{free}</button>' in page)


def test_the_choice_screen_is_only_for_a_locked_organisation(admin_client, admin):
    response = admin_client.get(reverse("billing:locked"))

    assert response.status_code == 302 and response.url == reverse("billing:details")


def test_members_and_anonymous_visitors_do_not_get_the_choice_screen(client, admin):
    lock(admin)
    anonymous = client.get(reverse("billing:locked"))
    client.force_login(UserFactory(organisation=admin.organisation))

    assert anonymous.status_code == 302 and anonymous.url.startswith(reverse("accounts:login"))
    assert client.get(reverse("billing:locked")).status_code == 403
    assert client.post(reverse("billing:renew")).status_code == 403


# Every other page redirects -----------------------------------------------------------------

@pytest.mark.parametrize("name", ["billing:details", "billing:trial", "billing:delete",
                                  "accounts:users", "accounts:user_add", "accounts:home"])
def test_every_other_page_sends_a_locked_admin_to_the_choice_screen(admin_client, admin, name):
    lock(admin)

    response = admin_client.get(reverse(name))

    assert response.status_code == 302 and response.url == reverse("billing:locked")


def test_the_redirect_costs_no_query_beyond_what_every_page_pays(admin_client, admin,
                                                                  django_assert_num_queries):
    lock(admin)

    # session, user (joined with its organisation and its subscription's status)
    with django_assert_num_queries(2):
        response = admin_client.get(reverse("billing:details"))
    assert response.url == reverse("billing:locked")


def test_an_htmx_request_is_sent_to_the_choice_screen_as_a_whole_page(admin_client, admin):
    lock(admin)

    response = admin_client.get(reverse("accounts:users"), HTTP_HX_REQUEST="true")

    assert response.headers["HX-Redirect"] == reverse("billing:locked")


@pytest.mark.parametrize("name, args, data", [
    ("billing:trial", [], {"plan": "professional"}),
    ("billing:delete", [], {"organisation_name": "{org}"}),
    ("accounts:user_add", [], {"email": "new@example.test", "role": "admin",
                               "licence_type": "regular"}),
    ("accounts:user_deactivate", ["{member}"], {}),
    ("accounts:user_reactivate", ["{inactive}"], {}),
])
def test_a_forged_post_by_a_locked_admin_changes_nothing(admin_client, admin, name, args, data):
    member = UserFactory(organisation=admin.organisation, email="member@example.test")
    inactive = UserFactory(organisation=admin.organisation, email="gone@example.test",
                           is_active=False)
    lock(admin)
    fill = {"{org}": admin.organisation.name, "{member}": member.pk, "{inactive}": inactive.pk}
    before = _state(admin)

    response = admin_client.post(reverse(name, args=[fill.get(a, a) for a in args]),
                                 {key: fill.get(value, value) for key, value in data.items()})

    assert response.status_code == 302 and response.url == reverse("billing:locked")
    assert _state(admin) == before


@pytest.mark.parametrize("name, args", [
    ("billing:plans", []),
    ("billing:configure", ["professional"]),
    ("billing:invoice", ["INV-900001"]),
])
def test_the_pages_the_choices_need_stay_open(admin_client, admin, name, args):
    lock(admin)

    assert admin_client.get(reverse(name, args=args)).status_code == 200


def test_choosing_another_plan_reaches_its_review_while_locked(admin_client, admin):
    lock(admin)

    configured = admin_client.post(reverse("billing:configure", args=["professional"]), {
        "cycle": "monthly", "regular_licences": "3", "team_licences": "0",
        "storage_units": "0"})
    review = admin_client.get(configured.url)

    assert configured.status_code == 302 and review.status_code == 200
    assert 'data-testid="pay"' in review.content.decode()


def test_downgrade_to_free_goes_to_the_review_for_confirmation(admin_client, admin):
    lock(admin, invoice=False)

    response = admin_client.post(reverse("billing:switch_to_free"))

    quote = Quote.objects.get()
    assert response.url == reverse("billing:review", args=[quote.pk])
    assert quote.plan.code == "free"
    assert _subscription(admin).status == Status.LOCKED  # nothing moves before the confirmation


# Members -------------------------------------------------------------------------------------

@pytest.mark.parametrize("language, words", [
    ("ja", "管理者による対応が必要です"), ("en", "Your administrator must act")])
def test_members_of_a_locked_organisation_are_told_their_administrator_must_act(
        client, admin, language, words):
    lock(admin)
    client.force_login(UserFactory(organisation=admin.organisation))

    page = client.get(reverse("accounts:home"), HTTP_ACCEPT_LANGUAGE=language).content.decode()

    assert words in page
    assert 'data-testid="administrator-must-act"' in page


def test_members_of_an_organisation_that_is_not_locked_see_the_home_page(client, admin):
    client.force_login(UserFactory(organisation=admin.organisation))

    page = client.get(reverse("accounts:home")).content.decode()

    assert "administrator-must-act" not in page


def test_another_organisations_lock_changes_nothing_for_us(admin_client, admin):
    lock(AdminFactory())

    assert admin_client.get(reverse("billing:details")).status_code == 200


# Renew ---------------------------------------------------------------------------------------

DUE = tokyo(2027, 2, 10, 9, 0)  # the end of the month bought on 2027-01-10


def _renewal_declined(admin) -> Subscription:
    """Bought Standard for a month on 2027-01-10 with a good card, then the card declines: the
    renewal sweep leaves the organisation past due with an open renewal invoice."""
    card_on_file(organisation=admin.organisation, acting_user=admin)
    with clock.travel(tokyo(2027, 1, 10, 9, 0)):
        quote = quote_create(organisation=admin.organisation, acting_user=admin,
                             change=Change(Plan.objects.get(code="standard"), "monthly", 3, 0,
                                           0))
        assert quote_pay(organisation=admin.organisation, quote_id=quote.pk,
                         acting_user=admin).invoice
    card_on_file(organisation=admin.organisation, acting_user=admin, number=DECLINING_CARD)
    with clock.travel(DUE):
        lifecycle.subscription_renew(subscription_id=_subscription(admin).pk)
    subscription = _subscription(admin)
    assert subscription.status == Status.PAST_DUE and subscription.open_invoice_id
    return subscription


def _renewal_locked(admin) -> Subscription:
    subscription = _renewal_declined(admin)
    with clock.travel(subscription.grace_ends_at):
        lifecycle.sweep_locks()
    subscription = _subscription(admin)
    assert subscription.status == Status.LOCKED
    return subscription


@pytest.mark.usefixtures("payment_sandbox")
def test_renew_pays_the_open_invoice_and_unlocks(admin_client, admin):
    invoice = _renewal_locked(admin).open_invoice
    card_on_file(organisation=admin.organisation, acting_user=admin, number=GOOD_CARD)

    with clock.travel(DUE + dt.timedelta(days=20)):
        response = admin_client.post(reverse("billing:renew"), follow=True)

    assert response.redirect_chain == [(reverse("billing:invoice", args=[invoice.number]), 302)]
    assert "Paid: your subscription is active again." in response.content.decode()
    subscription = _subscription(admin)
    assert (subscription.status, subscription.open_invoice) == (Status.ACTIVE, None)
    assert Invoice.objects.get(pk=invoice.pk).state == Invoice.State.PAID
    assert admin_client.get(reverse("billing:details")).status_code == 200  # unlocked


@pytest.mark.usefixtures("payment_sandbox")
def test_a_declined_renew_shows_the_reason_on_the_choice_screen_and_stays_locked(
        admin_client, admin):
    invoice = _renewal_locked(admin).open_invoice

    with clock.travel(DUE + dt.timedelta(days=20)):
        response = admin_client.post(reverse("billing:renew"), HTTP_ACCEPT_LANGUAGE="ja")

    page = response.content.decode()
    assert response.status_code == 402
    assert 'data-testid="renew-error" data-code="card_declined"' in page
    assert "カードが拒否されました" in page
    assert 'data-testid="downgrade"' in page  # still the choice screen
    assert _subscription(admin).status == Status.LOCKED
    assert Invoice.objects.get(pk=invoice.pk).state == Invoice.State.OPEN


@pytest.mark.usefixtures("payment_sandbox")
def test_a_past_due_organisation_can_renew_from_the_details_page(admin_client, admin):
    _renewal_declined(admin)

    with clock.travel(DUE + dt.timedelta(days=2)):
        details = admin_client.get(reverse("billing:details")).content.decode()
        declined = admin_client.post(reverse("billing:renew"))
        card_on_file(organisation=admin.organisation, acting_user=admin, number=GOOD_CARD)
        paid = admin_client.post(reverse("billing:renew"))

    assert f'action="{reverse("billing:renew")}"' in details
    assert declined.status_code == 402
    assert 'data-testid="dunning"' in declined.content.decode()  # the details page again
    assert paid.status_code == 302 and paid.url.startswith("/manage/invoices/")
    assert _subscription(admin).status == Status.ACTIVE


def test_renew_with_no_open_invoice_says_so_and_changes_nothing(admin_client, admin):
    lock(admin, invoice=False)
    before = _state(admin)

    response = admin_client.post(reverse("billing:renew"))

    assert response.status_code == 409
    assert "There is no unpaid invoice to pay." in response.content.decode()
    assert 'data-testid="choices"' in response.content.decode()
    assert _state(admin) == before


def test_renew_is_a_post(admin_client, admin):
    lock(admin)

    assert admin_client.get(reverse("billing:renew")).status_code == 405


def test_renew_pays_only_the_organisations_own_invoice_whatever_is_posted(admin_client, admin):
    other = lock(AdminFactory()).open_invoice
    lock(admin, invoice=False)

    response = admin_client.post(reverse("billing:renew"), {"invoice": other.number,
                                                            "invoice_id": other.pk})

    assert response.status_code == 409  # ours has none to pay; the posted id is not read
    assert Invoice.objects.get(pk=other.pk).state == Invoice.State.OPEN
    assert admin_client.get(reverse("billing:invoice", args=[other.number])).status_code == 404
