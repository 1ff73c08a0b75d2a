from django import forms
from django.utils.translation import gettext_lazy as _


class ApiKeyForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100, strip=True,
                           help_text=_("What uses the key, e.g. “CRM production”."))
