"""Logging staff in to Django admin in tests: the password step (force_login) and the second
factor, as a login with an authenticator code leaves the session."""
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice


def admin_login(client: Client, user) -> Client:
    """Log `user` in and mark the session verified by their authenticator (made if missing),
    as django_otp.login does after a valid code. Returns the client."""
    device = (TOTPDevice.objects.devices_for_user(user, confirmed=True).first()
              or TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True))
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client
