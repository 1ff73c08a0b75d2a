"""Forms: parse what the admin asks for; the services decide whether it may be done."""
from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from store.models import BillingCycle


class ConfigureForm(forms.Form):
    cycle = forms.ChoiceField(label=_("Billing cycle"), choices=BillingCycle.choices,
                              widget=forms.RadioSelect)
    regular_licences = forms.IntegerField(label=_("Regular user licences"), min_value=1,
                                          max_value=settings.KANRI_MAX_QUANTITY)
    team_licences = forms.IntegerField(label=_("Team user licences"), min_value=0,
                                       max_value=settings.KANRI_MAX_QUANTITY)
    storage_units = forms.IntegerField(label=_("Extra storage (GB)"), min_value=0,
                                       max_value=settings.KANRI_MAX_QUANTITY)


class DeleteAccountForm(forms.Form):
    organisation_name = forms.CharField(label=_("Type your organisation's name to confirm"),
                                        max_length=200)

    def __init__(self, *args, organisation, **kwargs):
        super().__init__(*args, **kwargs)
        self.organisation = organisation

    def clean_organisation_name(self):
        name = self.cleaned_data["organisation_name"].strip()
        if name != self.organisation.name:
            raise forms.ValidationError(_("That is not your organisation's name."))
        return name


class PaymentHistoryFilter(forms.Form):
    """決済の履歴's filter: a date range on the organisation's clock and an outcome."""

    STATUSES = [("", _("All")), ("paid", _("Paid")), ("credit", _("Paid by account credit")),
                ("failed", _("Failed")), ("refunded", _("Refunded")),
                ("pending", _("Being confirmed"))]

    start = forms.DateField(label=_("From"), required=False,
                            widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label=_("To"), required=False,
                          widget=forms.DateInput(attrs={"type": "date"}))
    status = forms.ChoiceField(label=_("Status"), choices=STATUSES, required=False)

    def clean(self):
        data = super().clean()
        if data.get("start") and data.get("end") and data["start"] > data["end"]:
            raise forms.ValidationError(_("The start date is after the end date."))
        return data


class LicenceChangeForm(forms.Form):
    """ユーザー/アドオンのアップグレード・ダウングレード: how many to add (or remove), not the
    new totals. The bounds of a removal are the service's to check and explain."""

    regular = forms.IntegerField(label=_("Regular user licences"), min_value=0,
                                 max_value=settings.KANRI_MAX_QUANTITY, initial=0,
                                 required=False)
    team = forms.IntegerField(label=_("Team user licences"), min_value=0,
                              max_value=settings.KANRI_MAX_QUANTITY, initial=0, required=False)
    storage = forms.IntegerField(label=_("Extra storage (GB)"), min_value=0,
                                 max_value=settings.KANRI_MAX_QUANTITY, initial=0,
                                 required=False)

    def clean(self):
        data = super().clean()
        for name in ("regular", "team", "storage"):  # a one-click form sends only its own
            if name in data and data[name] is None:
                data[name] = 0
        if not self.errors and not any(data.get(name) for name in ("regular", "team",
                                                                    "storage")):
            raise forms.ValidationError(_("Enter how many to change: at least one number above "
                                          "zero."))
        return data
