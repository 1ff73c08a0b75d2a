"""Manage › API keys: an administrator makes a key (shown once, stored hashed), sees the list
(never the secret again) and revokes a key; both are audited. Members get 403, another
organisation's key 404. A locked organisation's admin still sees and revokes its keys, but makes
none."""
import datetime as dt
import hashlib
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEvent, Role
from api.models import ApiKey
from billing.models import Status
from store import clock
from tests.accounts.factories import AdminFactory, UserFactory
from tests.api.conftest import Crm, key_for
from tests.billing.factories import subscription_in

pytestmark = pytest.mark.django_db
KEYS = reverse("api_keys:list")
FULL_KEY = re.compile(r"kanri_([a-z0-9]{8})_([A-Za-z0-9]{40})")


@pytest.fixture
def admin_client(client, admin):
    client.force_login(admin)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def test_a_new_key_is_shown_once_and_only_its_hash_is_kept(admin, admin_client):
    created = admin_client.post(KEYS, {"name": "CRM production"})

    assert created.status_code == 200
    assert created["Cache-Control"].startswith("max-age=0")
    page = created.content.decode()
    [(prefix, secret)] = FULL_KEY.findall(page)
    assert "this is the only time it is shown" in page
    key = ApiKey.objects.get()
    assert (key.organisation, key.name, key.prefix, key.created_by) == (
        admin.organisation, "CRM production", prefix, admin)
    assert key.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(list(ApiKey.objects.values()))
    event = AuditEvent.objects.get(action="api_key.created")
    assert (event.actor, event.target_id, event.after) == (
        admin, str(key.pk), {"name": "CRM production", "prefix": prefix})

    listed = admin_client.get(KEYS).content.decode()
    assert f"kanri_{prefix}_" in listed and "CRM production" in listed
    assert secret not in listed and not FULL_KEY.search(listed)

    assert Crm(f"kanri_{prefix}_{secret}").entitlements()["plan"] == "free"


def test_a_key_needs_a_name(admin_client):
    response = admin_client.post(KEYS, {"name": "   "})

    assert response.status_code == 400
    assert not ApiKey.objects.exists()
    assert not FULL_KEY.search(response.content.decode())


def test_the_list_shows_when_a_key_was_last_used_written_at_most_once_a_minute(
        admin, admin_client):
    crm = Crm(key_for(admin))
    assert "never" in admin_client.get(KEYS).content.decode()

    crm.entitlements()
    used = ApiKey.objects.get().last_used_at
    assert used is not None
    with CaptureQueriesContext(connection) as queries:
        crm.authorize("update")
    assert not [query for query in queries if query["sql"].startswith("UPDATE")]
    assert ApiKey.objects.get().last_used_at == used
    with clock.travel(used + dt.timedelta(seconds=61)):
        crm.authorize("update")
    assert ApiKey.objects.get().last_used_at > used
    assert f"{timezone.localtime(ApiKey.objects.get().last_used_at):%Y-%m-%d %H:%M}" in (
        admin_client.get(KEYS).content.decode())


def test_revoking_a_key_stops_it_at_once_and_is_audited(admin, admin_client):
    crm = Crm(key_for(admin))
    key = ApiKey.objects.get()
    assert crm.get("entitlements").status_code == 200

    response = admin_client.post(reverse("api_keys:revoke", args=[key.pk]), follow=True)

    assert "is revoked: the CRM can no longer use it" in response.content.decode()
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert crm.get("entitlements").status_code == 401
    event = AuditEvent.objects.get(action="api_key.revoked")
    assert (event.actor, event.target_id, event.before) == (admin, str(key.pk),
                                                            {"revoked_at": None})
    assert "Revoked" in admin_client.get(KEYS).content.decode()

    again = admin_client.post(reverse("api_keys:revoke", args=[key.pk]), follow=True)
    assert "was already revoked" in again.content.decode()
    assert AuditEvent.objects.filter(action="api_key.revoked").count() == 1


def test_revoking_needs_a_post(admin, admin_client):
    key_for(admin)
    response = admin_client.get(reverse("api_keys:revoke", args=[ApiKey.objects.get().pk]))

    assert response.status_code == 405
    assert ApiKey.objects.get().revoked_at is None


def test_members_may_not_open_the_keys_screen(admin, client):
    key_for(admin)
    member = UserFactory(organisation=admin.organisation, role=Role.MEMBER)
    client.force_login(member)

    assert client.get(KEYS).status_code == 403
    assert client.post(KEYS, {"name": "mine"}).status_code == 403
    assert client.post(reverse("api_keys:revoke",
                               args=[ApiKey.objects.get().pk])).status_code == 403
    assert ApiKey.objects.count() == 1 and ApiKey.objects.get().revoked_at is None


def test_another_organisations_key_is_404_and_not_listed(admin_client):
    other = AdminFactory()
    key_for(other, "their CRM")
    theirs = ApiKey.objects.get()

    assert admin_client.post(reverse("api_keys:revoke", args=[theirs.pk])).status_code == 404
    assert ApiKey.objects.get().revoked_at is None
    assert "their CRM" not in admin_client.get(KEYS).content.decode()


def test_the_keys_screen_needs_a_login(client):
    response = client.get(KEYS)

    assert response.status_code == 302 and "/login/" in response["Location"]


def test_a_locked_organisations_admin_revokes_a_key_that_still_reads_the_account(
        admin, admin_client):
    crm = Crm(key_for(admin))
    subscription_in(Status.LOCKED, admin=admin)
    assert crm.entitlements()["status"] == "locked"  # a key reads through the lock
    key = ApiKey.objects.get()

    listed = admin_client.get(KEYS)
    revoked = admin_client.post(reverse("api_keys:revoke", args=[key.pk]), follow=True)

    assert listed.status_code == 200 and f"kanri_{key.prefix}_" in listed.content.decode()
    assert revoked.redirect_chain == [(KEYS, 302)]
    assert "is revoked: the CRM can no longer use it" in revoked.content.decode()
    assert crm.get("entitlements").status_code == 401
    assert AuditEvent.objects.filter(action="api_key.revoked", target_id=str(key.pk)).exists()


def test_a_locked_organisation_makes_no_new_key_and_the_page_says_why(admin, admin_client):
    subscription_in(Status.LOCKED, admin=admin)
    refusal = ("The account is locked, so no new key can be made until the subscription is "
               "renewed or another plan chosen; revoking a key still works.")

    page = admin_client.get(KEYS).content.decode()
    forged = admin_client.post(KEYS, {"name": "CRM production"})

    assert refusal in page and 'data-testid="create-key"' not in page
    assert reverse("billing:locked") in page
    assert forged.status_code == 400 and refusal in forged.content.decode()
    assert not ApiKey.objects.exists()
    assert not AuditEvent.objects.filter(action="api_key.created").exists()
