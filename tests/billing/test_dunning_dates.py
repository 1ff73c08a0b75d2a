"""A past-due subscription's details page says what comes next, in words and with dates on the
organisation's clock: the failed payment, the next retry, the end of grace (the lock), the move
to Free two calendar months later. The dunning fields are set directly on the row here; the
lifecycle tests show the sweeps set them so."""
import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse

from accounts.models import Organisation
from billing import selectors
from billing.models import Status, Subscription
from store import clock
from store.models import Plan
from tests.accounts.factories import AdminFactory

TOKYO = ZoneInfo("Asia/Tokyo")


def tokyo(*args):
    return dt.datetime(*args, tzinfo=TOKYO)


DUE = tokyo(2027, 12, 16, 9, 0)
RETRY = tokyo(2027, 12, 17, 9, 0)
GRACE_ENDS = tokyo(2027, 12, 31, 9, 0)


@pytest.fixture
def admin(db):
    return AdminFactory()


def unpaid_renewal(admin, *, next_retry_at=RETRY, **fields) -> Subscription:
    """Standard, its renewal due 2027-12-16 declined: past due unless `fields` say otherwise."""
    Subscription.objects.filter(organisation=admin.organisation).update(**{
        "plan": Plan.objects.get(code="standard"), "status": Status.PAST_DUE,
        "payment_failed_at": DUE, "next_retry_at": next_retry_at, "grace_ends_at": GRACE_ENDS,
        "current_period_start": DUE, "current_period_end": tokyo(2028, 1, 16, 9, 0), **fields})
    return (Subscription.objects.select_related("organisation")
            .get(organisation=admin.organisation))


def test_the_timeline_counts_two_calendar_months_from_the_end_of_grace(admin):
    timeline = selectors.dunning_timeline(unpaid_renewal(admin))

    assert timeline == selectors.DunningTimeline(
        payment_failed_on=dt.date(2027, 12, 16), next_retry_on=dt.date(2027, 12, 17),
        grace_ends_on=dt.date(2027, 12, 31), locked_on=None,
        moves_to_free_on=dt.date(2028, 2, 29))  # Dec 31 + 2 months, clamped to a leap Feb


def test_the_timeline_reads_the_organisations_clock(admin):
    Organisation.objects.filter(pk=admin.organisation_id).update(time_zone="America/New_York")
    # 2027-12-31 09:00 in Tokyo is 2027-12-30 19:00 in New York
    timeline = selectors.dunning_timeline(unpaid_renewal(admin))

    assert timeline.grace_ends_on == dt.date(2027, 12, 30)
    assert timeline.payment_failed_on == dt.date(2027, 12, 15)
    assert timeline.moves_to_free_on == dt.date(2028, 2, 29)  # Dec 30 + 2 months, clamped


def test_a_locked_subscription_moves_to_free_two_months_after_its_lock(admin):
    subscription = unpaid_renewal(admin, status=Status.LOCKED, next_retry_at=None,
                            locked_at=tokyo(2028, 1, 2, 3, 0))

    timeline = selectors.dunning_timeline(subscription)

    assert (timeline.locked_on, timeline.moves_to_free_on) == (dt.date(2028, 1, 2),
                                                               dt.date(2028, 3, 2))
    assert timeline.next_retry_on is None


@pytest.mark.parametrize("status", [Status.FREE, Status.TRIALING, Status.ACTIVE])
def test_there_is_no_timeline_while_nothing_is_owed(admin, status):
    assert selectors.dunning_timeline(unpaid_renewal(admin, status=status)) is None


def test_the_details_page_says_what_comes_next_in_words(client, admin):
    unpaid_renewal(admin)
    client.force_login(admin)

    with clock.travel(tokyo(2027, 12, 16, 12, 0)):
        page = client.get(reverse("billing:details"), HTTP_ACCEPT_LANGUAGE="en").content.decode()

    assert ("Payment failed on 2027-12-16; we retry on 2027-12-17; grace ends on 2027-12-31; "
            "the account locks then; on 2028-02-29 it moves to the Free plan.") in page
    assert "<h2>Grace period</h2>" in page
    assert (f'action="{reverse("billing:renew")}">' in page
            and 'data-testid="renew">Renew subscription</button>' in page)


def test_the_details_page_in_japanese_uses_the_seeds_words(client, admin):
    unpaid_renewal(admin)
    client.force_login(admin)

    page = client.get(reverse("billing:details"), HTTP_ACCEPT_LANGUAGE="ja").content.decode()

    assert "<h2>猶予期間</h2>" in page
    assert ("2027-12-16 にお支払いができませんでした。2027-12-17 に再度請求します。"
            "猶予期間は 2027-12-31 に終了し、その時点でアカウントはロックされます。"
            "2028-02-29 に無料プランへ移行します。") in page
    assert 'data-testid="renew">サブスクリプションの更新</button>' in page


def test_after_the_last_retry_the_page_says_none_is_left(client, admin):
    unpaid_renewal(admin, next_retry_at=None, retries_made=4)
    client.force_login(admin)

    page = client.get(reverse("billing:details"), HTTP_ACCEPT_LANGUAGE="en").content.decode()

    assert "Payment failed on 2027-12-16; no retry is left; grace ends on 2027-12-31;" in page


def test_an_active_subscription_shows_no_grace_period(client, admin):
    client.force_login(admin)

    page = client.get(reverse("billing:details"), HTTP_ACCEPT_LANGUAGE="en").content.decode()

    assert 'data-testid="dunning"' not in page


def test_the_timeline_costs_no_query(client, admin, django_assert_num_queries):
    unpaid_renewal(admin)
    client.force_login(admin)

    # as for any organisation: session, user (with its organisation and its subscription's
    # status), subscription, invoices, the open payment, the user count
    with django_assert_num_queries(6):
        response = client.get(reverse("billing:details"))
    assert response.context["overview"].dunning.grace_ends_on == dt.date(2027, 12, 31)
