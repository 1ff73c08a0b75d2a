"""Writes: API keys made and revoked by an organisation's administrators (audited), the key's
last use, and the usage the CRM reports."""
import datetime as dt
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils.translation import gettext as _

from accounts.audit import audit_record
from accounts.models import Organisation, User
from api import keys, selectors
from api.errors import ApiKeyError
from api.models import ApiKey, UsageReport
from billing.entitlements_cache import entitlements_forget_on_commit
from store import clock

# A key's last use is written at most this often: reading it costs nothing (the row is read to
# authenticate), writing it on every request would cost a write per request.
LAST_USED_EVERY = dt.timedelta(minutes=1)


@transaction.atomic
def api_key_create(*, organisation: Organisation, name: str,
                   acting_user: User) -> tuple[ApiKey, str]:
    """A new key and its full text, which nobody can see again: only its hash is kept. Refused
    while the organisation may not make one (`selectors.api_key_create_refusal`)."""
    if refusal := selectors.api_key_create_refusal(organisation=organisation):
        raise ApiKeyError(refusal)
    name = name.strip()
    if not name:
        raise ApiKeyError(_("Give the key a name, e.g. the CRM server that will use it."))
    secret = keys.new_secret()
    for _attempt in range(5):  # a prefix already taken (1 in 2.8 trillion): draw another
        try:
            with transaction.atomic():
                key = ApiKey.objects.create(organisation=organisation, name=name,
                                            prefix=keys.new_prefix(),
                                            secret_hash=keys.digest(secret),
                                            created_by=acting_user, created_at=clock.now())
            break
        except IntegrityError:
            continue
    else:
        raise ApiKeyError(_("No key could be made just now; try again."))
    audit_record(organisation=organisation, actor=acting_user, action="api_key.created",
                 target=key, after={"name": key.name, "prefix": key.prefix})
    return key, keys.full_key(key.prefix, secret)


@transaction.atomic
def api_key_revoke(*, key: ApiKey, acting_user: User) -> ApiKey:
    """Revoke a key: the next request that carries it gets 401."""
    key = ApiKey.objects.select_for_update().get(pk=key.pk)
    if key.revoked_at is not None:
        raise ApiKeyError(_("The key “%(name)s” was already revoked.") % {"name": key.name})
    key.revoked_at = clock.now()
    key.save(update_fields=["revoked_at"])
    audit_record(organisation=key.organisation, actor=acting_user, action="api_key.revoked",
                 target=key, before={"revoked_at": None},
                 after={"revoked_at": key.revoked_at.isoformat()},
                 reason=f"{key.name} (kanri_{key.prefix}_…)")
    return key


def api_key_mark_used(key: ApiKey) -> None:
    """Record the key's use, at most once per LAST_USED_EVERY (no write per request; the WHERE
    keeps concurrent requests from writing it twice)."""
    now = clock.now()
    if key.last_used_at is not None and now - key.last_used_at < LAST_USED_EVERY:
        return
    ApiKey.objects.filter(pk=key.pk).filter(
        Q(last_used_at=None) | Q(last_used_at__lte=now - LAST_USED_EVERY)).update(
        last_used_at=now)
    key.last_used_at = now


@dataclass(frozen=True)
class UsageOutcome:
    report: UsageReport
    applied_reported_at: dt.datetime | None  # the report the organisation's usage is from


@transaction.atomic
def usage_report(*, key: ApiKey, records: int, storage_mb: int,
                 reported_at: dt.datetime) -> UsageOutcome:
    """Keep the report, and make it the organisation's usage unless a report taken at the same
    time or later was applied already: reports that arrive out of order never go backwards.
    The reports themselves are the history (append-only); no audit row per report."""
    organisation_id = key.organisation_id
    applied = Organisation.objects.filter(pk=organisation_id).filter(
        Q(usage_reported_at=None) | Q(usage_reported_at__lt=reported_at)).update(
        record_count=records, storage_used_mb=storage_mb, usage_reported_at=reported_at) == 1
    report = UsageReport.objects.create(organisation_id=organisation_id, api_key=key,
                                        records=records, storage_mb=storage_mb,
                                        reported_at=reported_at, received_at=clock.now(),
                                        applied=applied)
    if applied:
        entitlements_forget_on_commit([organisation_id])  # the UPDATE sends no signal
        return UsageOutcome(report, reported_at)
    return UsageOutcome(report, Organisation.objects.values_list("usage_reported_at", flat=True)
                        .get(pk=organisation_id))
