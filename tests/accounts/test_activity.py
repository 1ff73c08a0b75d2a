"""管理 → Activity: the organisation's audit trail as its admins read it ("who removed our
licences?"), support staff shown as Kanri support with their reason."""
import datetime as dt
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.audit import audit_record
from accounts.services import user_deactivate
from billing.models import Quote
from billing.services.payments import quote_pay
from store import clock
from tests.accounts.factories import AdminFactory, UserFactory
from tests.billing.factories import paid_quote_applied

pytestmark = pytest.mark.usefixtures("payment_sandbox")


@pytest.fixture
def admin(db):
    return AdminFactory(email="boss@example.test")


@pytest.fixture
def admin_client(client, admin):
    client.force_login(admin)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def events(response) -> list[str]:
    return re.findall(r'data-testid="event" data-action="([^"]+)"', response.content.decode())


def test_who_removed_our_licences_is_answered_with_before_and_after(admin_client, admin):
    paid_quote_applied(admin=admin, regular=5)
    colleague = AdminFactory(email="colleague@example.test", organisation=admin.organisation)
    other = AdminFactory()  # another organisation's history stays theirs
    paid_quote_applied(admin=other, regular=4)
    colleague_client = admin_client.__class__()
    colleague_client.force_login(colleague)
    review = colleague_client.post(reverse("billing:licences_remove"), {"regular": 1})
    quote = Quote.objects.get(pk=review.url.rstrip("/").split("/")[-1])
    assert quote_pay(organisation=admin.organisation, quote_id=quote.pk,
                     acting_user=colleague).invoice is not None

    page = admin_client.get(reverse("accounts:activity"), {"kind": "subscription"})
    text = page.content.decode()
    assert events(page) == ["subscription.changed", "subscription.changed"]
    assert "colleague@example.test" in text and "Regular user licences: 5 → 4" in text
    assert "Regular user licences: 4" not in text.replace("5 → 4", "")  # not the other org's


def test_support_staff_appear_as_kanri_support_with_their_reason(admin_client, admin):
    staff = UserFactory(organisation=None, is_staff=True, email="agent@kanri.example")
    audit_record(organisation=admin.organisation, actor=staff, action="subscription.changed",
                 target=admin.organisation, before={"status": "locked"},
                 after={"status": "past_due"}, reason="paid by bank transfer")
    text = admin_client.get(reverse("accounts:activity")).content.decode()
    assert "Kanri support" in text and "paid by bank transfer" in text
    assert "agent@kanri.example" not in text and "Status: locked → past_due" in text


def test_filters_pages_and_a_fixed_number_of_queries(admin_client, admin):
    people = [UserFactory(organisation=admin.organisation) for _ in range(3)]
    with clock.travel(clock.now() - dt.timedelta(days=10)):
        user_deactivate(user=people[0], acting_user=admin)
    url = reverse("accounts:activity")

    def queries(**query) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(url, query).status_code == 200
        return len(captured.captured_queries)

    one = queries()
    for n in range(30):
        audit_record(organisation=admin.organisation, actor=admin, action="card.default",
                     target=admin.organisation, after={"last4": f"{n:04d}"})
    assert queries() == queries(page=2) == one
    assert len(events(admin_client.get(url))) == 25
    assert len(events(admin_client.get(url, {"page": 2}))) == 6
    assert events(admin_client.get(url, {"kind": "user"})) == ["user.deactivated"]
    today = clock.now().date().isoformat()
    assert "user.deactivated" not in events(admin_client.get(url, {"start": today}))
    bad = admin_client.get(url, {"start": "2026-02-30"})
    assert bad.status_code == 400 and "Enter a valid date." in bad.content.decode()
    assert admin_client.get(url, {"kind": "secrets"}).status_code == 400


def test_members_cannot_read_the_activity(client, admin):
    client.force_login(UserFactory(organisation=admin.organisation))
    assert client.get(reverse("accounts:activity")).status_code == 403


@pytest.mark.parametrize(("zone", "shown"), [("Asia/Tokyo", "2026-12-01 08:30"),
                                             ("America/New_York", "2026-11-30 18:30")])
def test_each_event_is_dated_on_the_organisations_clock(admin_client, admin, zone, shown):
    admin.organisation.time_zone = zone
    admin.organisation.save(update_fields=["time_zone"])
    with clock.travel(dt.datetime(2026, 11, 30, 23, 30, tzinfo=dt.UTC)):
        user_deactivate(acting_user=admin, user=UserFactory(organisation=admin.organisation))

    page = admin_client.get(reverse("accounts:activity")).content.decode()

    assert f"<td>{shown}</td>" in page
