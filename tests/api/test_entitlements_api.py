"""Entitlements through the API: a downgrade over the record limit blocks creating records and
leaves editing them allowed, with the reason in the organisation's language; usage reports move
the answer; a locked organisation may only read; each key reaches its own organisation only."""
import datetime as dt

import pytest

from api.models import UsageReport
from billing.models import Status
from store import clock
from tests.accounts.factories import AdminFactory
from tests.api.conftest import Crm, key_for
from tests.billing.factories import paid_quote_applied, subscription_in

pytestmark = pytest.mark.django_db
MINUTE = dt.timedelta(minutes=1)


def over_the_limit_after_a_downgrade(admin, language: str) -> Crm:
    """Professional with 12,340 records (reported by the CRM), then down to Standard (10,000)."""
    admin.organisation.language = language
    admin.organisation.save()
    paid_quote_applied(admin=admin, plan="professional")
    crm = Crm(key_for(admin))
    crm.report(records=12_340, storage_mb=300, at=clock.now() - 10 * MINUTE)
    assert crm.authorize("create")["allowed"] is True  # Professional allows 100,000
    paid_quote_applied(admin=admin, plan="standard")
    return crm


def test_over_the_record_limit_creating_is_refused_with_figures_and_editing_allowed(admin):
    crm = over_the_limit_after_a_downgrade(admin, "en")

    assert crm.authorize("create") == {
        "allowed": False,
        "reason": "12,340 records; Standard allows 10,000: delete 2,341 or upgrade to create "
                  "records."}
    assert crm.authorize("update") == {"allowed": True, "reason": ""}
    entitlements = crm.entitlements()
    assert (entitlements["plan"], entitlements["plan_name"], entitlements["status"]) == (
        "standard", "Standard", "active")
    assert entitlements["limits"]["records"] == 10_000
    assert entitlements["usage"]["records"] == 12_340
    assert entitlements["over_record_limit"] is True


def test_the_refusal_is_in_japanese_for_a_japanese_organisation(admin):
    crm = over_the_limit_after_a_downgrade(admin, "ja")

    assert crm.authorize("create") == {
        "allowed": False,
        "reason": "レコード数 12,340 件。スタンダードの上限は 10,000 件です。"
                  "レコードを作成するには 2,341 件を削除するか、アップグレードしてください。"}
    assert crm.authorize("update")["allowed"] is True
    assert crm.entitlements()["plan_name"] == "スタンダード"


def test_reporting_9999_records_allows_creating_again(admin):
    crm = over_the_limit_after_a_downgrade(admin, "en")

    answer = crm.report(records=9_999)

    assert answer["applied"] is True
    assert answer["detail"] == ("Recorded: 9,999 records and 0 MB are the organisation's usage "
                                "now.")
    assert crm.authorize("create") == {"allowed": True, "reason": ""}
    assert crm.authorize("create", amount=2)["allowed"] is False  # 10,001 would be over


def test_a_report_older_than_the_applied_one_is_kept_and_ignored(admin, crm):
    admin.organisation.language = "en"
    admin.organisation.save()
    now = clock.now().replace(microsecond=0)
    newer, older = now - MINUTE, now - 5 * MINUTE
    crm.report(records=9_000, at=newer)

    answer = crm.report(records=20_000, at=older)
    same_time = crm.report(records=30_000, at=newer)

    assert answer["applied"] is False and same_time["applied"] is False
    assert answer["applied_reported_at"] == newer.isoformat().replace("+00:00", "Z")
    assert answer["detail"].startswith("Kept but not applied: the usage comes from a report")
    assert crm.entitlements()["usage"]["records"] == 9_000
    assert list(UsageReport.objects.order_by("pk").values_list("records", "applied")) == [
        (9_000, True), (20_000, False), (30_000, False)]
    admin.organisation.refresh_from_db()
    assert admin.organisation.usage_reported_at == newer


def test_a_storage_upload_is_refused_when_it_does_not_fit(admin, crm):
    admin.organisation.language = "en"
    admin.organisation.save()
    limit = crm.entitlements()["limits"]["storage_mb"]  # Free: 1 GB for the organisation
    crm.report(records=0, storage_mb=limit - 10)

    assert crm.authorize("upload", "storage", 10)["allowed"] is True
    refused = crm.authorize("upload", "storage", 11)
    assert refused["allowed"] is False
    assert refused["reason"] == (f"{limit - 10:,} MB of {limit:,} MB used: this upload of 11 MB "
                                 "does not fit. Free space or add storage.")


def test_a_locked_organisation_may_only_read(admin):
    admin.organisation.language = "en"
    admin.organisation.save()
    crm = Crm(key_for(admin))  # made before the lock: a locked organisation makes no key
    subscription_in(Status.LOCKED, admin=admin)

    for action, resource in [("create", "records"), ("update", "records"),
                             ("upload", "storage"), ("create", "storage")]:
        answer = crm.authorize(action, resource)
        assert answer["allowed"] is False
        assert answer["reason"].startswith("The account is locked because a payment is overdue")
    assert crm.entitlements()["status"] == "locked"
    assert crm.report(records=10)["applied"] is True  # the CRM may still say what it holds


def test_the_key_decides_the_organisation_and_nothing_in_a_request_changes_that():
    first, second = AdminFactory(), AdminFactory()
    first_crm, second_crm = Crm(key_for(first)), Crm(key_for(second))
    first_crm.report(records=500)

    assert second_crm.entitlements()["usage"]["records"] == 0
    named = second_crm.client.get(f"/api/v1/entitlements?organisation={first.organisation_id}",
                                  headers=second_crm.headers)
    assert named.json()["usage"]["records"] == 0
    smuggled = second_crm.post("usage", {"records": 1, "storage_mb": 0,
                                         "reported_at": clock.now().isoformat(),
                                         "organisation": first.organisation_id})
    assert smuggled.status_code == 400
    second_crm.report(records=7)
    first.organisation.refresh_from_db()
    second.organisation.refresh_from_db()
    assert (first.organisation.record_count, second.organisation.record_count) == (500, 7)
    assert set(UsageReport.objects.values_list("organisation_id", "records")) == {
        (first.organisation_id, 500), (second.organisation_id, 7)}


def test_the_x_api_key_header_works_as_well(admin):
    crm = Crm(key_for(admin), header="x-api-key")

    assert crm.entitlements()["plan"] == "free"
