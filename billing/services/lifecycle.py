"""The subscription's life without a person: renewals, dunning, the lock, the move to Free, and
trials ending. Beat runs each sweep (billing.tasks); `manage.py run_billing_jobs` runs them now.

Every sweep selects what is due with one query and works under row locks, re-checking the state,
so it is safe to run twice, concurrently, or after a crash: each transition happens once (the
status filter), each email once (Notification keys), each charge at most once (an attempt per
invoice and number, committed before the processor is called; an attempt a crash left open is
settled by `payments_settle_open`, which every charging sweep runs first).

Rules (SPEC "Subscription states"; periods from `billing.periods`):
- A renewal invoices the next period at the price versions the subscription pays (a new catalog
  price applies when the customer changes plan, not silently at renewal), with tax at the rate in
  force at renewal, account credit first; the rest is charged to the default card.
- A failed renewal makes the subscription past due: grace ends `KANRI_GRACE_DAYS` after the due
  date; retries on the `KANRI_DUNNING_RETRY_DAYS` days after it. Paid at any point → active, and
  the period runs from the due date (no time is lost or gained).
- Grace over → locked. `KANRI_LOCK_MONTHS` calendar months after locking → Free, the open
  invoice void (kept).
- A trial's admins are reminded `KANRI_TRIAL_REMINDER_DAYS` before it ends; at its end the
  organisation returns to Free unless it bought.
"""
import datetime as dt
import logging
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext as _

from accounts.models import Organisation, User
from billing import periods
from billing.declines import decline_message
from billing.errors import BillingError
from billing.models import (
    CreditEntry,
    Invoice,
    InvoiceLine,
    Notification,
    Payment,
    Status,
    Subscription,
    SubscriptionStatusChange,
)
from billing.models.quotes import LineKind
from billing.notifications import notify
from billing.pricing import TaxRule
from billing.selectors import free_move_at
from billing.services import charging
from billing.services.invoices import issue_snapshots, next_invoice_number
from billing.services.subscriptions import subscription_save, subscription_transition
from store import clock
from store.models import Plan
from store.money import breakdown_to_json, format_money, money_sum, prorate, tax_by_rate, zero

logger = logging.getLogger(__name__)
BATCH = 500


def _date(moment: dt.datetime | None, organisation: Organisation) -> str:
    if moment is None:
        return ""
    return moment.astimezone(ZoneInfo(organisation.time_zone)).strftime("%Y-%m-%d")


def _amount_due(invoice: Invoice):
    return invoice.total - invoice.credit_applied


def free_on(subscription: Subscription) -> dt.datetime | None:
    """When a locked subscription moves to Free by itself (the one rule, in the selectors)."""
    return free_move_at(subscription=subscription,
                        time_zone=subscription.organisation.time_zone)


def next_retry(*, due: dt.datetime, now: dt.datetime, grace_ends: dt.datetime):
    """The first scheduled retry day after now, inside the grace period (None when none is)."""
    for day in sorted(settings.KANRI_DUNNING_RETRY_DAYS):
        moment = due + dt.timedelta(days=day)
        if now < moment < grace_ends:
            return moment
    return None


# Renewals -------------------------------------------------------------------------------------

def _renewal_invoice(subscription: Subscription, now: dt.datetime) -> Invoice:
    """The open invoice for the period after the current one (caller holds the row lock)."""
    organisation, currency = subscription.organisation, subscription.currency
    start, end = periods.period_at(anchor=subscription.billing_anchor
                                   or subscription.current_period_start,
                                   cycle=subscription.cycle,
                                   moment=subscription.current_period_end,
                                   time_zone=organisation.time_zone)
    rule = TaxRule.current(currency)
    held = [(subscription.plan_price, subscription.regular_licences),
            (subscription.team_price, subscription.team_licences),
            (subscription.storage_price, subscription.storage_units)]
    held = [(price, quantity) for price, quantity in held if price and quantity]
    lines = [InvoiceLine(kind=LineKind.CHARGE, price=price, plan=price.plan, addon=price.addon,
                         quantity=quantity, unit_amount=price.amount, fraction=Decimal(1),
                         amount=prorate(price.amount, quantity, Decimal(1)),
                         period_start=start, period_end=end, tax_rate=rule.rate,
                         item_name=(price.plan or price.addon).name,
                         item_name_ja=(price.plan or price.addon).name_ja)
             for price, quantity in held]
    subtotal = money_sum((line.amount for line in lines), currency)
    taxes = tax_by_rate([(line.tax_rate, line.amount) for line in lines], rule.rounding, currency)
    tax = money_sum((group["tax"] for group in taxes), currency)
    total = subtotal + tax
    credit = min(subscription.credit_balance, total)
    invoice = Invoice.objects.create(
        number=next_invoice_number(), organisation=organisation, subscription=subscription,
        state=Invoice.State.OPEN, kind=Invoice.Kind.RENEWAL, period_start=start, period_end=end,
        currency=currency, subtotal=subtotal, tax_rate=rule.rate, tax_rounding=rule.rounding,
        tax_breakdown=breakdown_to_json(taxes), tax=tax, total=total, credit_applied=credit,
        amount_paid=zero(currency), credit_to_account=zero(currency), issued_at=now,
        **issue_snapshots(organisation=organisation, currency=currency, plan=subscription.plan))
    for line in lines:
        line.invoice = invoice
    InvoiceLine.objects.bulk_create(lines)
    if credit.amount:
        CreditEntry.objects.create(organisation=organisation, invoice=invoice,
                                   kind=CreditEntry.Kind.APPLIED, amount=-credit)
        subscription.credit_balance -= credit
    return invoice


def _lock(subscription_id: int) -> Subscription:
    return (Subscription.objects.select_for_update(of=("self",))
            .select_related("organisation", "plan", "plan_price", "team_price",
                            "storage_price", "default_payment_method", "open_invoice")
            .get(pk=subscription_id))


def _card_problem(subscription: Subscription, now: dt.datetime) -> tuple[str, str] | None:
    method = subscription.default_payment_method
    if method is None or not subscription.processor_customer_id:
        return "no_card", _("There is no card on file.")
    local = now.astimezone(dt.UTC)
    if (method.exp_year, method.exp_month) < (local.year, local.month):
        return "expired_card", decline_message("expired_card")
    return None


def _open_attempt(subscription: Subscription, invoice: Invoice, now: dt.datetime):
    """Commit a renewal attempt, or record why none can be made (no card, card expired)."""
    number = invoice.payments.count() + 1
    key = f"invoice:{invoice.pk}:attempt:{number}"
    problem = _card_problem(subscription, now)
    if problem:
        code, reason = problem
        payment = Payment.objects.create(
            organisation=subscription.organisation, invoice=invoice, idempotency_key=key,
            amount=_amount_due(invoice), state=Payment.State.FAILED, failure_code=code,
            failure_reason=str(reason), settled_at=now)
        renewal_payment_failed(subscription=subscription, payment=payment)
        return None, None
    return charging.attempt_open(organisation=subscription.organisation, key=key,
                                 amount=_amount_due(invoice),
                                 method=subscription.default_payment_method, invoice=invoice)


def subscription_renew(*, subscription_id: int) -> str:
    """Invoice the next period of a subscription whose paid period has ended, and charge it."""
    with transaction.atomic():
        subscription = _lock(subscription_id)
        now = clock.now()
        if (subscription.status != Status.ACTIVE or subscription.open_invoice_id
                or subscription.current_period_end is None
                or subscription.current_period_end > now):
            return "not_due"
        invoice = _renewal_invoice(subscription, now)
        if _amount_due(invoice) <= zero(invoice.currency):
            renewal_apply_paid(subscription=subscription, invoice=invoice, payment=None)
            return "paid_by_credit"
        subscription.open_invoice = invoice
        subscription.save(update_fields=["open_invoice", "credit_balance"])
        payment, token = _open_attempt(subscription, invoice, now)
    if payment is None:
        return "failed"
    return charging.attempt_run(payment=payment, token=token, confirm=True, actor=None).kind


