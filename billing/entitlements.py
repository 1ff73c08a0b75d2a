"""What an organisation may do in the CRM: plan, status, limits and usage, and the one
rule that answers "may it create / update / upload?". Separate from billing's invoices (STYLE 7):
it reads the plan's limits, the purchased quantities and the blocking state, never an invoice.

Rules (SPEC, the seed's downgrade rule), for the actions that apply to each resource (ACTIONS_ON):
- `create` a record is refused when the records in use reach the plan's limit (usage >= limit);
  `update` is allowed unless the organisation is locked;
- an `upload` (or `create`) to storage is refused when storage used + its size > included +
  purchased storage;
- a locked organisation may only read.
Every refusal says why in the organisation's language, with the figures.
"""
from dataclasses import dataclass, field

from django.utils import translation
from django.utils.translation import gettext as _

from accounts.models import LicenceType, Organisation
from billing.models import Status, Subscription
from store.models import AddOn
from store.money import format_number

# The actions that apply to each resource, the one list: the API refuses any other pair (400) and
# its document states these. On storage, `create` is an upload by another name (a new file).
ACTIONS_ON = {"records": ("create", "update"), "storage": ("create", "update", "upload")}
RESOURCES = tuple(ACTIONS_ON)
ACTIONS = tuple(dict.fromkeys(action for actions in ACTIONS_ON.values() for action in actions))


@dataclass(frozen=True)
class Limits:
    records: int | None  # None: no limit
    storage_mb: int  # included with the plan and its licences, plus purchased units
    users: dict[str, int]  # licences per type
    features: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Usage:
    records: int
    storage_mb: int
    users: dict[str, int]  # active users per type


@dataclass(frozen=True)
class Entitlements:
    organisation_id: int
    language: str
    plan: str  # code
    plan_name: str  # in the organisation's language
    status: str
    limits: Limits
    usage: Usage

    @property
    def over_record_limit(self) -> bool:
        return self.limits.records is not None and self.usage.records > self.limits.records

    @property
    def over_storage(self) -> bool:
        return self.usage.storage_mb > self.limits.storage_mb


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


def storage_limit_mb(subscription: Subscription) -> int:
    """Included storage (per organisation, per regular licence) plus purchased units. Reads the
    storage add-on only when units were bought (through the price they were bought at)."""
    plan = subscription.plan
    included = plan.storage_per_org_mb + plan.storage_per_licence_mb * \
        subscription.regular_licences
    if not subscription.storage_units:
        return included
    if subscription.storage_price_id:
        per_unit = subscription.storage_price.addon.storage_mb_per_unit
    else:
        per_unit = AddOn.objects.get(code="storage").storage_mb_per_unit
    return included + per_unit * subscription.storage_units


def entitlements_for(*, organisation: Organisation, active: dict[str, int] | None = None
                     ) -> Entitlements:
    """The organisation's entitlements; `active` users per type when the caller has them."""
    from billing.services.licences import active_users

    subscription = (Subscription.objects.select_related("plan", "organisation")
                    .get(organisation_id=organisation.pk))
    return entitlements_from(subscription=subscription,
                             active=active if active is not None
                             else active_users(organisation.pk))


def entitlements_from(*, subscription: Subscription, active: dict[str, int]) -> Entitlements:
    """The same, from a subscription loaded with its plan and organisation (no query)."""
    organisation, plan = subscription.organisation, subscription.plan
    with translation.override(organisation.language):
        plan_name = plan.display_name
    return Entitlements(
        organisation_id=organisation.pk, language=organisation.language, plan=plan.code,
        plan_name=plan_name, status=subscription.status,
        limits=Limits(records=plan.max_records, storage_mb=storage_limit_mb(subscription),
                      users={LicenceType.REGULAR: subscription.regular_licences,
                             LicenceType.TEAM: subscription.team_licences},
                      features=list(plan.features or [])),
        usage=Usage(records=organisation.record_count, storage_mb=organisation.storage_used_mb,
                    users=active))


def authorize(entitlements: Entitlements, *, action: str, resource: str,
              amount: int = 1) -> Decision:
    """May the organisation do this? A refusal's reason is in its language, with figures.
    `amount` is how many records to create, or the upload's size in MB. The action must apply to
    the resource (ACTIONS_ON): callers check what they were sent first."""
    if action not in ACTIONS_ON.get(resource, ()):
        raise ValueError(f"{action!r} does not apply to {resource!r}")
    with translation.override(entitlements.language):
        return _decide(entitlements, action, resource, amount)


def _decide(e: Entitlements, action: str, resource: str, amount: int) -> Decision:
    if e.status == Status.LOCKED:
        return Decision(False, _("The account is locked because a payment is overdue: only "
                                 "reading is allowed until an administrator renews or changes "
                                 "the plan."))
    if action == "update":
        return Decision(True)
    if resource == "records":  # create
        limit = e.limits.records
        if limit is not None and e.usage.records + max(amount, 1) > limit:
            excess = e.usage.records + max(amount, 1) - limit
            return Decision(False, _(
                "%(used)s records; %(plan)s allows %(limit)s: delete %(delete)s or upgrade to "
                "create records.") % {"used": format_number(e.usage.records, e.language),
                                      "plan": e.plan_name,
                                      "limit": format_number(limit, e.language),
                                      "delete": format_number(excess, e.language)})
        return Decision(True)
    if e.usage.storage_mb + amount > e.limits.storage_mb:  # storage: upload or create
        return Decision(False, _(
            "%(used)s MB of %(limit)s MB used: this upload of %(size)s MB does not fit. "
            "Free space or add storage.") % {
            "used": format_number(e.usage.storage_mb, e.language),
            "limit": format_number(e.limits.storage_mb, e.language),
            "size": format_number(amount, e.language)})
    return Decision(True)
