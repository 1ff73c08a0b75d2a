"""Login by email, deactivated users refused, throttling, logout and password reset."""
import re

import pytest
from django.core import mail
from django.urls import reverse

from accounts.models import User
from tests.accounts.factories import PASSWORD, AdminFactory, UserFactory

LOGIN = "accounts:login"


def _login(client, email, password):
    return client.post(reverse(LOGIN), {"username": email, "password": password},
                       HTTP_ACCEPT_LANGUAGE="en")


@pytest.mark.django_db
def test_login_by_email_in_any_case(client):
    user = UserFactory(email="hana@example.test")

    response = _login(client, "HANA@example.test", PASSWORD)

    assert response.status_code == 302
    assert response.url == reverse("accounts:home")
    assert client.get(reverse("accounts:home")).context["user"] == user


@pytest.mark.django_db
def test_wrong_password_is_refused_without_saying_which_part(client):
    UserFactory(email="hana@example.test")

    response = _login(client, "hana@example.test", "wrong-password")

    assert response.status_code == 200
    assert "The email address or password is wrong." in response.content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_deactivated_user_cannot_log_in_and_is_told_why(client):
    UserFactory(email="gone@example.test", is_active=False)

    response = _login(client, "gone@example.test", PASSWORD)

    assert "This user has been deactivated" in response.content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_deactivated_user_with_a_wrong_password_learns_nothing(client):
    UserFactory(email="gone@example.test", is_active=False)

    response = _login(client, "gone@example.test", "wrong-password")

    assert "deactivated" not in response.content.decode()


@pytest.mark.django_db
def test_a_user_deactivated_mid_session_is_logged_out(client):
    user = UserFactory()
    client.force_login(user)
    User.objects.filter(pk=user.pk).update(is_active=False)

    response = client.get(reverse("accounts:home"))

    assert response.status_code == 302
    assert response.url.startswith(reverse(LOGIN))


@pytest.mark.django_db
def test_repeated_wrong_passwords_lock_the_login_even_for_the_right_one(client, settings):
    UserFactory(email="hana@example.test")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _login(client, "hana@example.test", "guess").status_code == 200

    locked = _login(client, "hana@example.test", "guess")
    after = _login(client, "hana@example.test", PASSWORD)

    assert locked.status_code == 429
    assert "blocked for 15 minutes" in locked.content.decode()
    assert after.status_code == 429
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_another_account_is_not_locked_by_guesses_at_one(client, settings):
    UserFactory(email="hana@example.test")
    other = UserFactory(email="ken@example.test")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login(client, "hana@example.test", "guess")

    response = _login(client, "ken@example.test", PASSWORD)

    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(other.pk)


@pytest.mark.django_db
def test_logout_is_a_post_and_ends_the_session(client):
    client.force_login(UserFactory())

    assert client.get(reverse("accounts:logout")).status_code == 405
    response = client.post(reverse("accounts:logout"))

    assert response.status_code == 302
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_password_reset_emails_a_link_that_sets_a_new_password(client):
    user = AdminFactory(email="hana@example.test")

    client.post(reverse("accounts:password_reset"), {"email": "hana@example.test"})
    link = re.search(r"https?://[^/]+(/reset/\S+/)", mail.outbox[0].body).group(1)
    form_page = client.get(link, follow=True)
    client.post(form_page.redirect_chain[-1][0],
                {"new_password1": "a-brand-new-secret-7", "new_password2": "a-brand-new-secret-7"})

    user.refresh_from_db()
    assert user.check_password("a-brand-new-secret-7")
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_password_reset_for_an_unknown_email_sends_nothing_and_says_the_same(client):
    response = client.post(reverse("accounts:password_reset"), {"email": "nobody@example.test"})

    assert response.status_code == 302
    assert response.url == reverse("accounts:password_reset_done")
    assert mail.outbox == []
