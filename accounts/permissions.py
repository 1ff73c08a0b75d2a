"""Who may open what: store screens are for the organisation's administrators only."""
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied


def org_admin_required(view):
    """Anonymous users go to the login page; members and staff without an org get 403."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not user.is_org_admin:
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapper
