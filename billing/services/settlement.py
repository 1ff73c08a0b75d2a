"""What a settled payment does (SPEC "The books"): a quote's payment applies the change it
bought, a renewal's payment starts the period it pays for, a renewal's refused or unanswered
charge moves dunning on. The charging engine (billing.services.charging) calls these once it has
recorded the processor's answer; so do the services that pay without a charge (credit, waivers).
This module imports no caller of its own: charging, lifecycle and payments import it."""
import datetime as dt
import logging
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import translation

from accounts.models import Organisation, User
from billing.models import Invoice, Notification, Payment, Quote, Status, Subscription
from billing.notifications import Event, notify_all
from billing.services.invoices import payment_by_credit_record, receipt_notify
from billing.services.licences import licences_cover_active_users
from billing.services.subscriptions import (
    subscription_apply_quote,
    subscription_save,
    subscription_transition,
)
from store import clock
from store.money import format_money, zero

logger = logging.getLogger(__name__)
SILENT_RETRY = dt.timedelta(minutes=15)  # the first wait after a processor that did not answer
# Failures that say nothing about the card: the processor did not answer, or the attempt was
# committed and never sent (its process died first; settled later as never confirmed).
NOTHING_REFUSED = {"processor_unavailable", "not_sent"}


def local_date(moment: dt.datetime | None, time_zone: str) -> str:
    """YYYY-MM-DD in `time_zone` (empty for no moment)."""
    if moment is None:
        return ""
    return moment.astimezone(ZoneInfo(time_zone)).strftime("%Y-%m-%d")


def organisation_date(moment: dt.datetime | None, organisation: Organisation) -> str:
    """A date as the organisation's calendar reads it (its time zone), for emails."""
    return local_date(moment, organisation.time_zone)


def next_retry(*, due: dt.datetime, now: dt.datetime, grace_ends: dt.datetime):
    """The first scheduled retry day after now, inside the grace period (None when none is)."""
    for day in sorted(settings.KANRI_DUNNING_RETRY_DAYS):
        moment = due + dt.timedelta(days=day)
        if now < moment < grace_ends:
            return moment
    return None


def renewal_apply_paid(*, subscription: Subscription, invoice: Invoice,
                       payment: Payment | None) -> bool:
    """The renewal invoice is paid: the period it pays for starts, dunning ends. The caller holds
    the subscription's lock. False when the invoice is no longer owed (void): refund."""
    if invoice.state != Invoice.State.OPEN and payment is not None:
        return False
    now = clock.now()
    invoice.state, invoice.paid_at = Invoice.State.PAID, now
    invoice.amount_paid = payment.amount if payment else zero(invoice.currency)
    invoice.paid_by = payment.processor_id if payment else ""
    invoice.save(update_fields=["state", "paid_at", "amount_paid", "paid_by"])
    subscription.current_period_start = invoice.period_start
    subscription.current_period_end = invoice.period_end
    subscription.paid_invoice = invoice
    subscription.open_invoice = None
    subscription.payment_failed_at = subscription.grace_ends_at = None
    subscription.next_retry_at = subscription.locked_at = None
    subscription.retries_made = 0
    subscription_transition(subscription=subscription, to=Status.ACTIVE, actor=None,
                            reason=f"renewal invoice {invoice.number} paid")
    subscription_save(subscription)
    if payment is None:
        payment_by_credit_record(invoice=invoice)
    else:
        # A card paid: the receipt, which says the subscription renewed and carries the invoice
        # PDF, is the renewal's one email. Paid without a charge (account credit, or an amount
        # below the processor's minimum), nothing was taken: "renewed", no receipt.
        receipt_notify(organisation=subscription.organisation, invoice=invoice, payment=payment)
        return True
    # new: the invoice was paid just now under the lock, so its key cannot be recorded yet.
    notify_all([Event(subscription.organisation_id, Notification.Kind.RENEWED,
                      f"renewed:{invoice.number}",
                      {"number": invoice.number,
                       "amount": format_money(invoice.total,
                                              subscription.organisation.language),
                       "period_end": organisation_date(invoice.period_end,
                                                       subscription.organisation)})],
               new=True)
    return True


