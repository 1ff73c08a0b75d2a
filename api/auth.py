"""The API's two ways to send a key (`Authorization: Bearer <key>` or `X-Api-Key: <key>`): the
key decides the organisation, so no request can name another one."""
from ninja.security import APIKeyHeader, HttpBearer

from api.models import ApiKey
from api.selectors import api_key_authenticate
from api.services import api_key_mark_used
from store import observability


def _authenticated(raw: str | None) -> ApiKey | None:
    key = api_key_authenticate(raw)
    if key is not None:
        api_key_mark_used(key)
        observability.organisation_id.set(key.organisation_id)  # on the request's log line
    return key


class BearerKey(HttpBearer):
    def __call__(self, request):
        # ninja's own parsing logs an Authorization header of another scheme in debug, and it
        # may be a key sent as "Token …": never log one.
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return self.authenticate(request, token) if scheme.lower() == "bearer" else None

    def authenticate(self, request, token):
        return _authenticated(token)


class HeaderKey(APIKeyHeader):
    param_name = "X-Api-Key"

    def authenticate(self, request, key):
        return _authenticated(key)
