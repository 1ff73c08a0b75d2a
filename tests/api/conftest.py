"""The CRM as Kanri sees it: a client that sends one organisation's API key on every request."""
import datetime as dt
import json

import pytest
from django.test import Client

from api.services import api_key_create
from store import clock
from tests.accounts.factories import AdminFactory


def key_for(admin, name: str = "CRM production") -> str:
    """A new key of the admin's organisation, as the keys screen shows it once."""
    return api_key_create(organisation=admin.organisation, name=name, acting_user=admin)[1]


class Crm:
    def __init__(self, key: str | None, *, header: str = "bearer"):
        self.client = Client()
        self.headers = ({} if key is None else
                        {"X-Api-Key": key} if header == "x-api-key" else
                        {"Authorization": f"Bearer {key}"})

    def get(self, path: str, **headers):
        return self.client.get(f"/api/v1/{path}", headers={**self.headers, **headers})

    def post(self, path: str, body, **headers):
        data = body if isinstance(body, (str, bytes)) else json.dumps(body)
        return self.client.post(f"/api/v1/{path}", data, content_type="application/json",
                                headers={**self.headers, **headers})

    def entitlements(self) -> dict:
        response = self.get("entitlements")
        assert response.status_code == 200, response.content
        return response.json()

    def report(self, *, records: int, storage_mb: int = 0,
               at: dt.datetime | None = None) -> dict:
        response = self.post("usage", {"records": records, "storage_mb": storage_mb,
                                       "reported_at": (at or clock.now()).isoformat()})
        assert response.status_code == 200, response.content
        return response.json()

    def authorize(self, action: str, resource: str = "records", amount: int = 1) -> dict:
        response = self.post("authorize", {"action": action, "resource": resource,
                                           "amount": amount})
        assert response.status_code == 200, response.content
        return response.json()


@pytest.fixture
def admin(db):
    return AdminFactory()


@pytest.fixture
def crm(admin):
    return Crm(key_for(admin))
