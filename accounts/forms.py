"""Forms: parse and validate input; the services do the work."""
from django import forms
from django.conf import settings
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm
from django.utils.translation import gettext_lazy as _

from accounts.models import LicenceType, Role, User


class SignUpForm(forms.Form):
    org_name = forms.CharField(label=_("Organisation name"), max_length=200, strip=True)
    email = forms.EmailField(label=_("Email address"), max_length=254)
    password = forms.CharField(label=_("Password"), strip=False,
                               widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
                               help_text=password_validation.password_validators_help_text_html())
    currency = forms.ChoiceField(label=_("Billing currency"), choices=settings.CURRENCY_CHOICES,
                                 initial="JPY")

    def clean_email(self):
        email = self.cleaned_data["email"].strip().lower()
        if User.objects.filter(email__iexact=email).exists():
            raise forms.ValidationError(_("An account with this email address already exists."))
        return email

    def clean(self):
        cleaned = super().clean()
        password = cleaned.get("password")
        if password:
            try:
                password_validation.validate_password(
                    password, User(email=cleaned.get("email") or ""))
            except forms.ValidationError as error:
                self.add_error("password", error)
        return cleaned


class LoginForm(AuthenticationForm):
    """Email and password; a deactivated user is told so (only after the right password)."""

    username = forms.EmailField(label=_("Email address"),
                                widget=forms.EmailInput(attrs={"autofocus": True,
                                                               "autocomplete": "email"}))
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": _("The email address or password is wrong."),
        "inactive": _("This user has been deactivated. Ask your organisation's administrator."),
    }

    def clean(self):
        try:
            return super().clean()
        except forms.ValidationError as wrong:
            email = (self.cleaned_data.get("username") or "").lower()
            password = self.cleaned_data.get("password") or ""
            user = User.objects.filter(email__iexact=email, is_active=False).first()
            if user is not None and user.check_password(password):
                raise forms.ValidationError(self.error_messages["inactive"],
                                            code="inactive") from wrong
            raise


class UserAddForm(forms.Form):
    email = forms.EmailField(label=_("Email address"), max_length=254)
    name = forms.CharField(label=_("Name"), max_length=150, required=False)
    role = forms.ChoiceField(label=_("Role"), choices=Role.choices, initial=Role.MEMBER)
    licence_type = forms.ChoiceField(label=_("Licence type"), choices=LicenceType.choices,
                                     initial=LicenceType.REGULAR)

    def clean_email(self):
        email = self.cleaned_data["email"].strip().lower()
        if User.objects.filter(email__iexact=email).exists():
            raise forms.ValidationError(_("An account with this email address already exists."))
        return email


class ActivityFilter(forms.Form):
    """The activity page's filter: what kind of change, and a date range."""

    KINDS = [("", _("All")), ("subscription", _("Plan and licences")), ("user", _("Users")),
             ("card", _("Cards")), ("payment", _("Payments")), ("invoice", _("Invoices")),
             ("api_key", _("API keys")), ("organisation", _("Organisation")),
             ("support", _("Kanri support"))]

    kind = forms.ChoiceField(label=_("Kind"), choices=KINDS, required=False)
    start = forms.DateField(label=_("From"), required=False,
                            widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label=_("To"), required=False,
                          widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        data = super().clean()
        if data.get("start") and data.get("end") and data["start"] > data["end"]:
            raise forms.ValidationError(_("The start date is after the end date."))
        return data
