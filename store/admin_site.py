"""The admin site staff log in to: password and a code from their authenticator app (TOTP)."""
from django import forms
from django.utils.translation import gettext_lazy as _
from django_otp.admin import OTPAdminAuthenticationForm, OTPAdminSite
from django_otp.plugins.otp_totp.models import TOTPDevice


class StaffLoginForm(OTPAdminAuthenticationForm):
    """Email, password and the authenticator's current code, on one page. A staff member has one
    authenticator (accounts.services.staff_authenticator_set replaces the old one), so the form
    picks it instead of asking which device to use."""

    otp_token = forms.CharField(
        label=_("Code from your authenticator app"), required=False,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}))
    otp_error_messages = {
        **OTPAdminAuthenticationForm.otp_error_messages,
        "token_required": _("Enter the 6-digit code your authenticator app shows for Kanri."),
        "invalid_token": _("That code is not valid (or was used already). Enter the code your "
                           "authenticator app shows now."),
        "device_required": _("This account has no authenticator yet. An operator gives it one "
                             "with manage.py set_staff_authenticator (see the README)."),
    }

    def clean_otp(self, user):
        if user is not None and not self.cleaned_data.get("otp_device"):
            device = TOTPDevice.objects.devices_for_user(user, confirmed=True).first()
            if device is None:
                raise forms.ValidationError(self.otp_error_messages["device_required"],
                                            code="device_required")
            self.cleaned_data["otp_device"] = device.persistent_id
        super().clean_otp(user)


class StaffAdminSite(OTPAdminSite):
    """Django admin that opens only to staff verified by their authenticator in this session
    (django-otp's OTPMiddleware marks the session at login)."""

    login_form = StaffLoginForm
    login_template = "admin/staff_login.html"

    def __init__(self, name="admin"):
        # OTPAdminSite names itself "otpadmin"; Kanri's URLs and templates use "admin:".
        super().__init__(name)
