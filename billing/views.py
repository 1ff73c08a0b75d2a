"""The store screens (管理 / Manage): details, change plan, configure, review and pay, invoices,
trials, Switch to Free, Delete account, and a locked account's choice screen with its Renew.
Thin: parse, call one service or selector, render.

While an organisation is locked, `org_admin_required` sends its admins to the choice screen
from every view except those marked `while_locked=True`: the pages the three choices need."""
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.http import Http404, HttpResponseBadRequest, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _

from accounts import selectors as account_selectors
from accounts.permissions import org_admin_required
from billing import gateway, pricing, selectors
from billing.errors import BillingError
from billing.exports import history_csv
from billing.forms import (
    ConfigureForm,
    DeleteAccountForm,
    LicenceChangeForm,
    PaymentHistoryFilter,
)
from billing.models import Quote, TrialUse
from billing.services import (
    cards,
    closure,
    licences,
    lifecycle,
    payments,
    quotes,
    subscriptions,
)
from store.http import require_post
from store.models import Plan


def _details_context(organisation) -> dict:
    overview = selectors.subscription_overview(organisation=organisation)
    counts = account_selectors.org_user_counts(organisation=organisation)
    entitled, bars = selectors.usage_panel(subscription=overview.subscription, counts=counts)
    return {"overview": overview, "counts": counts, "entitled": entitled, "usage_bars": bars,
            "panel": selectors.licence_panel(subscription=overview.subscription, counts=counts)}


@org_admin_required
def details(request):
    """購入情報の詳細 / Subscription details: the Manage landing page."""
    return render(request, "billing/details.html", _details_context(request.user.organisation))


@org_admin_required(while_locked=True)
def plans(request):
    subscription = selectors.subscription_get(organisation=request.user.organisation)
    return render(request, "billing/plans.html", {
        "subscription": subscription,
        "rows": selectors.plans_for_change(subscription=subscription),
    })


def _form_errors(form) -> str:
    return " ".join(str(message) for messages_ in form.errors.values() for message in messages_)


def _quote_or_price(request, subscription, change: pricing.Change):
    """A change asked for on a form: a POST makes its quote (→ the review), a GET prices it
    live. (redirect or None, priced, error, status)."""
    organisation = request.user.organisation
    try:
        if request.method == "POST":
            quote = quotes.quote_create(organisation=organisation, acting_user=request.user,
                                        change=change)
            return redirect("billing:review", quote_id=quote.pk), None, "", 302
        return None, pricing.quote_price(organisation=organisation, subscription=subscription,
                                         change=change), "", 200
    except BillingError as refused:
        return None, None, str(refused), 400


def _change_from(form: ConfigureForm, plan: Plan) -> pricing.Change:
    data = form.cleaned_data
    return pricing.Change(plan, data["cycle"], data["regular_licences"], data["team_licences"],
                         data["storage_units"])


@org_admin_required(while_locked=True)
def configure(request, code: str):
    organisation = request.user.organisation
    plan = get_object_or_404(Plan, code=code, is_public=True)
    if plan.is_free:
        return redirect("billing:details")
    subscription = selectors.subscription_with_prices(organisation=organisation)
    initial = {"cycle": subscription.cycle, "regular_licences": subscription.regular_licences,
               "team_licences": subscription.team_licences,
               "storage_units": subscription.storage_units}
    form = ConfigureForm(request.POST if request.method == "POST" else request.GET or None,
                         initial=initial)
    priced, error, status = None, "", 200
    if form.is_bound and form.is_valid():
        quoted, priced, error, status = _quote_or_price(request, subscription,
                                                        _change_from(form, plan))
        if quoted:
            return quoted
    elif form.is_bound:
        error, status = _form_errors(form), 400
    else:
        try:
            priced = pricing.quote_price(organisation=organisation, subscription=subscription,
                                        change=pricing.Change(plan, **initial))
        except BillingError as refused:
            priced = None  # e.g. the current configuration itself: nothing to price yet
            if refused.code == "renew_instead":  # while past due, say Renew pays it
                error = str(refused)
    context = {"plan": plan, "form": form, "priced": priced, "error": error,
               "subscription": subscription}
    if request.htmx:
        # The live price is a partial: its error is its content, swapped in like any price
        # (htmx leaves 4xx responses unswapped).
        return render(request, "billing/configure.html#summary", context)
    return render(request, "billing/configure.html", context, status=status)


