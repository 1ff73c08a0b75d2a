"""The details page's usage panel, and the downgrade's warning and over-limit state (the seed: over
the record limit nothing new can be created, existing records stay editable)."""
import pytest
from django.urls import reverse

from accounts.models import Organisation
from billing.entitlements import authorize, entitlements_for
from billing.models import Quote
from billing.services.payments import quote_pay
from billing.services.quotes import Change, quote_create
from store.models import Plan
from tests.billing.factories import paid_quote_applied

pytestmark = pytest.mark.usefixtures("payment_sandbox")


def records(admin, count):
    Organisation.objects.filter(pk=admin.organisation_id).update(record_count=count)
    admin.organisation.refresh_from_db()  # as the next request would load it


def test_the_panel_shows_each_usage_against_its_limit(admin_client, admin):
    paid_quote_applied(admin=admin, plan="standard", regular=3, storage=1)
    records(admin, 2_500)
    Organisation.objects.filter(pk=admin.organisation_id).update(storage_used_mb=700)
    page = admin_client.get(reverse("billing:details")).content.decode()
    standard = Plan.objects.get(code="standard")
    assert f"Records: <strong>2,500</strong> / {standard.max_records:,}" in page
    assert "<strong>700 MB</strong>" in page and 'data-testid="usage-users_regular"' in page
    assert 'data-testid="over-records"' not in page


def test_a_downgrade_over_the_record_limit_warns_then_blocks_creation_only(admin_client,
                                                                          admin):
    paid_quote_applied(admin=admin, plan="professional", regular=3)
    standard = Plan.objects.get(code="standard")
    records(admin, standard.max_records + 2_340)

    quote = quote_create(organisation=admin.organisation, acting_user=admin,
                         change=Change(standard, "monthly", 3, 0, 0))
    review = admin_client.get(reverse("billing:review", args=[quote.pk])).content.decode()
    assert f"You have {standard.max_records + 2_340:,} records" in review
    assert "existing records stay editable" in review
    assert quote_pay(organisation=admin.organisation, quote_id=quote.pk,
                     acting_user=admin).invoice is not None  # the admin may proceed

    page = admin_client.get(reverse("billing:details")).content.decode()
    assert "Creating records is blocked until you delete 2,341 or upgrade" in page
    entitled = entitlements_for(organisation=admin.organisation)
    assert not authorize(entitled, action="create", resource="records").allowed
    assert authorize(entitled, action="update", resource="records").allowed
    assert Quote.objects.get(pk=quote.pk).state == "paid"