def renewal_payment_failed(*, subscription: Subscription, payment: Payment) -> None:
    """A renewal charge failed: past due (grace starts) or the next retry scheduled. The caller
    holds the subscription's lock.

    An attempt the processor never answered or never received (NOTHING_REFUSED) charged
    nothing and refused no card: a renewal stays active and is charged again after 15 minutes,
    then 30, 60, … (`retries_made` counts them while active), until its first retry day, when an
    outage still going makes it past due as a refusal would; a retry counts as that day's retry.
    Either way the admins are emailed only when the subscription becomes past due."""
    if subscription.open_invoice_id != payment.invoice_id:
        return
    invoice = subscription.open_invoice
    now = clock.now()
    due = invoice.period_start
    silent = payment.failure_code in NOTHING_REFUSED
    first_retry = due + dt.timedelta(days=min(settings.KANRI_DUNNING_RETRY_DAYS, default=0))
    if subscription.status == Status.ACTIVE and silent and now < first_retry:
        scheduled = subscription.next_retry_at
        if scheduled is not None and now < scheduled:
            # A Pay now that met the same outage: the retry already scheduled stays as it is.
            return
        subscription.next_retry_at = min(now + SILENT_RETRY * 2 ** subscription.retries_made,
                                         first_retry)
        subscription.retries_made += 1
        subscription_save(subscription)
        return
    became_past_due = subscription.status == Status.ACTIVE
    if became_past_due:
        subscription_transition(subscription=subscription, to=Status.PAST_DUE, actor=None,
                                reason=f"renewal {invoice.number} failed: {payment.failure_code}")
        subscription.payment_failed_at = now
        subscription.grace_ends_at = due + dt.timedelta(days=settings.KANRI_GRACE_DAYS)
        subscription.retries_made = 0
    else:
        subscription.retries_made += 1
    subscription.next_retry_at = next_retry(due=due, now=now,
                                            grace_ends=subscription.grace_ends_at)
    subscription_save(subscription)
    if silent and not became_past_due:
        return  # nothing refused, nothing new to tell: the next retry day comes as scheduled
    organisation = subscription.organisation
    with translation.override(organisation.language):
        reason = payment.reason  # in the organisation's language, not the sweep's
    # new: each attempt fails once (its payment row moved to failed under the lock).
    notify_all([Event(organisation.pk, Notification.Kind.PAYMENT_FAILED,
                      f"payment_failed:{payment.idempotency_key}",
                      {"amount": format_money(payment.amount, organisation.language),
                       "reason": reason,
                       "grace_ends": organisation_date(subscription.grace_ends_at, organisation),
                       "next_retry": organisation_date(subscription.next_retry_at, organisation)})],
               new=True)


def quote_apply_paid(*, payment: Payment, subscription: Subscription,
                     actor: User | None) -> bool:
    """Apply the quote a succeeded payment paid for, if it still fits the subscription (the
    caller holds the subscription's lock). False means it cannot be applied: refund it."""
    if payment.quote_id is None:
        return False
    quote = (Quote.objects.select_for_update(of=("self",)).select_related("plan", "organisation")
             .get(pk=payment.quote_id))
    if (quote.state == Quote.State.PAID or subscription.version != quote.subscription_version
            or licences_cover_active_users(organisation=quote.organisation,
                                           regular=quote.regular_licences,
                                           team=quote.team_licences)):
        logger.error("payment %s charged for quote %s, which no longer applies",
                     payment.idempotency_key, quote.pk)
        return False
    invoice = subscription_apply_quote(quote=quote, subscription=subscription, payment=payment,
                                       actor=actor)
    receipt_notify(organisation=quote.organisation, invoice=invoice, payment=payment)
    return True
