import pytest
from django.utils import translation

from tests.accounts.factories import AdminFactory
from tests.billing.faults import AnswerDroppingProxy


@pytest.fixture(autouse=True)
def _english():
    """Service messages are matched in English here; the Japanese ones are tested per screen."""
    with translation.override("en"):
        yield


@pytest.fixture
def admin(db):
    """An organisation's administrator, on Free (files that need another start override it)."""
    return AdminFactory()


@pytest.fixture
def admin_client(client, admin):
    client.force_login(admin)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


@pytest.fixture
def proxy(payment_sandbox):
    """A loopback proxy in front of the sandbox that can drop the processor's answers."""
    proxy = AnswerDroppingProxy(payment_sandbox)
    yield proxy
    proxy.close()
