"""Who may open what: store screens are for the organisation's administrators only, and while
the organisation is locked (unpaid after its grace period) only the lock's choices are open."""
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db.models import F
from django.shortcuts import redirect
from django.urls import reverse
from django_htmx.http import HttpResponseClientRedirect

from accounts.models import Organisation, User

LOCKED = "locked"  # billing.models.Status.LOCKED, read here without importing billing


def organisation_is_locked(user: User) -> bool:
    """Whether the user's organisation is locked. Loads the organisation with its subscription's
    status in one joined query and keeps it on the user, so the page's own use of
    `user.organisation` costs nothing more: the check adds no query."""
    if user.organisation_id is None:
        return False
    organisation = user.organisation if User.organisation.is_cached(user) else None
    if organisation is None or not hasattr(organisation, "subscription_status"):
        organisation = (Organisation.objects
                        .annotate(subscription_status=F("subscription__status"))
                        .get(pk=user.organisation_id))
        user.organisation = organisation
    return organisation.subscription_status == LOCKED


def _to_lock_screen(request):
    if request.htmx:  # a partial swap would show the lock screen inside another page
        return HttpResponseClientRedirect(reverse("billing:locked"))
    return redirect("billing:locked")


def org_admin_required(view=None, *, while_locked: bool = False):
    """Anonymous users go to the login page; members and staff without an org get 403.

    A locked organisation's admins are sent to the lock screen (billing:locked) before the view
    runs, so nothing changes whatever they post, unless the view is one the lock's choices need
    (`@org_admin_required(while_locked=True)`)."""

    def decorate(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            user = request.user
            if not user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not user.is_org_admin:
                raise PermissionDenied
            if not while_locked and organisation_is_locked(user):
                return _to_lock_screen(request)
            return view(request, *args, **kwargs)

        return wrapper

    return decorate(view) if view is not None else decorate