def _licence_screen(request, *, remove: bool):
    """ユーザー/アドオンのアップグレード (add) and ダウングレード (remove): how many, the price
    of the change live, then the same quote, review and Pay as a plan change."""
    organisation = request.user.organisation
    subscription = selectors.subscription_with_prices(organisation=organisation)
    try:
        licences.licence_change(subscription=subscription, regular=0, team=0, storage=0,
                                remove=False)
        refusal = ""
    except BillingError as refused:
        refusal = str(refused)
    form = LicenceChangeForm(request.POST if request.method == "POST" else request.GET or None)
    priced, error, status = None, "", 200
    if refusal:
        error, status = refusal, 400 if form.is_bound else 200
    elif form.is_bound and form.is_valid():
        try:
            change = licences.licence_change(subscription=subscription, remove=remove,
                                             **form.cleaned_data)
        except BillingError as refused:
            error, status = str(refused), 400
        else:
            quoted, priced, error, status = _quote_or_price(request, subscription, change)
            if quoted:
                return quoted
    elif form.is_bound:
        error, status = _form_errors(form), 400
    context = {"form": form, "priced": priced, "error": error, "refusal": refusal,
               "subscription": subscription, "remove": remove,
               "panel": selectors.licence_panel(
                   subscription=subscription,
                   counts=account_selectors.org_user_counts(organisation=organisation))}
    if request.htmx:
        return render(request, "billing/licences.html#summary", context)
    return render(request, "billing/licences.html", context, status=status)


@org_admin_required
def licences_add(request):
    return _licence_screen(request, remove=False)


@org_admin_required
def licences_remove(request):
    return _licence_screen(request, remove=True)


def _review_context(request, quote: Quote) -> dict:
    subscription = selectors.subscription_get(organisation=request.user.organisation)
    return {"quote": quote, "subscription": subscription,
            "open_payment": selectors.open_payment(quote=quote),
            "needs_card": (quote.state == Quote.State.OPEN and quote.amount_due.amount > 0
                           and subscription.default_payment_method is None),
            "stripe_js_url": gateway.browser_script_url(),
            "stripe_publishable_key": settings.STRIPE_PUBLISHABLE_KEY}


@org_admin_required(while_locked=True)
def review(request, quote_id):
    quote = selectors.quote_get(organisation=request.user.organisation, quote_id=quote_id)
    if quote.state == Quote.State.PAID:
        return redirect("billing:invoice", number=quote.invoice.number)
    return render(request, "billing/review.html", _review_context(request, quote))


# How each refusal of Pay answers: a person reads the message, a program the status.
PAY_STATUS = {"card_declined": 402, "processor_unavailable": 503, "payment_pending": 202,
              "processor_error": 502, "processor_customer_missing": 409}


@org_admin_required(while_locked=True)
@require_post
def pay(request, quote_id):
    organisation = request.user.organisation
    try:
        result = payments.quote_pay(organisation=organisation, quote_id=quote_id,
                                    acting_user=request.user)
    except Quote.DoesNotExist as missing:
        raise Http404 from missing
    except BillingError as refused:
        quote = selectors.quote_get(organisation=organisation, quote_id=quote_id)
        return render(request, "billing/review.html",
                      {**_review_context(request, quote), "error": str(refused),
                       "error_code": refused.code}, status=409)
    if result.invoice is None:
        quote = selectors.quote_get(organisation=organisation, quote_id=quote_id)
        return render(request, "billing/review.html",
                      {**_review_context(request, quote), "error": result.failure,
                       "error_code": result.code, "pending": result.pending},
                      status=PAY_STATUS.get(result.code, 402))
    messages.success(request, _("Done: you are on %(plan)s now.")
                     % {"plan": result.invoice.quote.plan.display_name})
    return redirect("billing:invoice", number=result.invoice.number)


@org_admin_required(while_locked=True)
@require_post
def card_setup(request):
    """A SetupIntent for the processor's card form (a POST: it may create the customer)."""
    try:
        secret = payments.card_setup_secret(organisation=request.user.organisation)
    except BillingError as refused:
        return JsonResponse({"error": str(refused), "code": refused.code}, status=503
                            if refused.code == "processor_unavailable" else 400)
    return JsonResponse({"secret": secret})


@org_admin_required(while_locked=True)
@require_post
def card_add(request):
    """The browser confirmed a card with the processor: save it (the default unless
    `make_default=0`), or, with `replaces`, put it in that card's place."""
    organisation = request.user.organisation
    method_id = request.POST.get("payment_method", "")
    if not method_id.startswith("pm_"):
        return JsonResponse({"error": _("No card was confirmed.")}, status=400)
    replaces = request.POST.get("replaces", "")
    if replaces and not (replaces.isdecimal() and organisation.payment_methods.filter(
            pk=replaces).exists()):
        raise Http404
    try:
        if replaces:
            method = cards.card_replace(organisation=organisation, method_id=int(replaces),
                                        payment_method_id=method_id, acting_user=request.user)
        else:
            method = cards.card_add(organisation=organisation, payment_method_id=method_id,
                                    acting_user=request.user,
                                    make_default=request.POST.get("make_default") != "0")
    except BillingError as refused:
        return JsonResponse({"error": str(refused), "code": refused.code}, status=400)
    return JsonResponse({"card": str(method)})