def renewal_apply_paid(*, subscription: Subscription, invoice: Invoice,
                       payment: Payment | None) -> bool:
    """The renewal invoice is paid: the period it pays for starts, dunning ends. The caller holds
    the subscription's lock. False when the invoice is no longer owed (void): refund."""
    if invoice.state != Invoice.State.OPEN and payment is not None:
        return False
    now = clock.now()
    invoice.state, invoice.paid_at = Invoice.State.PAID, now
    invoice.amount_paid = payment.amount if payment else zero(invoice.currency)
    invoice.save(update_fields=["state", "paid_at", "amount_paid"])
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
    notify(organisation=subscription.organisation, kind=Notification.Kind.RENEWED,
           key=f"renewed:{invoice.number}",
           context={"number": invoice.number,
                    "amount": format_money(invoice.total, subscription.organisation.language),
                    "period_end": _date(invoice.period_end, subscription.organisation)})
    return True


def renewal_payment_failed(*, subscription: Subscription, payment: Payment) -> None:
    """A renewal charge failed: past due (grace starts) or the next retry scheduled. The caller
    holds the subscription's lock."""
    if subscription.open_invoice_id != payment.invoice_id:
        return
    invoice = subscription.open_invoice
    now = clock.now()
    due = invoice.period_start
    if subscription.status == Status.ACTIVE:
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
    organisation = subscription.organisation
    notify(organisation=organisation, kind=Notification.Kind.PAYMENT_FAILED,
           key=f"payment_failed:{payment.idempotency_key}",
           context={"amount": format_money(payment.amount, organisation.language),
                    "reason": payment.failure_reason,
                    "grace_ends": _date(subscription.grace_ends_at, organisation),
                    "next_retry": _date(subscription.next_retry_at, organisation)})


def renewal_retry(*, subscription_id: int, acting_user: User | None = None,
                  scheduled: bool = True) -> Payment | None:
    """Charge the open renewal invoice again (a scheduled retry, or the admin's Pay now)."""
    with transaction.atomic():
        subscription = _lock(subscription_id)
        now = clock.now()
        if subscription.open_invoice_id is None or subscription.status not in {
                Status.PAST_DUE, Status.LOCKED}:
            return None
        if scheduled and (subscription.status != Status.PAST_DUE
                          or subscription.next_retry_at is None
                          or subscription.next_retry_at > now):
            return None
        if Payment.objects.filter(organisation=subscription.organisation,
                                  state__in=Payment.OPEN).exists():
            return None
        payment, token = _open_attempt(subscription, subscription.open_invoice, now)
    if payment is None:
        return Payment.objects.filter(invoice_id=subscription.open_invoice_id).first()
    charging.attempt_run(payment=payment, token=token, confirm=True, actor=acting_user)
    payment.refresh_from_db()
    return payment


def renewal_pay_now(*, organisation: Organisation, acting_user: User):
    """サブスクリプションの更新 / Renew subscription: pay the open renewal invoice now."""
    from billing.services.payments import PayResult

    charging.payments_settle_open(organisation=organisation, actor=acting_user)
    subscription = Subscription.objects.get(organisation=organisation)
    if subscription.open_invoice_id is None:
        raise BillingError(_("There is no unpaid invoice to pay."), code="no_open_invoice")
    if Payment.objects.filter(organisation=organisation, state__in=Payment.OPEN).exists():
        return PayResult(invoice=None, pending=True, code="payment_pending", failure=_(
            "A payment is being confirmed with the payment service. Try again in a minute."))
    payment = renewal_retry(subscription_id=subscription.pk, acting_user=acting_user,
                            scheduled=False)
    if payment is None:
        raise BillingError(_("There is no unpaid invoice to pay."), code="no_open_invoice")
    if payment.state == Payment.State.SUCCEEDED:
        return PayResult(invoice=payment.invoice, charged=True)
    if payment.state == Payment.State.FAILED:
        return PayResult(invoice=None, failure=payment.failure_reason, code=payment.failure_code)
    return PayResult(invoice=None, pending=True, code="payment_pending",
                     failure=charging.unknown_outcome_message())


