"""Entitlements from Django's cache (Redis in production), and the one place that forgets them.

`entitlements_cached` answers from the cache, or computes with `entitlements_for` and keeps the
answer under a key per organisation. Every change that alters an answer forgets it: saves of a
Subscription, an Organisation or a User (signals, connected in billing.apps), and the writes that
send no signal (the lifecycle sweeps' batch UPDATE, the usage API's conditional UPDATE) call
`entitlements_forget` themselves. `KANRI_ENTITLEMENTS_CACHE_SECONDS` bounds what nothing tells us
about (a plan's limits edited in admin).

Forgetting writes a short-lived marker instead of deleting the key, and answers are stored with
`add` (set only if absent): a request that read the rows just before a change commits cannot put
its stale answer back after the change forgot it, because the marker is still there. While it
lives, answers are computed (a few queries) and not kept.
"""
import logging
import zlib
from collections.abc import Iterable
from dataclasses import fields

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models.signals import post_delete, post_save

from accounts.models import Organisation, User
from billing.entitlements import Entitlements, Limits, Usage, entitlements_for
from billing.models import Subscription

logger = logging.getLogger(__name__)

FORGOTTEN = "forgotten"
# Longer than any transaction that forgets before it commits (a sweep's batch takes well under a
# second); signals forget again at commit.
FORGOTTEN_SECONDS = 30
# What on a User changes an organisation's entitlements (active users per licence type).
USER_FIELDS = {"is_active", "licence_type", "organisation"}


# Answers are pickled: a deploy that changes their shape must not read the old ones.
SHAPE = zlib.crc32(repr([[field.name for field in fields(kind)]
                         for kind in (Entitlements, Limits, Usage)]).encode())


def cache_key(organisation_id: int) -> str:
    return f"entitlements:{SHAPE:x}:{organisation_id}"


def entitlements_cached(*, organisation: Organisation) -> Entitlements:
    """The organisation's entitlements: a cache hit costs no query."""
    key = cache_key(organisation.pk)
    kept = cache.get(key)
    if isinstance(kept, Entitlements):
        return kept
    entitlements = entitlements_for(organisation=organisation)
    if kept is None:
        cache.add(key, entitlements, settings.KANRI_ENTITLEMENTS_CACHE_SECONDS)
    return entitlements


def entitlements_forget(organisation_ids: Iterable[int]) -> None:
    """Forget these organisations' entitlements now: one cache call, whatever their number.
    A cache that cannot be reached must not fail the change that calls this: the answers it
    may still hold expire with KANRI_ENTITLEMENTS_CACHE_SECONDS."""
    keys = {cache_key(organisation_id): FORGOTTEN for organisation_id in set(organisation_ids)}
    if not keys:
        return
    try:
        cache.set_many(keys, FORGOTTEN_SECONDS)
    except Exception:  # noqa: BLE001 (any cache backend's error)
        logger.warning("could not forget the entitlements of %d organisations", len(keys),
                       exc_info=True)


def entitlements_forget_on_commit(organisation_ids: Iterable[int]) -> None:
    """Forget now (requests inside the change see it) and again when the change commits."""
    ids = list(organisation_ids)
    entitlements_forget(ids)
    if connection.in_atomic_block:
        transaction.on_commit(lambda: entitlements_forget(ids))


def _subscription_saved(sender, instance: Subscription, **kwargs) -> None:
    entitlements_forget_on_commit([instance.organisation_id])


def _organisation_saved(sender, instance: Organisation, **kwargs) -> None:
    entitlements_forget_on_commit([instance.pk])


def _user_changed(sender, instance: User, update_fields=None, **kwargs) -> None:
    if instance.organisation_id is None:
        return
    if update_fields is not None and not USER_FIELDS & set(update_fields):
        return  # e.g. last_login, a password: nothing the entitlements count
    entitlements_forget_on_commit([instance.organisation_id])


def connect_signals() -> None:
    post_save.connect(_subscription_saved, sender=Subscription,
                      dispatch_uid="entitlements_subscription_saved")
    post_save.connect(_organisation_saved, sender=Organisation,
                      dispatch_uid="entitlements_organisation_saved")
    post_save.connect(_user_changed, sender=User, dispatch_uid="entitlements_user_saved")
    post_delete.connect(_user_changed, sender=User, dispatch_uid="entitlements_user_deleted")