@org_admin_required(while_locked=True)
def invoice(request, number: str):
    invoice = selectors.invoice_get(organisation=request.user.organisation, number=number)
    return render(request, "billing/invoice.html", {
        "invoice": invoice, "story": selectors.invoice_story(invoice)})


@org_admin_required
def trial(request):
    organisation = request.user.organisation
    if request.method == "POST":
        plan = get_object_or_404(Plan, code=request.POST.get("plan", ""), is_public=True)
        try:
            subscriptions.trial_start(organisation=organisation, plan=plan,
                                      acting_user=request.user)
        except BillingError as refused:
            messages.error(request, str(refused))
            return redirect("billing:trial")
        messages.success(request, _("Your %(plan)s trial has started.")
                         % {"plan": plan.display_name})
        return redirect("billing:details")
    tried = set(TrialUse.objects.filter(organisation=organisation).values_list("plan_id",
                                                                                flat=True))
    return render(request, "billing/trial.html", {
        "subscription": selectors.subscription_get(organisation=organisation),
        "plans": [(plan, plan.pk in tried) for plan in
                  Plan.objects.filter(is_public=True).exclude(code="free")],
        "trial_days": settings.KANRI_TRIAL_DAYS,
    })


@org_admin_required(while_locked=True)
@require_post
def switch_to_free(request):
    """Price the move to Free (credit for unused time) and show it for confirmation."""
    try:
        quote = quotes.quote_switch_to_free(organisation=request.user.organisation,
                                            acting_user=request.user)
    except BillingError as refused:
        messages.error(request, str(refused))
        return redirect("billing:details")
    return redirect("billing:review", quote_id=quote.pk)


@org_admin_required(while_locked=True)
def card_update(request):
    """変更する / Change the card: the processor's form; the new card becomes the default and
    the admin returns to the details page (or the lock screen)."""
    subscription = selectors.subscription_get(organisation=request.user.organisation)
    back = "billing:locked" if subscription.status == "locked" else "billing:details"
    return render(request, "billing/card.html", {
        "subscription": subscription, "next": reverse(back),
        "stripe_js_url": gateway.browser_script_url(),
        "stripe_publishable_key": settings.STRIPE_PUBLISHABLE_KEY})


@org_admin_required(while_locked=True)
def locked(request):
    """The lock's choice screen: renew (pay the open invoice), choose another plan, or Free."""
    lock = selectors.lock_overview(organisation=request.user.organisation)
    if lock is None:
        return redirect("billing:details")
    return render(request, "billing/locked.html", {"lock": lock})


def _renew_refused(request, *, error: str, code: str, pending: bool, status: int):
    """Renew did not pay: the lock screen again with the reason (or the details page, when the
    organisation is past due rather than locked)."""
    organisation = request.user.organisation
    answer = {"error": error, "error_code": code, "pending": pending}
    lock = selectors.lock_overview(organisation=organisation)
    if lock is not None:
        return render(request, "billing/locked.html", {"lock": lock, **answer}, status=status)
    return render(request, "billing/details.html", {**_details_context(organisation), **answer},
                  status=status)


@org_admin_required(while_locked=True)
@require_post
def renew(request):
    """サブスクリプションの更新 / Renew subscription: pay the open renewal invoice now."""
    # Still active: the processor did not answer the renewal's charge, nothing was overdue.
    was_active = selectors.subscription_get(
        organisation=request.user.organisation).status == "active"
    try:
        result = lifecycle.renewal_pay_now(organisation=request.user.organisation,
                                           acting_user=request.user)
    except BillingError as refused:
        return _renew_refused(request, error=str(refused), code=refused.code, pending=False,
                              status=409)
    if result.invoice is None:
        return _renew_refused(request, error=result.failure, code=result.code,
                              pending=result.pending, status=PAY_STATUS.get(result.code, 402))
    messages.success(request, _("Paid: your subscription is renewed.") if was_active
                     else _("Paid: your subscription is active again."))
    return redirect("billing:invoice", number=result.invoice.number)


