"""Sign-up, login, the home page, and the administrator's user screens."""
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _

from accounts import selectors, services
from accounts.errors import AccountsError
from accounts.forms import ActivityFilter, LoginForm, SignUpForm, UserAddForm
from accounts.permissions import org_admin_required, organisation_is_locked
from billing.services.licences import NoFreeLicence
from store.http import method_not_allowed, require_post


@login_required
def home(request):
    """Stands in for the CRM itself: the page behind which the profile menu's Manage lives.
    While the organisation is locked its admins get the choice screen, its members a page
    saying their administrator must act."""
    if organisation_is_locked(request.user):
        if request.user.is_org_admin:
            return redirect("billing:locked")
        return render(request, "accounts/locked.html")
    return render(request, "accounts/home.html")


def sign_up(request):
    if request.user.is_authenticated:
        return redirect("accounts:home")
    form = SignUpForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            admin = services.organisation_sign_up(**form.cleaned_data)
        except AccountsError as error:
            form.add_error(None, str(error))
        else:
            login(request, admin, backend="accounts.backends.UserBackend")
            messages.success(request, _("Welcome to Kanri. Your organisation is on the Free plan."))
            return redirect("accounts:home")
    return render(request, "accounts/sign_up.html", {"form": form},
                  status=400 if form.errors else 200)


class LoginView(auth_views.LoginView):
    form_class = LoginForm
    template_name = "accounts/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    """Logging out is a POST (the menu's button); the address opened says so."""

    def http_method_not_allowed(self, request, *args, **kwargs):
        return method_not_allowed(request)


def lockout(request, credentials, *args, **kwargs):
    """django-axes calls this when an email/address pair has too many failed logins."""
    minutes = round(settings.AXES_COOLOFF_TIME * 60)
    return render(request, "accounts/lockout.html", {"minutes": minutes}, status=429)


USERS_PAGE_SIZE = 25


def _users_context(request, **extra) -> dict:
    """The users page: everyone, the licence panel, and what a refusal needs (extra)."""
    from billing import selectors as billing_selectors

    organisation = request.user.organisation
    subscription = billing_selectors.subscription_with_prices(organisation=organisation)
    counts = selectors.org_user_counts(organisation=organisation)
    # The grouped count already says how many there are: no COUNT query for the pager.
    paginator = Paginator(selectors.org_users(organisation=organisation, count=sum(
        row["active"] + row["deactivated"] for row in counts.values())), USERS_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    return {"users": page.object_list, "page": page, "me": request.user.pk,
            "subscription": subscription,
            "panel": billing_selectors.licence_panel(subscription=subscription, counts=counts),
            **extra}


@org_admin_required
def user_list(request):
    return render(request, "accounts/users.html", _users_context(request))


@org_admin_required
def user_add(request):
    form = UserAddForm(request.POST if request.method == "POST" else None)
    shortage = None
    if request.method == "POST" and form.is_valid():
        try:
            user = services.user_add(organisation=request.user.organisation,
                                     acting_user=request.user, **form.cleaned_data)
        except AccountsError as error:
            form.add_error(None, str(error))
        except NoFreeLicence as error:
            form.add_error(None, str(error))
            shortage = error
        else:
            messages.success(request, _("%(email)s was added and invited by email.")
                             % {"email": user.email})
            return redirect("accounts:users")
    return render(request, "accounts/user_add.html", {"form": form, "shortage": shortage},
                  status=400 if form.errors else 200)


def _refused(request, error: Exception):
    """Back to the users page with the refusal, and the way out of a licence shortage."""
    return render(request, "accounts/users.html", _users_context(
        request, refusal=str(error),
        shortage=error if isinstance(error, NoFreeLicence) else None), status=400)


def _change_activation(request, user_id: int, service, done_message: str):
    user = selectors.org_user_get(organisation=request.user.organisation, user_id=user_id)
    try:
        service(user=user, acting_user=request.user)
    except (AccountsError, NoFreeLicence) as error:
        return _refused(request, error)
    messages.success(request, done_message % {"email": user.email})
    return redirect("accounts:users")


@org_admin_required
def user_deactivate(request, user_id: int):
    """A confirmation first: the licence stays on the bill, and where to remove it."""
    if request.method != "POST":
        person = selectors.org_user_get(organisation=request.user.organisation,
                                        user_id=user_id)
        return render(request, "accounts/user_deactivate.html", {"person": person})
    return _change_activation(
        request, user_id, services.user_deactivate,
        _("%(email)s was deactivated. Their licence is still billed until you reduce "
          "the number of licences."))


@org_admin_required
@require_post
def user_reactivate(request, user_id: int):
    return _change_activation(request, user_id, services.user_reactivate,
                              _("%(email)s can log in again."))


@org_admin_required
@require_post
def user_licence_type(request, user_id: int):
    """Move a user to the other licence type (a free licence of it needed if active)."""
    person = selectors.org_user_get(organisation=request.user.organisation, user_id=user_id)
    try:
        services.user_change_licence_type(user=person,
                                          licence_type=request.POST.get("licence_type", ""),
                                          acting_user=request.user)
    except (AccountsError, NoFreeLicence) as error:
        return _refused(request, error)
    messages.success(request, _("%(email)s now has a %(type)s licence.")
                     % {"email": person.email, "type": person.get_licence_type_display()})
    return redirect("accounts:users")


@org_admin_required
def activity(request):
    """The organisation's activity: who changed what, when, before → after, and why; support
    staff appear as "Kanri support" with their reason."""
    organisation = request.user.organisation
    form = ActivityFilter(request.GET or None)
    page = None
    if not form.is_bound or form.is_valid():
        data = form.cleaned_data if form.is_bound else {}
        page = selectors.activity_page(organisation=organisation, kind=data.get("kind") or "",
                                       start=data.get("start"), end=data.get("end"),
                                       number=request.GET.get("page"), size=25)
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "accounts/activity.html",
                  {"form": form, "page": page, "query": query.urlencode(),
                   "organisation": organisation}, status=200 if page is not None else 400)