# Sweeps ---------------------------------------------------------------------------------------

def _ids(queryset) -> list[int]:
    return list(queryset.order_by("pk").values_list("pk", flat=True))


def sweep_renewals() -> dict:
    charging.payments_settle_open()
    counts: dict[str, int] = {}
    due = Subscription.objects.filter(status=Status.ACTIVE, open_invoice=None,
                                      current_period_end__lte=clock.now())
    for subscription_id in _ids(due):
        outcome = subscription_renew(subscription_id=subscription_id)
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def sweep_retries() -> dict:
    charging.payments_settle_open()
    now = clock.now()
    counts = {"retried": 0}
    due = Subscription.objects.filter(status=Status.PAST_DUE, next_retry_at__lte=now,
                                      grace_ends_at__gt=now)
    for subscription_id in _ids(due):
        if renewal_retry(subscription_id=subscription_id) is not None:
            counts["retried"] += 1
    return counts


def _batched(queryset, work) -> int:
    """Lock due rows a batch at a time (skipping rows others hold), in primary-key order with a
    cursor, and apply `work` to each batch in its own transaction; returns how many moved."""
    moved, after = 0, 0
    while True:
        with transaction.atomic():
            batch = list(queryset.filter(pk__gt=after)
                         .select_for_update(skip_locked=True, of=("self",))
                         .select_related("organisation", "open_invoice", "plan")
                         .order_by("pk")[:BATCH])
            if not batch:
                return moved
            after = batch[-1].pk
            moved += work(batch)


def _move(batch: list[Subscription], to: str, reason: str, now: dt.datetime) -> None:
    SubscriptionStatusChange.objects.bulk_create(
        SubscriptionStatusChange(subscription=subscription, from_status=subscription.status,
                                 to_status=to, actor=None, actor_kind="system", reason=reason,
                                 created_at=now)
        for subscription in batch)
    for subscription in batch:
        subscription.status = to
        subscription.version += 1
        subscription.updated_at = now


def sweep_locks() -> dict:
    """Grace over and still unpaid → locked."""
    now = clock.now()

    def lock(batch):
        _move(batch, Status.LOCKED, "grace period over, renewal unpaid", now)
        for subscription in batch:
            subscription.locked_at, subscription.next_retry_at = now, None
        Subscription.objects.bulk_update(batch, ["status", "version", "updated_at",
                                                 "locked_at", "next_retry_at"])
        for subscription in batch:
            organisation = subscription.organisation
            notify(organisation=organisation, kind=Notification.Kind.LOCKED,
                   key=f"locked:{subscription.pk}:{subscription.open_invoice_id}",
                   context={"amount": format_money(_amount_due(subscription.open_invoice),
                                                   organisation.language)
                            if subscription.open_invoice else "",
                            "free_on": _date(free_on(subscription), organisation)})
        return len(batch)

    return {"locked": _batched(Subscription.objects.filter(
        status=Status.PAST_DUE, grace_ends_at__lte=now), lock)}


def _to_free(subscription: Subscription, free: Plan) -> None:
    subscription.plan = free
    subscription.regular_licences = max(1, min(subscription.regular_licences,
                                               free.max_users or 1))
    subscription.team_licences = subscription.storage_units = 0
    subscription.plan_price = subscription.team_price = subscription.storage_price = None
    subscription.current_period_start = subscription.current_period_end = None
    subscription.billing_anchor = subscription.paid_invoice = subscription.open_invoice = None
    subscription.payment_failed_at = subscription.grace_ends_at = None
    subscription.next_retry_at = subscription.locked_at = subscription.trial_ends_at = None


