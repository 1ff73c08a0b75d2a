"""The licence ledger's one writer: a row per purchased quantity that changed, written in the
transaction that changes it (billing.models.ledger).

Quantities are passed as dicts keyed by the subscription's field names (`regular_licences`,
`team_licences`, `storage_units`, as `subscription_snapshot` and the sweeps' rows hold them); a
key missing from `before` counts as 0 (an opening balance). Items that did not change get no row,
so an item never bought has no rows and sums to 0.
"""
import datetime as dt
from collections.abc import Iterable
from typing import NamedTuple

from accounts.audit import actor_kind_of
from accounts.models import User
from billing.models import Invoice, LicenceLedgerEntry, Quote, Subscription
from billing.models.ledger import ITEM_FIELDS
from store import clock

QUANTITY_FIELDS: tuple[str, ...] = tuple(ITEM_FIELDS.values())


def quantities(subscription: Subscription) -> dict[str, int]:
    return {field: getattr(subscription, field) for field in QUANTITY_FIELDS}


class LedgerChange(NamedTuple):
    """One subscription's quantities before and after a change, for `ledger_record_many`."""

    subscription_id: int
    organisation_id: int
    before: dict
    after: dict


def _entries(change: LedgerChange, *, actor: User | None, quote: Quote | None,
             invoice: Invoice | None, reason: str, now: dt.datetime) -> list[LicenceLedgerEntry]:
    entries = []
    for item, field in ITEM_FIELDS.items():
        delta = change.after[field] - change.before.get(field, 0)
        if delta:
            entries.append(LicenceLedgerEntry(
                organisation_id=change.organisation_id, subscription_id=change.subscription_id,
                item=item, delta=delta, quantity_after=change.after[field], actor=actor,
                actor_kind=actor_kind_of(actor), quote=quote, invoice=invoice, reason=reason,
                created_at=now))
    return entries


def ledger_record(subscription: Subscription, before: dict, after: dict, *,
                  actor: User | None, quote: Quote | None = None, invoice: Invoice | None = None,
                  reason: str) -> list[LicenceLedgerEntry]:
    """Record what changed between `before` and `after` (one INSERT, none when nothing did).
    Call inside the transaction that saves the new quantities, holding the subscription's lock."""
    change = LedgerChange(subscription.pk, subscription.organisation_id, before, after)
    entries = _entries(change, actor=actor, quote=quote, invoice=invoice, reason=reason,
                       now=clock.now())
    return LicenceLedgerEntry.objects.bulk_create(entries)


def ledger_record_many(changes: Iterable[LedgerChange], *, reason: str,
                       now: dt.datetime) -> int:
    """The sweeps' variant: the system changed many subscriptions' quantities at once (a batch
    moved to Free). One INSERT for all their rows, none when nothing changed; returns the rows."""
    entries = [entry for change in changes
               for entry in _entries(change, actor=None, quote=None, invoice=None,
                                     reason=reason, now=now)]
    return len(LicenceLedgerEntry.objects.bulk_create(entries))
