"""Reads about organisations and their people, always scoped to one organisation."""
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404

from accounts.models import LicenceType, Organisation, User


def org_user_get(*, organisation: Organisation, user_id: int) -> User:
    """A user of this organisation, or 404: another organisation's id never leaks."""
    return get_object_or_404(User, pk=user_id, organisation=organisation)


def org_users(*, organisation: Organisation):
    return User.objects.filter(organisation=organisation).order_by("-is_active", "email")


def org_user_counts(*, organisation: Organisation) -> dict[str, dict[str, int]]:
    """Active and deactivated users per licence type, in one query."""
    rows = (User.objects.filter(organisation=organisation).values("licence_type")
            .annotate(active=Count("pk", filter=Q(is_active=True)),
                      deactivated=Count("pk", filter=Q(is_active=False))))
    counts = {t: {"active": 0, "deactivated": 0} for t in LicenceType.values}
    for row in rows:
        counts[row["licence_type"]] = {"active": row["active"], "deactivated": row["deactivated"]}
    return counts
