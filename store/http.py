"""The portal's answer to a request made with the wrong method: the address of a form's action
opened by a link, a bookmark or a reload. Django's `require_POST` answers 405 with an empty
body, which a browser shows as a blank page; this one says what happened and where to go. The
API and the processor's webhook keep Django's (their callers read the status, not a page)."""
from functools import wraps

from django.shortcuts import render
from django.utils.log import log_response


def method_not_allowed(request):
    """405 with `Allow: POST` and a page explaining it."""
    response = render(request, "405.html", status=405)
    response["Allow"] = "POST"
    log_response("Method Not Allowed (%s): %s", request.method, request.path,
                 response=response, request=request)
    return response


def require_post(view):
    """POST only; any other method gets `method_not_allowed`."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.method != "POST":
            return method_not_allowed(request)
        return view(request, *args, **kwargs)

    return wrapper
