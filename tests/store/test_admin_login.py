"""Staff open Django admin only with a second factor: their password and the current code of the
authenticator (TOTP) that create_support_user or set_staff_authenticator gave them."""
import base64
import re
from urllib.parse import parse_qs, urlparse

import pytest
from django.core.management import CommandError, call_command
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import AuditEvent, User
from accounts.services import staff_authenticator_set
from tests.accounts.factories import AdminFactory
from tests.store.helpers import admin_login

PASSWORD = "staff-password-2026"


@pytest.fixture
def staff(db):
    return User.objects.create_user("support@kanri.example", PASSWORD, is_staff=True,
                                    is_superuser=True)


@pytest.fixture(autouse=True)
def _english(client):
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"


def code(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, step=device.step, digits=device.digits):06d}"


def log_in(client, email, password, token=""):
    return client.post("/admin/login/?next=/admin/",
                       {"username": email, "password": password, "otp_token": token,
                        "next": "/admin/"})


def test_a_staff_member_without_an_authenticator_is_sent_to_the_login_that_asks_for_a_code(
        client, staff):
    client.force_login(staff)  # the password alone

    index = client.get("/admin/")
    login = client.get(index.url)

    assert index.status_code == 302 and index.url == "/admin/login/?next=/admin/"
    assert 'name="otp_token"' in login.content.decode()
    assert "Code from your authenticator app" in login.content.decode()


def test_a_verified_authenticator_opens_admin(client, staff):
    admin_login(client, staff)

    assert client.get("/admin/").status_code == 200


def test_password_and_the_authenticators_current_code_open_admin(client, staff):
    device = staff_authenticator_set(user=staff, reason="test")

    response = log_in(client, staff.email, PASSWORD, code(device))

    assert response.status_code == 302 and response.url == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_a_wrong_or_missing_code_keeps_admin_closed(client, staff):
    device = staff_authenticator_set(user=staff, reason="test")
    wrong = f"{(int(code(device)) + 1) % 1_000_000:06d}"

    missing = log_in(client, staff.email, PASSWORD)
    mistyped = log_in(client, staff.email, PASSWORD, wrong)

    assert "Enter the 6-digit code" in missing.content.decode()
    assert "That code is not valid" in mistyped.content.decode()
    assert client.get("/admin/").status_code == 302


def test_a_staff_member_with_no_authenticator_is_told_how_to_get_one(client, staff):
    page = log_in(client, staff.email, PASSWORD, "123456")

    assert "no authenticator yet" in page.content.decode()
    assert client.get("/admin/").status_code == 302


def test_create_support_user_prints_the_authenticator_that_opens_admin(client, db, capsys):
    call_command("create_support_user", "helpdesk@kanri.example")

    out = capsys.readouterr().out
    password = re.search(r"One-time password .*: (\S+)$", out, re.MULTILINE).group(1)
    uri = re.search(r"^otpauth://totp/\S+$", out, re.MULTILINE).group(0)
    query = parse_qs(urlparse(uri).query)
    secret = base64.b32decode(query["secret"][0] + "=" * (-len(query["secret"][0]) % 8))
    assert query["issuer"] == ["Kanri"] and "helpdesk%40kanri.example" in uri

    response = log_in(client, "helpdesk@kanri.example", password, f"{totp(secret):06d}")

    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200


def test_a_new_authenticator_replaces_the_lost_one(client, staff, capsys):
    lost = staff_authenticator_set(user=staff, reason="test")
    lost_code = code(lost)

    call_command("set_staff_authenticator", staff.email)

    assert "otpauth://totp/" in capsys.readouterr().out
    assert list(TOTPDevice.objects.filter(user=staff)) != [lost]
    assert TOTPDevice.objects.filter(user=staff).count() == 1
    log_in(client, staff.email, PASSWORD, lost_code)
    assert client.get("/admin/").status_code == 302
    event = AuditEvent.objects.filter(action="staff.authenticator_set").first()  # newest
    assert (event.actor_kind, event.target_id, event.before) == (
        "system", str(staff.pk), {"authenticators": 1})


def test_only_staff_get_an_authenticator(db):
    with pytest.raises(CommandError, match="not support staff"):
        call_command("set_staff_authenticator", AdminFactory().email)
