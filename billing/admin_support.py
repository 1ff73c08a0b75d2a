"""Support actions in Django admin: one page per action, reached from the change page of the row
it acts on. The page asks for the values and a reason, then shows what will change; only the
confirmation applies it, through billing.services.support. Each action needs its own permission
(the "support" group holds them); without it the page answers 403.

A confirmation applies once, to what was reviewed: the review issues a signed one-time
confirmation bound to the action, the row, the staff member and every value shown (the amount,
the quote's id); a confirmation without it, for another row, or with a changed value is
refused (400), and a second use of it too (409; used ones are remembered in the cache, whose
`add` is atomic, for longer than one stays valid). Processor keys are derived from it, so a
refund confirmed twice reaches the processor once."""
import hashlib
import json
import uuid
from dataclasses import dataclass
from decimal import Decimal

from django import forms
from django.contrib import messages
from django.core import signing
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from djmoney.money import Money

from billing.errors import BillingError, ProcessorUnavailable
from billing.models import Payment, Status, Subscription
from billing.pricing import Change
from billing.services import support
from store import clock
from store.models import BillingCycle, Plan
from store.money import format_money


class ReasonForm(forms.Form):
    reason = forms.CharField(label=gettext_lazy("Reason (recorded in the audit trail)"),
                             widget=forms.Textarea(attrs={"rows": 3, "cols": 60}))


class TrialExtendForm(ReasonForm):
    ends_at = forms.DateTimeField(label=gettext_lazy("New trial end"))
    field_order = ["ends_at", "reason"]


class UnlockForm(ReasonForm):
    grace_ends_at = forms.DateTimeField(label=gettext_lazy("New grace end"))
    field_order = ["grace_ends_at", "reason"]


class AmountForm(ReasonForm):
    amount = forms.DecimalField(label=gettext_lazy("Amount"), min_value=Decimal("0.01"),
                                max_digits=14, decimal_places=2)
    field_order = ["amount", "reason"]


class PlanChangeForm(ReasonForm):
    CHARGE, NO_CHARGE = "charge", "no_charge"
    plan = forms.ModelChoiceField(label=gettext_lazy("Plan"),
                                  queryset=Plan.objects.filter(is_public=True))
    cycle = forms.ChoiceField(label=gettext_lazy("Billing cycle"), choices=BillingCycle.choices)
    regular_licences = forms.IntegerField(label=gettext_lazy("Regular user licences"),
                                          min_value=1)
    team_licences = forms.IntegerField(label=gettext_lazy("Team user licences"), min_value=0)
    storage_units = forms.IntegerField(label=gettext_lazy("Extra storage units"), min_value=0)
    payment = forms.ChoiceField(
        label=gettext_lazy("Payment"), widget=forms.RadioSelect,
        choices=[(CHARGE, gettext_lazy("Charge the card on file for the amount due now")),
                 (NO_CHARGE, gettext_lazy("Apply without charging: the amount due is not "
                                          "collected"))])
    quote = forms.UUIDField(required=False, widget=forms.HiddenInput)
    field_order = ["plan", "cycle", "regular_licences", "team_licences", "storage_units",
                   "payment", "reason"]


@dataclass(frozen=True)
class Row:
    """One line of what will change: what, before, after."""

    label: str
    before: str
    after: str


def _when(moment) -> str:
    return clock.localtime_label(moment) if moment else "—"


def _money(amount) -> str:
    return format_money(amount, "en") if amount is not None else "—"


CONFIRMATION_SALT = "billing.admin_support.confirmation"
CONFIRMATION_MAX_AGE = 60 * 60  # seconds: a review left longer is reviewed again
# Posted with a confirmation but not part of what was reviewed.
NOT_REVIEWED = frozenset({"csrfmiddlewaretoken", "confirm", "confirmation"})


