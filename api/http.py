"""Every answer under /api/v1/, whoever makes it (an endpoint, ninja's routing, the document's
pages): an error is JSON `{"detail", "errors"}` (a path the API does not have is 404, a method a
path does not take 405 with `Allow`), and no cache keeps an answer or gives it to another key."""
import json
from functools import wraps

from django.http import Http404, HttpResponse, HttpResponseNotAllowed
from django.urls import URLPattern, re_path
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt

# What an answer depends on besides its path: the key (its organisation, its language) and, when
# no key is known yet, the caller's language.
VARY = ("Authorization", "X-Api-Key", "Accept-Language")


def error_response(status: int, detail: str, errors: list | None = None) -> HttpResponse:
    """The one shape of the API's errors."""
    return HttpResponse(
        json.dumps({"detail": detail, "errors": errors or []}, ensure_ascii=False),
        status=status, content_type="application/json; charset=utf-8")


def not_found(request, *args, **kwargs) -> HttpResponse:
    return error_response(404, _("The API has no such address: its operations are listed at "
                                 "/api/v1/docs."))


def method_not_allowed(allow: str) -> HttpResponse:
    response = error_response(405, _("This address takes only %(methods)s.") % {
        "methods": allow})
    response["Allow"] = allow
    return response


def _kept_to_the_contract(view):
    # Exempt from the CSRF check: no answer here reads a cookie (the key decides), and the
    # check's refusal would be an HTML page.
    @csrf_exempt
    @wraps(view)
    def answer(request, *args, **kwargs):
        try:
            response = view(request, *args, **kwargs)
        except Http404:  # ninja's root path raises it
            response = not_found(request)
        if isinstance(response, HttpResponseNotAllowed):  # ninja's and require_safe's: HTML
            response = method_not_allowed(response["Allow"])
        response["Cache-Control"] = "no-store"
        patch_vary_headers(response, VARY)
        return response

    return answer


def api_urls(urls: tuple) -> tuple:
    """`NinjaAPI.urls` with each view kept to the contract, and a JSON 404 for any other path."""
    patterns, app_name, namespace = urls
    kept = [URLPattern(pattern.pattern, _kept_to_the_contract(pattern.callback),
                       pattern.default_args, pattern.name) for pattern in patterns]
    return [*kept, re_path(r"", _kept_to_the_contract(not_found))], app_name, namespace
