"""Licences (SPEC "Licences"): the bill counts purchased licences, and active users of a type never
exceed the licences of that type.

People change (accounts.services: add, invite, reactivate, change a user's licence type) under
the subscription's row lock, then the organisation's; licence counts change (a quote applied)
under the subscription's lock too. So a check here and the change it allows cannot interleave with
a quote that removes licences: whichever comes second sees the first. A quote made before users
were added is refused as stale when paid (nothing charged), or, if its charge already went
through, refunded rather than applied.
"""
from django.db.models import Count, Q
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from accounts.models import LicenceType, Organisation, User
from billing.errors import BillingError
from billing.models import Status, Subscription
from billing.pricing import Change


def active_users(organisation_id: int) -> dict[str, int]:
    """Active users per licence type, in one query."""
    counts = User.objects.filter(organisation_id=organisation_id).aggregate(
        **{kind: Count("pk", filter=Q(is_active=True, licence_type=kind))
           for kind in LicenceType.values})
    return {kind: counts[kind] or 0 for kind in LicenceType.values}


def purchased(subscription: Subscription) -> dict[str, int]:
    return {LicenceType.REGULAR: subscription.regular_licences,
            LicenceType.TEAM: subscription.team_licences}


def type_label(licence_type: str) -> str:
    return {LicenceType.REGULAR: _("regular"), LicenceType.TEAM: _("team")}[licence_type]


class NoFreeLicence(BillingError):
    """No licence of the type is free. `remedy` says what the admin can do: "add" licences
    (`missing` of them, through the add screen), "upgrade" from Free, or "buy" the plan on trial.
    """

    code = "no_free_licence"

    def __init__(self, message: str, *, licence_type: str, missing: int, remedy: str):
        super().__init__(message)
        self.licence_type, self.missing, self.remedy = licence_type, missing, remedy


def licence_require_free(*, subscription: Subscription, licence_type: str) -> None:
    """Refuse one more active user of `licence_type` unless a purchased licence is free. The
    caller holds the subscription's row lock and makes the change in the same transaction."""
    active = active_users(subscription.organisation_id)[licence_type]
    have = purchased(subscription)[licence_type]
    if active < have:
        return
    missing = active + 1 - have
    plan = subscription.plan
    if subscription.status == Status.FREE or plan.is_free:
        if licence_type == LicenceType.TEAM:
            message = _("Team users need a paid plan with team user licences. Upgrade the plan "
                        "to add team users.")
        else:
            message = _("The Free plan allows %(max)s users, and all of them are in use. "
                        "Upgrade to a paid plan to add more users.") % {"max": have}
        raise NoFreeLicence(message, licence_type=licence_type, missing=missing,
                            remedy="upgrade")
    if subscription.status == Status.TRIALING:
        raise NoFreeLicence(
            _("All %(have)s %(type)s licences of your %(plan)s trial are in use. Buy %(plan)s "
              "with more licences to add users.")
            % {"have": have, "type": type_label(licence_type), "plan": plan.display_name},
            licence_type=licence_type, missing=missing, remedy="buy")
    raise NoFreeLicence(ngettext(
        "All %(have)s %(type)s licences are in use. Add %(missing)s %(type)s licence to add "
        "this user.",
        "All %(have)s %(type)s licences are in use. Add %(missing)s %(type)s licences to add "
        "this user.", missing)
        % {"have": have, "type": type_label(licence_type), "missing": missing},
        licence_type=licence_type, missing=missing, remedy="add")


def licences_cover_active_users(*, organisation: Organisation, regular: int, team: int) -> str:
    """Why `regular` and `team` licences would leave active users without one, or ""."""
    active = active_users(organisation.pk)
    for licence_type, wanted in ((LicenceType.REGULAR, regular), (LicenceType.TEAM, team)):
        if wanted < active[licence_type]:
            return ngettext(
                "%(active)s %(type)s user is active now, more than the %(wanted)s licences of "
                "this change.",
                "%(active)s %(type)s users are active now, more than the %(wanted)s licences "
                "of this change.", active[licence_type]) % {
                "active": active[licence_type], "type": type_label(licence_type),
                "wanted": wanted}
    return ""


def licence_change(*, subscription: Subscription, regular: int, team: int, storage: int,
                   remove: bool):
    """The Change that adds (or removes) these numbers to what the subscription holds, on the
    same plan and cycle, for the one quote machinery (billing.services.quotes) to price and
    apply. Only a paid, active subscription buys or returns licences."""
    if subscription.status != Status.ACTIVE or subscription.plan.is_free:
        if subscription.status == Status.TRIALING:
            message = _("Licences are bought with the plan: buy %(plan)s to choose how many.") % {
                "plan": subscription.plan.display_name}
        elif subscription.status in {Status.PAST_DUE, Status.LOCKED}:
            message = _("Pay the open invoice first, then change licences.")
        else:
            message = _("The Free plan has no licences to buy: upgrade to a paid plan to add "
                        "users or add-ons.")
        raise BillingError(message, code="licences_need_paid_plan")
    if remove:
        for wanted, held, floor, label in (
                (regular, subscription.regular_licences, 1, _("regular user licences")),
                (team, subscription.team_licences, 0, _("team user licences")),
                (storage, subscription.storage_units, 0, _("storage units"))):
            if wanted > held - floor:
                raise BillingError(_("You can remove at most %(most)s %(item)s: you have "
                                     "%(held)s.") % {"most": max(0, held - floor),
                                                     "item": label, "held": held},
                                   code="quantity_out_of_range")
    sign = -1 if remove else 1
    return Change(subscription.plan, subscription.cycle,
                  subscription.regular_licences + sign * regular,
                  subscription.team_licences + sign * team,
                  subscription.storage_units + sign * storage)
