"""A form's address opened as a page (a link, a bookmark, a reload) answers 405 with a page that
says why and where to go, in the reader's language; the form itself still works by POST."""
import pytest
from django.test import Client
from django.urls import reverse

from billing.models import Subscription
from tests.accounts.factories import AdminFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("language, says", [
    ("en", "This address only takes a submitted form"),
    ("ja", "このアドレスは「決済する」や「サブスクリプションの更新」などのフォームの送信だけを"),
])
def test_opening_a_form_address_says_what_to_do_instead(language, says):
    admin = AdminFactory()
    client = Client(HTTP_ACCEPT_LANGUAGE=language)
    client.force_login(admin)
    for name in ("billing:renew", "billing:switch_to_free", "accounts:logout"):
        response = client.get(reverse(name))
        assert response.status_code == 405
        assert response["Allow"] == "POST"
        assert says in response.content.decode()
        assert f'href="{reverse("billing:details")}"' in response.content.decode()


def test_the_form_address_still_takes_its_form():
    admin = AdminFactory()
    client = Client()
    client.force_login(admin)
    before = Subscription.objects.get(organisation=admin.organisation).status
    response = client.post(reverse("billing:renew"))
    # Nothing to renew on Free: refused as the page says, not as a wrong method.
    assert response.status_code != 405
    assert Subscription.objects.get(organisation=admin.organisation).status == before
