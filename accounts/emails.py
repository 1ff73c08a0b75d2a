"""Emails to people: the invitation with a link to choose a password."""
from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.utils.translation import override

from accounts.models import User


def invitation_send(*, user_id: int, language: str = "ja") -> bool:
    """Email an invited user a set-password link; skipped once they have a password or left."""
    user = User.objects.select_related("organisation").filter(pk=user_id).first()
    if user is None or not user.is_active or user.has_usable_password():
        return False
    path = reverse("accounts:password_reset_confirm", kwargs={
        "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
        "token": default_token_generator.make_token(user),
    })
    context = {"user": user, "organisation": user.organisation,
               "link": settings.KANRI_BASE_URL.rstrip("/") + path}
    with override(language):
        subject = render_to_string("accounts/email/invitation_subject.txt", context).strip()
        body = render_to_string("accounts/email/invitation.txt", context)
    send_mail(subject=subject, message=body, from_email=None, recipient_list=[user.email])
    return True