class Refused(Exception):
    """A confirmation that cannot be applied: its HTTP status and the sentence shown."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _binding(action: str, obj, staff, values: dict) -> dict:
    reviewed = json.dumps(sorted((name, str(value)) for name, value in values.items()))
    return {"action": action, "row": f"{obj._meta.label_lower}:{obj.pk}", "staff": staff.pk,
            "values": hashlib.sha256(reviewed.encode()).hexdigest()}


def confirmation_issue(*, action: str, obj, staff, values: dict) -> str:
    """A one-time confirmation for the review of `values` (what the confirm button posts)."""
    return signing.dumps({**_binding(action, obj, staff, values), "once": uuid.uuid4().hex},
                         salt=CONFIRMATION_SALT)


def _used_key(once: str) -> str:
    return f"support-confirmation-used:{once}"


def confirmation_redeem(*, action: str, obj, staff, posted) -> str:
    """Check a posted confirmation against what it confirms and use it up; returns its
    one-time part (from which processor keys are derived)."""
    values = {name: value for name, value in posted.items() if name not in NOT_REVIEWED}
    try:
        payload = signing.loads(posted.get("confirmation", ""), salt=CONFIRMATION_SALT,
                                max_age=CONFIRMATION_MAX_AGE)
    except signing.BadSignature:  # none, forged, or expired
        payload = {}
    once = payload.pop("once", "") if isinstance(payload, dict) else ""
    if not once or payload != _binding(action, obj, staff, values):
        raise Refused(400, _("Review the change first: this confirmation is not the one "
                             "shown for these values on this page."))
    if not cache.add(_used_key(once), staff.pk, timeout=CONFIRMATION_MAX_AGE + 60):
        raise Refused(409, _("This confirmation was already used: the action was applied "
                             "once. Review it again to apply it again."))
    return once


def confirmation_release(once: str) -> None:
    """Let a confirmation be used again, when the processor did not answer: confirming again
    asks it with the same key."""
    cache.delete(_used_key(once))


class SupportAction:
    """An action on one row: its form, what it would change, and applying it."""

    name = ""
    permission = ""
    title = ""
    form_class: type[forms.Form] = ReasonForm

    def initial(self, obj) -> dict:
        return {}

    def preview(self, obj, data: dict) -> tuple[list[Row], dict]:
        """What will change, and values the confirmation carries (e.g. the quote's id)."""
        raise NotImplementedError

    def apply(self, obj, data: dict, staff) -> str:
        raise NotImplementedError


class ExtendTrial(SupportAction):
    name, permission = "extend-trial", "billing.support_extend_trial"
    title = gettext_lazy("Extend the trial")
    form_class = TrialExtendForm

    def initial(self, obj):
        return {"ends_at": obj.trial_ends_at}

    def preview(self, obj, data):
        if obj.status != Status.TRIALING:
            raise BillingError(_("Only a running trial can be extended."))
        if data["ends_at"] <= obj.trial_ends_at:
            raise BillingError(_("The new end must be later than the trial's current end."))
        return [Row(_("Trial ends"), _when(obj.trial_ends_at), _when(data["ends_at"]))], {}

    def apply(self, obj, data, staff):
        support.support_trial_extend(subscription_id=obj.pk, ends_at=data["ends_at"],
                                     staff=staff, reason=data["reason"])
        return _("The trial now ends %(when)s.") % {"when": _when(data["ends_at"])}


class Unlock(SupportAction):
    name, permission = "unlock", "billing.support_unlock"
    title = gettext_lazy("Unlock with a new grace end")
    form_class = UnlockForm

    def preview(self, obj, data):
        if obj.status not in {Status.LOCKED, Status.PAST_DUE}:
            raise BillingError(_("Only a locked or past-due account can be unlocked."))
        invoice = obj.open_invoice
        rows = [Row(_("Status"), obj.get_status_display(), Status.PAST_DUE.label),
                Row(_("Grace ends"), _when(obj.grace_ends_at), _when(data["grace_ends_at"]))]
        if invoice:
            rows.append(Row(_("Open invoice"), f"{invoice.number} "
                            f"{_money(support.open_invoice_due(obj))}",
                            _("stays open: the account locks again if it is unpaid then")))
        return rows, {}

    def apply(self, obj, data, staff):
        support.support_unlock(subscription_id=obj.pk, grace_ends_at=data["grace_ends_at"],
                               staff=staff, reason=data["reason"])
        return _("The account is past due until %(when)s.") % {
            "when": _when(data["grace_ends_at"])}


class GrantCredit(SupportAction):
    name, permission = "grant-credit", "billing.support_grant_credit"
    title = gettext_lazy("Grant account credit")
    form_class = AmountForm

    def preview(self, obj, data):
        amount = Money(data["amount"], obj.currency)
        after = obj.credit_balance + amount
        rows = [Row(_("Account credit (never paid out)"), _money(obj.credit_balance),
                    _money(after))]
        use = support.open_invoice_credit_use(obj, after)
        if use.due is None:
            return rows, {}
        invoice = _("Open invoice %(number)s") % {"number": obj.open_invoice.number}
        unpaid = _("unpaid: %(amount)s") % {"amount": _money(use.due)}
        if use.waiting:
            rows.append(Row(invoice, unpaid, _("stays unpaid for now: a card payment is being "
                                               "confirmed; the credit waits in the balance")))
            return rows, {}
        if use.settles:
            rows.append(Row(invoice, unpaid, _("paid from the credit now")))
            rows.append(Row(_("Status"), obj.get_status_display(), Status.ACTIVE.label))
        else:
            rows.append(Row(invoice, unpaid, _("%(spent)s paid from the credit now; "
                                               "%(rest)s left to charge to the card")
                            % {"spent": _money(use.spent), "rest": _money(use.rest)}))
        rows.append(Row(_("Account credit (never paid out)"), _money(after),
                        _money(after - use.spent)))
        return rows, {}

    def apply(self, obj, data, staff):
        amount = Money(data["amount"], obj.currency)
        grant = support.support_credit_grant(subscription_id=obj.pk, amount=amount,
                                             staff=staff, reason=data["reason"])
        message = _("%(amount)s of account credit granted.") % {"amount": _money(amount)}
        if grant.waiting:
            message += " " + _("A card payment is being confirmed, so the credit was not "
                               "applied to the open invoice: it stays in the balance.")
        elif grant.applied.amount > 0:
            message += " " + _("%(spent)s of it paid the open invoice.") % {
                "spent": _money(grant.applied)}
        return message


class RetryCharge(SupportAction):
    name, permission = "retry-charge", "billing.support_retry_charge"
    title = gettext_lazy("Retry the failed renewal charge now")

    def preview(self, obj, data):
        due = support.open_invoice_due(obj)
        method = obj.default_payment_method
        if due is None:
            raise BillingError(_("There is no failed renewal to charge."))
        if method is None:
            raise BillingError(_("There is no card on file to charge."))
        return [Row(_("Open invoice %(number)s") % {"number": obj.open_invoice.number},
                    _("unpaid: %(amount)s") % {"amount": _money(due)},
                    _("charged now to %(card)s") % {"card": str(method)}),
                Row(_("Status if the charge succeeds"), obj.get_status_display(),
                    Status.ACTIVE.label)], {}

    def apply(self, obj, data, staff):
        payment = support.support_charge_retry(subscription_id=obj.pk, staff=staff,
                                               reason=data["reason"])
        if payment.state == Payment.State.SUCCEEDED:
            return _("Charged %(amount)s: the renewal is paid.") % {
                "amount": _money(payment.amount)}
        if payment.state == Payment.State.FAILED:
            raise BillingError(_("The charge failed: %(why)s") % {"why": payment.reason})
        return _("The payment service has not answered yet; the outcome is recorded as soon "
                 "as it does.")


class ChangePlan(SupportAction):
    name, permission = "change-plan", "billing.support_change_plan"
    title = gettext_lazy("Change the plan for the organisation")
    form_class = PlanChangeForm

    def initial(self, obj):
        return {"plan": obj.plan, "cycle": obj.cycle, "regular_licences": obj.regular_licences,
                "team_licences": obj.team_licences, "storage_units": obj.storage_units,
                "payment": PlanChangeForm.CHARGE}

    def preview(self, obj, data):
        change = Change(data["plan"], data["cycle"], data["regular_licences"],
                        data["team_licences"], data["storage_units"])
        # The review is a quote, made by the staff member, as in the portal.
        quote = support.support_plan_quote(organisation=obj.organisation, change=change,
                                           staff=self.staff)
        charge = data["payment"] == PlanChangeForm.CHARGE
        method = obj.default_payment_method
        if charge and quote.amount_due.amount > 0:
            if method is None:
                raise BillingError(_("There is no card on file: apply it without charging, or "
                                     "ask the organisation to add a card."))
            payment = _("%(amount)s is charged now to %(card)s") % {
                "amount": _money(quote.amount_due), "card": str(method)}
        elif quote.amount_due.amount > 0:
            payment = _("NOTHING IS CHARGED: %(amount)s due now is not collected") % {
                "amount": _money(quote.amount_due)}
        else:
            payment = _("nothing is due now")
        rows = [Row(_("Plan"), obj.plan.display_name, quote.plan.display_name),
                Row(_("Billing cycle"), obj.get_cycle_display(),
                    BillingCycle(quote.cycle).label),
                Row(_("Regular user licences"), str(obj.regular_licences),
                    str(quote.regular_licences)),
                Row(_("Team user licences"), str(obj.team_licences), str(quote.team_licences)),
                Row(_("Extra storage units"), str(obj.storage_units), str(quote.storage_units)),
                Row(_("Total of the change (tax included)"), "", _money(quote.total)),
                Row(_("Account credit used"), "", _money(quote.credit_applied)),
                Row(_("Due now"), "", payment),
                Row(_("Credit to the account"), "", _money(quote.credit_to_account))]
        rows += [Row(_("Warning"), "", str(warning)) for warning in quote.warnings or []]
        return rows, {"quote": str(quote.pk)}

    def apply(self, obj, data, staff):
        if not data.get("quote"):
            raise BillingError(_("Review the change first."))
        invoice = support.support_plan_change(
            organisation=obj.organisation, quote_id=data["quote"],
            charge=data["payment"] == PlanChangeForm.CHARGE, staff=staff,
            reason=data["reason"])
        return _("The change is applied: invoice %(number)s.") % {"number": invoice.number}


class Refund(SupportAction):
    name, permission = "refund", "billing.support_refund"
    title = gettext_lazy("Refund to the card")
    form_class = AmountForm

    def initial(self, obj):
        return {"amount": support.refundable(obj).amount}

    def preview(self, obj, data):
        amount = Money(data["amount"], obj.amount.currency)
        left = support.refundable(obj)
        if not 0 < amount.amount <= left.amount or obj.state != Payment.State.SUCCEEDED:
            raise BillingError(_("At most %(left)s of this payment can be refunded.")
                               % {"left": _money(left)})
        refunded = obj.amount_refunded or Money(0, obj.amount.currency)
        full = amount == left
        return [Row(_("Refunded to %(card)s through the payment service")
                    % {"card": obj.card_label}, _money(refunded), _money(refunded + amount)),
                Row(_("Payment status"), obj.get_state_display(),
                    Payment.State.REFUNDED.label if full else obj.get_state_display()),
                Row(_("Credit note"), "", _("a refund credit note of %(amount)s on invoice "
                                            "%(number)s") % {"amount": _money(amount),
                                                             "number": obj.invoice}),
                ], {}

    def apply(self, obj, data, staff):
        note = support.support_refund(payment_id=obj.pk,
                                      amount=Money(data["amount"], obj.amount.currency),
                                      staff=staff, reason=data["reason"],
                                      confirmation=data["confirmation"])
        return _("Refunded %(amount)s (credit note %(number)s).") % {
            "amount": _money(note.total), "number": note.number}


class ResendEmail(SupportAction):
    name, permission = "resend", "billing.support_resend"
    title = gettext_lazy("Send this email again")

    def preview(self, obj, data):
        return [Row(_("Email"), obj.get_kind_display(), ", ".join(obj.recipients)),
                Row(_("Sent"), _when(obj.sent_at), _("sent again now"))], {}

    def apply(self, obj, data, staff):
        support.support_notification_resend(notification_id=obj.pk, staff=staff,
                                            reason=data["reason"])
        return _("The email is being sent again.")


SUBSCRIPTION_ACTIONS = [ExtendTrial, Unlock, GrantCredit, RetryCharge, ChangePlan]
PAYMENT_ACTIONS = [Refund]
NOTIFICATION_ACTIONS = [ResendEmail]


class SupportActionsMixin:
    """For a ModelAdmin: `support_actions` become pages at <id>/support/<name>/, linked from
    the change page for staff who hold their permission."""

    support_actions: list[type[SupportAction]] = []
    change_form_template = "admin/billing/support_change_form.html"

    def _support_url_name(self) -> str:
        opts = self.model._meta
        return f"{opts.app_label}_{opts.model_name}_support"

    def get_urls(self):
        return [path("<path:object_id>/support/<slug:action>/",
                     self.admin_site.admin_view(self.support_view),
                     name=self._support_url_name()), *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        links = [(action.title, reverse(f"admin:{self._support_url_name()}",
                                        args=[object_id, action.name]))
                 for action in self.support_actions if request.user.has_perm(action.permission)]
        return super().change_view(request, object_id, form_url,
                                   {**(extra_context or {}), "support_links": links})

    def support_view(self, request, object_id, action):
        found = {item.name: item for item in self.support_actions}.get(action)
        if found is None:
            raise Http404
        if not request.user.has_perm(found.permission):
            raise PermissionDenied
        act = found()
        act.staff = request.user
        obj = get_object_or_404(self.model, pk=object_id)
        opts = self.model._meta
        change_url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
        form = act.form_class(request.POST or None, initial=act.initial(obj))
        rows, carried, status, resend = [], {}, 200, False
        if request.method == "POST" and form.is_valid():
            confirming = "confirm" in request.POST
            try:
                if confirming:
                    once = confirmation_redeem(action=act.name, obj=obj, staff=request.user,
                                               posted=request.POST)
                    try:
                        message = act.apply(obj, {**form.cleaned_data, "confirmation": once},
                                            request.user)
                    except ProcessorUnavailable:
                        # Unknown outcome: the same confirmation, offered again, re-asks the
                        # processor under the same key.
                        confirmation_release(once)
                        carried, resend = dict(request.POST.items()), True
                        carried.pop("confirm", None)
                        carried.pop("csrfmiddlewaretoken", None)
                        raise
                    self.message_user(request, message, messages.SUCCESS)
                    return redirect(change_url)
                rows, extra = act.preview(obj, form.cleaned_data)
                carried = {name: value for name, value in request.POST.items()
                           if name in form.fields}
                carried.update(extra)
                carried["confirmation"] = confirmation_issue(
                    action=act.name, obj=obj, staff=request.user, values=carried)
            except Refused as refused:
                form.add_error(None, str(refused))
                rows, status = [], refused.status
            except BillingError as error:
                form.add_error(None, str(error))
                rows, status = [], 400 if confirming else 200
        context = {**self.admin_site.each_context(request), "opts": opts, "original": obj,
                   "title": act.title, "form": form, "rows": rows, "carried": carried,
                   "resend": resend, "change_url": change_url,
                   "reason": form.cleaned_data.get("reason", "")
                   if form.is_bound and form.is_valid() else ""}
        return TemplateResponse(request, "admin/billing/support_action.html", context,
                                status=status)


def subscription_admin_url(subscription: Subscription) -> str:
    return reverse("admin:billing_subscription_change", args=[subscription.pk])

