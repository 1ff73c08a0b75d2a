"""Manage › API keys (`/manage/api-keys/`): an organisation's keys for the CRM, made and revoked
by its administrators, even while the organisation is locked (no new key then). A new key's full
text is on the page that answers its creation, and nowhere else, ever. Thin: parse, call one
service or selector, render."""
from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from accounts.permissions import org_admin_required
from api import selectors, services
from api.errors import ApiKeyError
from api.forms import ApiKeyForm


@never_cache  # the answer to a creation holds the key: no cache may keep it
@org_admin_required(while_locked=True)  # to revoke a key; making one is refused while locked
def api_keys(request):
    organisation = request.user.organisation
    form = ApiKeyForm(request.POST if request.method == "POST" else None)
    created = full_key = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                created, full_key = services.api_key_create(
                    organisation=organisation, name=form.cleaned_data["name"],
                    acting_user=request.user)
                form = ApiKeyForm()
            except ApiKeyError as refused:
                form.add_error(None, str(refused))
                status = 400
        else:
            status = 400
    return render(request, "api/keys.html", {
        "form": form, "keys": selectors.api_keys_of(organisation=organisation),
        "created": created, "full_key": full_key,
        "create_refusal": selectors.api_key_create_refusal(organisation=organisation)},
        status=status)


@org_admin_required(while_locked=True)  # a locked account's keys still read it
@require_POST
def api_key_revoke(request, key_id: int):
    key = selectors.api_key_get(organisation=request.user.organisation, key_id=key_id)
    try:
        services.api_key_revoke(key=key, acting_user=request.user)
    except ApiKeyError as refused:
        messages.error(request, str(refused))
    else:
        messages.success(request, _("The key “%(name)s” is revoked: the CRM can no longer use "
                                    "it.") % {"name": key.name})
    return redirect("api_keys:list")
