"""Reads: an organisation's API keys, whether it may make one, and the key a request carries."""
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _

from accounts.models import Organisation
from api import keys
from api.models import ApiKey
from billing.models import Status, Subscription


def api_keys_of(*, organisation: Organisation) -> QuerySet[ApiKey]:
    """Every key the organisation made, revoked ones included, newest first."""
    return ApiKey.objects.filter(organisation=organisation).select_related("created_by")


def api_key_create_refusal(*, organisation: Organisation) -> str | None:
    """Why the organisation may not make a key now, or None. A locked account only chooses how to
    pay or which plan to keep; its keys stay listed and can be revoked, so a key that leaked can
    be stopped at once (a key reads the account through the lock, for up to two months)."""
    if Subscription.objects.filter(organisation=organisation, status=Status.LOCKED).exists():
        return _("The account is locked, so no new key can be made until the subscription is "
                 "renewed or another plan chosen; revoking a key still works.")
    return None


def api_key_get(*, organisation: Organisation, key_id: int) -> ApiKey:
    """A key of this organisation, or 404: another organisation's id never leaks."""
    return get_object_or_404(ApiKey, pk=key_id, organisation=organisation)


def api_key_authenticate(raw: str | None) -> ApiKey | None:
    """The live key `raw` is, with its organisation, in one indexed read; None for a malformed,
    unknown or revoked key, a wrong secret, or a deleted account's key."""
    parts = keys.split_key(raw or "")
    if parts is None:
        return None
    prefix, secret = parts
    try:
        # Only what a request uses: building a model from every column costs on each request.
        key = (ApiKey.objects.select_related("organisation")
               .only("organisation_id", "secret_hash", "last_used_at", "organisation__language")
               .get(prefix=prefix, revoked_at=None, organisation__closed_at=None))
    except ApiKey.DoesNotExist:
        return None
    return key if keys.secret_matches(secret, key.secret_hash) else None
