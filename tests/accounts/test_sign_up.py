"""Sign-up creates an organisation and its first admin; bad input creates nothing."""
import threading

import pytest
from django.db import connection
from django.urls import reverse

from accounts import services
from accounts.errors import AccountsError
from accounts.models import AuditEvent, Organisation, Role, User
from tests.accounts.factories import UserFactory

GOOD = {"org_name": "Kanri Shoji", "email": "Owner@Example.test",
        "password": "correct-horse-battery-9", "currency": "JPY"}


def _counts():
    return Organisation.objects.count(), User.objects.count(), AuditEvent.objects.count()


@pytest.mark.django_db
def test_sign_up_creates_org_and_admin_and_logs_in(client):
    response = client.post(reverse("accounts:sign_up"), GOOD, follow=True)

    assert response.status_code == 200
    admin = User.objects.get()
    assert admin.email == "owner@example.test"
    assert admin.role == Role.ADMIN and admin.is_active
    assert admin.organisation.name == "Kanri Shoji"
    assert (admin.organisation.subscription.plan.code,
            admin.organisation.subscription.status) == ("free", "free")
    assert response.context["user"] == admin
    assert AuditEvent.objects.get().action == "organisation.created"
    assert "Free" in response.content.decode() or "無料" in response.content.decode()


@pytest.mark.django_db
def test_sign_up_refuses_a_taken_email_whatever_its_case(client):
    UserFactory(email="owner@example.test")
    before = _counts()

    response = client.post(reverse("accounts:sign_up"), GOOD, HTTP_ACCEPT_LANGUAGE="en")

    assert response.status_code == 400
    assert "An account with this email address already exists." in response.content.decode()
    assert _counts() == before


@pytest.mark.django_db
@pytest.mark.parametrize("password, message", [
    ("short1", "This password is too short."),
    ("password123", "This password is too common."),
    ("8234567890123", "This password is entirely numeric."),
])
def test_sign_up_refuses_a_weak_password(client, password, message):
    response = client.post(reverse("accounts:sign_up"), {**GOOD, "password": password},
                           HTTP_ACCEPT_LANGUAGE="en")

    assert response.status_code == 400
    assert message in response.content.decode()
    assert _counts() == (0, 0, 0)


@pytest.mark.django_db
@pytest.mark.parametrize("field, value", [
    ("org_name", "   "), ("email", "not-an-email"), ("currency", "EUR"), ("email", ""),
])
def test_sign_up_refuses_missing_or_bad_fields(client, field, value):
    response = client.post(reverse("accounts:sign_up"), {**GOOD, field: value},
                           HTTP_ACCEPT_LANGUAGE="en")

    assert response.status_code == 400
    assert 'role="alert"' in response.content.decode()
    assert _counts() == (0, 0, 0)


@pytest.mark.django_db
def test_sign_up_service_refuses_blank_name_without_writing():
    with pytest.raises(AccountsError):
        services.organisation_sign_up(org_name=" ", email="a@example.test",
                                      password=GOOD["password"])
    assert _counts() == (0, 0, 0)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_sign_ups_with_one_email_create_one_organisation(catalog):
    """Ten simultaneous sign-ups race past the form's check; the database keeps one."""
    results, barrier = [], threading.Barrier(10)

    def sign_up(n):
        barrier.wait()
        try:
            services.organisation_sign_up(org_name=f"Racer {n}", email="race@example.test",
                                          password=GOOD["password"])
            results.append("ok")
        except AccountsError as error:
            results.append(str(error))
        finally:
            connection.close()

    threads = [threading.Thread(target=sign_up, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results.count("ok") == 1
    assert len(results) == 10
    assert Organisation.objects.count() == 1
    assert User.objects.filter(email="race@example.test").count() == 1