FREE_FIELDS = ["plan", "regular_licences", "team_licences", "storage_units", "plan_price",
               "team_price", "storage_price", "current_period_start", "current_period_end",
               "billing_anchor", "paid_invoice", "open_invoice", "payment_failed_at",
               "grace_ends_at", "next_retry_at", "locked_at", "trial_ends_at", "status",
               "version", "updated_at"]


def sweep_moves_to_free() -> dict:
    """Locked for KANRI_LOCK_MONTHS calendar months with no choice made → Free, invoice void."""
    now = clock.now()
    free = Plan.objects.get(code="free")
    # Calendar months are at least 28 days each: a cheap bound for the query, exact per row.
    candidates = Subscription.objects.filter(
        status=Status.LOCKED,
        locked_at__lte=now - dt.timedelta(days=28 * settings.KANRI_LOCK_MONTHS))

    def move(batch):
        due = [subscription for subscription in batch if free_on(subscription) <= now]
        invoices = [subscription.open_invoice for subscription in due
                    if subscription.open_invoice]
        _move(due, Status.FREE, "locked for too long: moved to Free", now)
        for invoice in invoices:
            invoice.state, invoice.voided_at = Invoice.State.VOID, now
        Invoice.objects.bulk_update(invoices, ["state", "voided_at"])
        numbers = {subscription.pk: subscription.open_invoice.number
                   for subscription in due if subscription.open_invoice}
        for subscription in due:
            _to_free(subscription, free)
        Subscription.objects.bulk_update(due, FREE_FIELDS)
        for subscription in due:
            notify(organisation=subscription.organisation,
                   kind=Notification.Kind.MOVED_TO_FREE,
                   key=f"moved_to_free:{subscription.pk}:{numbers.get(subscription.pk, '')}",
                   context={"number": numbers.get(subscription.pk, "")})
        return len(due)

    return {"moved_to_free": _batched(candidates, move)}


def sweep_trial_reminders() -> dict:
    now = clock.now()
    window = now + dt.timedelta(days=settings.KANRI_TRIAL_REMINDER_DAYS)
    sent = 0
    trials = (Subscription.objects.filter(status=Status.TRIALING, trial_ends_at__gt=now,
                                          trial_ends_at__lte=window)
              .select_related("organisation", "plan"))
    for subscription in trials:
        organisation = subscription.organisation
        with transaction.atomic():
            sent += notify(organisation=organisation, kind=Notification.Kind.TRIAL_ENDING,
                           key=f"trial_ending:{subscription.pk}:{subscription.plan.code}",
                           context={"plan": subscription.plan.name_ja
                                    if organisation.language == "ja" else subscription.plan.name,
                                    "ends": _date(subscription.trial_ends_at, organisation)})
    return {"reminded": sent}


def sweep_trial_ends() -> dict:
    """A trial over without a purchase → back to Free (the plan held before every trial)."""
    now = clock.now()
    free = Plan.objects.get(code="free")

    def end(batch):
        plans = {subscription.pk: subscription.plan for subscription in batch}
        _move(batch, Status.FREE, "trial ended without a purchase", now)
        for subscription in batch:
            _to_free(subscription, free)
        Subscription.objects.bulk_update(batch, FREE_FIELDS)
        for subscription in batch:
            organisation, plan = subscription.organisation, plans[subscription.pk]
            notify(organisation=organisation, kind=Notification.Kind.TRIAL_ENDED,
                   key=f"trial_ended:{subscription.pk}:{plan.code}",
                   context={"plan": plan.name_ja if organisation.language == "ja"
                            else plan.name})
        return len(batch)

    return {"trials_ended": _batched(Subscription.objects.filter(
        status=Status.TRIALING, trial_ends_at__lte=now), end)}


SWEEPS = {"trial_reminders": sweep_trial_reminders, "trial_ends": sweep_trial_ends,
          "renewals": sweep_renewals, "retries": sweep_retries, "locks": sweep_locks,
          "moves_to_free": sweep_moves_to_free}