@org_admin_required
def delete_account(request):
    organisation = request.user.organisation
    form = DeleteAccountForm(request.POST if request.method == "POST" else None,
                             organisation=organisation)
    if request.method == "POST" and form.is_valid():
        try:
            closure.organisation_delete(organisation=organisation, acting_user=request.user)
        except BillingError as refused:
            form.add_error(None, str(refused))
        else:
            logout(request)
            messages.success(request, _("Your account and its data were deleted."))
            return redirect("accounts:login")
    return render(request, "billing/delete.html", {"form": form, "organisation": organisation},
                  status=400 if form.errors else 200)


# 購入設定 → 決済方法 / Purchase settings → Payment methods ------------------------------------

def _card_form_context() -> dict:
    return {"stripe_js_url": gateway.browser_script_url(),
            "stripe_publishable_key": settings.STRIPE_PUBLISHABLE_KEY}


@org_admin_required(while_locked=True)
def payment_methods(request):
    """The organisation's cards: change, make default, delete, add (the lock's Renew needs a
    working card, so this page stays open while locked)."""
    return render(request, "billing/payment_methods.html", {
        "methods": selectors.payment_methods_list(organisation=request.user.organisation),
        **_card_form_context()})


@org_admin_required(while_locked=True)
@require_post
def card_default(request, method_id: int):
    organisation = request.user.organisation
    method = selectors.payment_method_get(organisation=organisation, method_id=method_id)
    cards.card_make_default(organisation=organisation, method_id=method.pk,
                            acting_user=request.user)
    messages.success(request, _("%(card)s is now your default card.") % {"card": method})
    return redirect("billing:payment_methods")


@org_admin_required(while_locked=True)
def card_replace(request, method_id: int):
    """変更する / Change: enter the replacement in the processor's form, then 更新する."""
    method = selectors.payment_method_get(organisation=request.user.organisation,
                                          method_id=method_id)
    return render(request, "billing/card_replace.html", {"method": method,
                                                         **_card_form_context()})


@org_admin_required(while_locked=True)
@require_post
def card_delete(request, method_id: int):
    """削除する / Delete; when it would leave a renewing plan without a card, a confirmation
    page says renewals will fail and asks again."""
    organisation = request.user.organisation
    method = selectors.payment_method_get(organisation=organisation, method_id=method_id)
    try:
        successor = cards.card_delete(organisation=organisation, method_id=method.pk,
                                      acting_user=request.user,
                                      confirmed=request.POST.get("confirmed") == "1")
    except cards.ConfirmationRequired as question:
        return render(request, "billing/card_delete.html",
                      {"method": method, "consequence": str(question)})
    except BillingError as refused:
        messages.error(request, str(refused))
        return redirect("billing:payment_methods")
    messages.success(request, _("%(card)s was deleted.") % {"card": method})
    if successor is not None:
        messages.info(request, _("%(card)s is now your default card.") % {"card": successor})
    return redirect("billing:payment_methods")


# 決済の履歴 / Payment history -----------------------------------------------------------------

HISTORY_PAGE_SIZE = 25


def _history_filter(request):
    """The filter from the query string: (form, filter), or (form, None) when it is not valid
    (malformed dates, an unknown status, a start after the end)."""
    form = PaymentHistoryFilter(request.GET or None)
    if form.is_bound and not form.is_valid():
        return form, None
    data = form.cleaned_data if form.is_bound else {}
    return form, {"organisation": request.user.organisation, "start": data.get("start"),
                  "end": data.get("end"), "status": data.get("status") or ""}


@org_admin_required
def payment_history(request):
    """決済の履歴 / Payment history: every attempt, newest first, filtered and paginated."""
    form, matching = _history_filter(request)
    page = None
    if matching is not None:
        page = selectors.payment_history_page(number=request.GET.get("page"),
                                              size=HISTORY_PAGE_SIZE, **matching)
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "billing/payment_history.html",
                  {"form": form, "page": page, "query": query.urlencode(),
                   "organisation": request.user.organisation,
                   "product": settings.KANRI_PRODUCT_NAME},
                  status=400 if matching is None else 200)


@org_admin_required
def payment_history_csv(request):
    """The filtered rows as CSV, every page, in the organisation's time zone."""
    form, matching = _history_filter(request)
    if matching is None:
        return HttpResponseBadRequest(_form_errors(form),
                                      content_type="text/plain; charset=utf-8")
    response = StreamingHttpResponse(history_csv(selectors.payment_history_rows(**matching)),
                                     content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="payments.csv"'
    return response


@org_admin_required
def payment_detail(request, payment_id: int):
    organisation = request.user.organisation
    return render(request, "billing/payment_detail.html", {
        "payment": selectors.payment_get(organisation=organisation, payment_id=payment_id),
        "organisation": organisation, "product": settings.KANRI_PRODUCT_NAME})
