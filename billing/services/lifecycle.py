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
- A processor that did not answer, or an attempt never sent (its process died), is not a
  refusal (nothing was charged, no card refused): a renewal stays active and is charged again
  after 15, 30, 60, … minutes until its first retry day, then goes past due; the admins are
  emailed only when it becomes past due.
- Grace over → locked. `KANRI_LOCK_MONTHS` calendar months after locking → Free, the open
  invoice void (kept).
- A trial's admins are reminded `KANRI_TRIAL_REMINDER_DAYS` before it ends; at its end the
  organisation returns to Free unless it bought.
- A move to Free writes the licence ledger rows of the quantities it changed, one INSERT per batch
  (billing.services.ledger).
"""
import datetime as dt
import logging
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Case, Exists, F, OuterRef, Q, Value, When
from django.db.models.functions import Greatest, Least
from django.utils.translation import gettext as _

from accounts.models import ActorKind, AuditEvent, LicenceType, Organisation, Role, User
from billing import periods
from billing.declines import decline_message
from billing.entitlements_cache import entitlements_forget
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
from billing.notifications import Event, notifications_send_pending, notify_all
from billing.pricing import TaxRule
from billing.selectors import RENEWING, card_runs_out_before, free_move_after, next_charge_at
from billing.services import charging
from billing.services.invoices import (
    invoices_void,
    issue_snapshots,
    next_invoice_number,
)
from billing.services.ledger import QUANTITY_FIELDS, LedgerChange, ledger_record_many
from billing.services.payments import PayResult
from billing.services.settlement import (
    local_date,
    organisation_date,
    renewal_apply_paid,
    renewal_payment_failed,
)
from store import clock
from store.models import Plan, Price
from store.money import (
    below_minimum_charge,
    breakdown_to_json,
    format_amount,
    money_sum,
    prorate,
    tax_by_rate,
    zero,
)

logger = logging.getLogger(__name__)
BATCH = settings.KANRI_SWEEP_BATCH  # rows per transaction (a setting for ops and tests)


def _amount_due(invoice: Invoice):
    return invoice.total - invoice.credit_applied


# An open renewal invoice is owed in these states: past due or locked after a refusal, or still
# active while the processor has not answered (charged again at next_retry_at).
OWING = frozenset({Status.ACTIVE, Status.PAST_DUE, Status.LOCKED})


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
    held = [(subscription.plan_price_id, subscription.regular_licences),
            (subscription.team_price_id, subscription.team_licences),
            (subscription.storage_price_id, subscription.storage_units)]
    held = [(price_id, quantity) for price_id, quantity in held if price_id and quantity]
    # The prices with what they price, in one query (joined to the locking one, planning the
    # query costs more than running it).
    prices = Price.objects.select_related("plan", "addon").in_bulk(
        [price_id for price_id, _quantity in held])
    held = [(prices[price_id], quantity) for price_id, quantity in held]
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
        **issue_snapshots(organisation=organisation, currency=currency, plan=subscription.plan,
                          cycle=subscription.cycle))
    for line in lines:
        line.invoice = invoice
    InvoiceLine.objects.bulk_create(lines)
    if credit.amount:
        CreditEntry.objects.create(organisation=organisation, invoice=invoice,
                                   kind=CreditEntry.Kind.APPLIED, amount=-credit)
        subscription.credit_balance -= credit
    return invoice


def _lock(subscription_id: int) -> Subscription:
    """The subscription, row-locked, with its organisation. Nothing else is joined: a join to a
    row another transaction changes while this one waits (the plan of a paid change, a new
    default card, the open invoice) is re-checked by PostgreSQL against the row it read before
    waiting and no longer matches, and the locked row would not be found. The rest is read
    after the lock, as the caller needs it."""
    return (Subscription.objects.select_for_update(of=("self",))
            .select_related("organisation").get(pk=subscription_id))


def _card_problem(subscription: Subscription, now: dt.datetime) -> tuple[str, str] | None:
    method = subscription.default_payment_method
    if method is None or not subscription.processor_customer_id:
        return "no_card", _("There is no card on file.")
    if card_runs_out_before(method, now):
        return "expired_card", decline_message("expired_card")
    return None


def _open_attempt(subscription: Subscription, invoice: Invoice, now: dt.datetime, *,
                  first: bool = False):
    """Commit a renewal attempt, or record why none can be made (no card, card expired).
    `first`: the invoice was issued in this transaction, so it has no attempt yet."""
    number = 1 if first else invoice.payments.count() + 1
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
        if (subscription.status != Status.ACTIVE or subscription.current_period_end is None
                or subscription.current_period_end > now):
            return "not_due"
        # Invoiced already, and the processor did not answer (renewal_payment_failed left it
        # active, to be charged again at next_retry_at): the same invoice, a new attempt.
        if subscription.open_invoice_id is not None and (subscription.next_retry_at is None
                                                         or subscription.next_retry_at > now):
            return "not_due"
        # An attempt still open (a Pay in flight, or an answer not yet settled) may change
        # this subscription: it waits for the next run (SPEC "The books" 7).
        if Payment.objects.open_for(subscription.organisation_id).exists():
            return "payment_open"
        if subscription.open_invoice_id is not None:
            invoice = Invoice.objects.get(pk=subscription.open_invoice_id)
            payment, token = _open_attempt(subscription, invoice, now)
        else:
            invoice = _renewal_invoice(subscription, now)
            if _amount_due(invoice) <= zero(invoice.currency):
                renewal_apply_paid(subscription=subscription, invoice=invoice, payment=None)
                return "paid_by_credit"
            if below_minimum_charge(_amount_due(invoice)):  # waived, never sent (charging's)
                renewal_apply_paid(subscription=subscription, invoice=invoice, payment=None)
                charging.minimum_charge_waived(invoice=invoice, actor=None)
                return "below_minimum"
            subscription.open_invoice = invoice
            subscription.save(update_fields=["open_invoice", "credit_balance"])
            payment, token = _open_attempt(subscription, invoice, now, first=True)
    # The attempt is committed before the processor is asked (three steps): a commit that
    # fails leaves nothing charged, and no row lock is held while the processor answers.
    if payment is None:
        return "failed"
    return charging.attempt_run(payment=payment, token=token, confirm=True, actor=None,
                                customer_id=subscription.processor_customer_id).kind


def renewal_retry(*, subscription_id: int, acting_user: User | None = None,
                  scheduled: bool = True) -> Payment | None:
    """Charge the open renewal invoice again (a scheduled retry, or the admin's or support's
    Pay now). Unscheduled, it also charges a renewal still active because the processor did not
    answer (the renewals sweep would charge it again at next_retry_at)."""
    with transaction.atomic():
        subscription = _lock(subscription_id)
        now = clock.now()
        if subscription.open_invoice_id is None or subscription.status not in OWING:
            return None
        if scheduled and (subscription.status != Status.PAST_DUE
                          or subscription.next_retry_at is None
                          or subscription.next_retry_at > now):
            return None
        if Payment.objects.open_for(subscription.organisation_id).exists():
            return None
        payment, token = _open_attempt(subscription, subscription.open_invoice, now)
    if payment is None:
        return Payment.objects.filter(invoice_id=subscription.open_invoice_id).first()
    charging.attempt_run(payment=payment, token=token, confirm=True, actor=acting_user,
                         customer_id=subscription.processor_customer_id)
    payment.refresh_from_db()
    return payment


def renewal_pay_now(*, organisation: Organisation, acting_user: User):
    """サブスクリプションの更新 / Renew subscription: pay the open renewal invoice now."""
    charging.payments_settle_open(organisation=organisation, actor=acting_user)
    subscription = Subscription.objects.get(organisation=organisation)
    if subscription.open_invoice_id is None:
        raise BillingError(_("There is no unpaid invoice to pay."), code="no_open_invoice")
    if Payment.objects.open_for(organisation.pk).exists():
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
    now = clock.now()
    # Or invoiced already, the processor silent, and its time to charge again come.
    due = Subscription.objects.filter(Q(open_invoice=None) | Q(next_retry_at__lte=now),
                                      status=Status.ACTIVE, current_period_end__lte=now)
    for subscription_id in _ids(due):
        try:
            outcome = subscription_renew(subscription_id=subscription_id)
        except Exception:
            # One failing row never stops the sweep for the others (SPEC "The books" 7): its
            # transaction rolled back, so it is still due and the next run tries it again.
            logger.exception("renewal of subscription %s failed; retried next run",
                             subscription_id)
            outcome = "error"
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def sweep_retries() -> dict:
    charging.payments_settle_open()
    now = clock.now()
    counts = {"retried": 0}
    due = Subscription.objects.filter(status=Status.PAST_DUE, next_retry_at__lte=now,
                                      grace_ends_at__gt=now)
    for subscription_id in _ids(due):
        try:
            if renewal_retry(subscription_id=subscription_id) is not None:
                counts["retried"] += 1
        except Exception:
            # As in sweep_renewals: logged, and still due at the next run.
            logger.exception("retry of subscription %s failed; retried next run",
                             subscription_id)
            counts["error"] = counts.get("error", 0) + 1
    return counts


# The organisation has an attempt whose outcome is not known yet: set-based sweeps leave such a
# row for their next run (SPEC "The books" 7), since the payment may still change it.
PAYMENT_OPEN = Exists(Payment.objects.open().filter(organisation_id=OuterRef("organisation_id")))


def _batched(queryset, fields: tuple[str, ...], work) -> int:
    """Lock due rows a batch at a time (skipping rows others hold), in primary-key order with a
    cursor, and apply `work` to each batch in its own transaction; returns how many moved.

    A batch is a list of dicts (`id`, `status` and `fields`, which may follow foreign keys), not
    model objects: at 100,000 rows building objects costs more than the database's work. `work`
    runs a constant number of statements per batch, whatever its size."""
    moved, after = 0, 0
    while True:
        with transaction.atomic():
            batch = list(queryset.filter(pk__gt=after)
                         .select_for_update(skip_locked=True, of=("self",))
                         .order_by("pk").values("id", "status", *fields)[:BATCH])
            if not batch:
                return moved
            after = batch[-1]["id"]
            moved += work(batch)


def _move(batch: list[dict], to: str, reason: str, now: dt.datetime, **changes) -> None:
    """Move locked rows to `to` in one UPDATE, with one history row each (one INSERT). The
    caller holds the rows' locks; each row has its `organisation_id`."""
    SubscriptionStatusChange.objects.bulk_create(
        SubscriptionStatusChange(subscription_id=row["id"], from_status=row["status"],
                                 to_status=to, actor=None, actor_kind="system", reason=reason,
                                 created_at=now)
        for row in batch)
    Subscription.objects.filter(pk__in=[row["id"] for row in batch]).update(
        status=to, version=F("version") + 1, updated_at=now, **changes)
    # The UPDATE sends no signal: forget the batch's entitlements here (one cache call, no SQL).
    entitlements_forget(row["organisation_id"] for row in batch)


def sweep_locks() -> dict:
    """Grace over and still unpaid → locked."""
    now = clock.now()

    def lock(batch):
        _move(batch, Status.LOCKED, "grace period over, renewal unpaid", now,
              locked_at=now, next_retry_at=None)
        events = []
        for row in batch:
            language, zone = row["organisation__language"], row["organisation__time_zone"]
            amount = (format_amount(row["open_invoice__total"]
                                    - row["open_invoice__credit_applied"],
                                    row["open_invoice__total_currency"], language)
                      if row["open_invoice_id"] else "")
            events.append(Event(
                row["organisation_id"], Notification.Kind.LOCKED,
                f"locked:{row['id']}:{row['open_invoice_id']}",
                {"amount": amount,
                 "free_on": local_date(free_move_after(locked_at=now, time_zone=zone), zone)}))
        notify_all(events, new=True)
        return len(batch)

    return {"locked": _batched(
        Subscription.objects.filter(status=Status.PAST_DUE, grace_ends_at__lte=now)
        .exclude(PAYMENT_OPEN),
        ("organisation_id", "organisation__language", "organisation__time_zone",
         "open_invoice_id", "open_invoice__total", "open_invoice__total_currency",
         "open_invoice__credit_applied"), lock)}


def _free_changes(free: Plan) -> dict:
    """What moving to Free sets, as one UPDATE's values: Free's plan and user limit, nothing
    bought, no period, no dunning. `_free_quantities` is the same rule for the ledger."""
    return {
        "plan": free, "regular_licences": Greatest(Value(1), Least(F("regular_licences"),
                                                                   Value(free.max_users or 1))),
        "team_licences": 0, "storage_units": 0, "plan_price": None, "team_price": None,
        "storage_price": None, "current_period_start": None, "current_period_end": None,
        "billing_anchor": None, "paid_invoice": None, "open_invoice": None,
        "payment_failed_at": None, "grace_ends_at": None, "next_retry_at": None,
        "locked_at": None, "trial_ends_at": None,
    }


def _free_quantities(row: dict, free: Plan) -> dict:
    """A row's quantities after `_free_changes`' UPDATE, computed the way the UPDATE does."""
    return {"regular_licences": max(1, min(row["regular_licences"], free.max_users or 1)),
            "team_licences": 0, "storage_units": 0}


def _move_to_free(batch: list[dict], reason: str, now: dt.datetime,
                  free: Plan) -> dict[int, list[str]]:
    """Move a batch to Free (one UPDATE, one history INSERT; the caller holds the rows' locks)
    with a ledger row per quantity that changed (one INSERT for the batch, none when none did),
    and deactivate the users Free has no licence for. Returns who was deactivated, by
    organisation id, as the admins' email names them."""
    ledger_record_many(
        (LedgerChange(row["id"], row["organisation_id"],
                      {field: row[field] for field in QUANTITY_FIELDS},
                      _free_quantities(row, free))
         for row in batch), reason=reason, now=now)
    _move(batch, Status.FREE, reason, now, **_free_changes(free))
    return _deactivate_over_free(batch, reason, now, free)


def _deactivate_over_free(batch: list[dict], reason: str, now: dt.datetime,
                          free: Plan) -> dict[int, list[str]]:
    """Active users never exceed licences (SPEC "The books" 6): on Free, the admins and then the
    longest-standing active users keep a licence of their type, the rest are deactivated and
    audited (SPEC "Automatic move to Free"). A constant number of statements per batch."""
    limits = {row["organisation_id"]: {LicenceType.REGULAR: _free_quantities(row, free)[
        "regular_licences"], LicenceType.TEAM: 0} for row in batch}
    # People changes lock the organisation after the subscription (accounts.services' order):
    # none interleaves with the count below.
    list(Organisation.objects.select_for_update(no_key=True).filter(pk__in=limits)
         .values_list("pk", flat=True))
    users = (User.objects.filter(organisation_id__in=limits, is_active=True)
             .order_by("organisation_id",
                       Case(When(role=Role.ADMIN, then=Value(0)), default=Value(1)),
                       "date_joined", "pk")
             .values("pk", "organisation_id", "role", "licence_type", "email", "name"))
    kept: dict[tuple[int, str], int] = {}
    over = []
    for user in users:
        place = (user["organisation_id"], user["licence_type"])
        if kept.get(place, 0) < limits[user["organisation_id"]][user["licence_type"]]:
            kept[place] = kept.get(place, 0) + 1
        else:
            over.append(user)
    if not over:
        return {}
    User.objects.filter(pk__in=[user["pk"] for user in over]).update(is_active=False)
    AuditEvent.objects.bulk_create(
        AuditEvent(organisation_id=user["organisation_id"], actor=None,
                   actor_kind=ActorKind.SYSTEM, actor_label="system", action="user.deactivated",
                   target_type=User._meta.label_lower, target_id=str(user["pk"]),
                   before={"role": user["role"], "licence_type": user["licence_type"],
                           "is_active": True},
                   after={"role": user["role"], "licence_type": user["licence_type"],
                          "is_active": False},
                   reason=f"{reason}: no {user['licence_type']} licence left on Free",
                   created_at=now)
        for user in over)
    named: dict[int, list[str]] = {}
    for user in over:
        named.setdefault(user["organisation_id"], []).append(
            f"{user['name']} ({user['email']})" if user["name"] else user["email"])
    return named


def sweep_moves_to_free() -> dict:
    """Locked for KANRI_LOCK_MONTHS calendar months with no choice made → Free, invoice void."""
    now = clock.now()
    free = Plan.objects.get(code="free")
    # Calendar months are at least 28 days each: a cheap bound for the query, exact per row.
    candidates = Subscription.objects.filter(
        status=Status.LOCKED,
        locked_at__lte=now - dt.timedelta(days=28 * settings.KANRI_LOCK_MONTHS)
    ).exclude(PAYMENT_OPEN)

    def move(batch):
        due = [row for row in batch
               if free_move_after(locked_at=row["locked_at"],
                                  time_zone=row["organisation__time_zone"]) <= now]
        if not due:
            return 0
        returned = invoices_void(invoice_ids=[row["open_invoice_id"] for row in due
                                              if row["open_invoice_id"]])
        deactivated = _move_to_free(due, "locked for too long: moved to Free", now, free)
        # The credit the void invoices spent is the accounts' again (rare: one UPDATE each).
        for subscription_id, amount in returned.items():
            Subscription.objects.filter(pk=subscription_id).update(
                credit_balance=F("credit_balance") + amount.amount)
        notify_all([Event(row["organisation_id"], Notification.Kind.MOVED_TO_FREE,
                          f"moved_to_free:{row['id']}:{row['open_invoice__number'] or ''}",
                          {"number": row["open_invoice__number"] or "",
                           "deactivated": deactivated.get(row["organisation_id"], [])})
                    for row in due], new=True)
        return len(due)

    return {"moved_to_free": _batched(
        candidates, ("organisation_id", "organisation__time_zone", "locked_at",
                     "open_invoice_id", "open_invoice__number", *QUANTITY_FIELDS), move)}


# What a trial's emails read of its row: the plan's name in the organisation's language.
TRIAL_FIELDS = ("organisation_id", "organisation__language", "organisation__time_zone",
                "plan__code", "plan__name", "plan__name_ja", "trial_ends_at")


def _plan_name(row: dict) -> str:
    return row["plan__name_ja"] if row["organisation__language"] == "ja" else row["plan__name"]


def sweep_trial_reminders() -> dict:
    """Trials ending within KANRI_TRIAL_REMINDER_DAYS: remind the admins, once per trial."""
    now = clock.now()
    window = now + dt.timedelta(days=settings.KANRI_TRIAL_REMINDER_DAYS)
    trials = list(Subscription.objects.filter(status=Status.TRIALING, trial_ends_at__gt=now,
                                              trial_ends_at__lte=window)
                  .order_by("pk").values("id", *TRIAL_FIELDS))
    sent = 0
    for start in range(0, len(trials), BATCH):
        with transaction.atomic():
            sent += notify_all([
                Event(row["organisation_id"], Notification.Kind.TRIAL_ENDING,
                      f"trial_ending:{row['id']}:{row['plan__code']}",
                      {"plan": _plan_name(row),
                       "ends": local_date(row["trial_ends_at"], row["organisation__time_zone"])})
                for row in trials[start:start + BATCH]])
    return {"reminded": sent}


def sweep_trial_ends() -> dict:
    """A trial over without a purchase → back to Free (the plan held before every trial)."""
    now = clock.now()
    free = Plan.objects.get(code="free")

    def end(batch):
        _move_to_free(batch, "trial ended without a purchase", now, free)
        notify_all([Event(row["organisation_id"], Notification.Kind.TRIAL_ENDED,
                          f"trial_ended:{row['id']}:{row['plan__code']}",
                          {"plan": _plan_name(row)})
                    for row in batch], new=True)
        return len(batch)

    return {"trials_ended": _batched(
        Subscription.objects.filter(status=Status.TRIALING, trial_ends_at__lte=now)
        .exclude(PAYMENT_OPEN),
        (*TRIAL_FIELDS, *QUANTITY_FIELDS), end)}


def sweep_grace_reminders() -> dict:
    """Past due with the grace period ending within KANRI_GRACE_REMINDER_DAYS: remind the admins
    once per open invoice that the account locks then."""
    now = clock.now()
    due = list(Subscription.objects.filter(
        status=Status.PAST_DUE, grace_ends_at__gt=now,
        grace_ends_at__lte=now + dt.timedelta(days=settings.KANRI_GRACE_REMINDER_DAYS))
        .order_by("pk").values("id", "organisation_id", "organisation__language",
                               "organisation__time_zone", "grace_ends_at", "open_invoice_id",
                               "open_invoice__total", "open_invoice__total_currency",
                               "open_invoice__credit_applied"))
    sent = 0
    for start in range(0, len(due), BATCH):
        with transaction.atomic():
            sent += notify_all([
                Event(row["organisation_id"], Notification.Kind.GRACE_ENDING,
                      f"grace_ending:{row['id']}:{row['open_invoice_id']}",
                      {"grace_ends": local_date(row["grace_ends_at"],
                                                 row["organisation__time_zone"]),
                       "amount": format_amount(row["open_invoice__total"]
                                               - row["open_invoice__credit_applied"],
                                               row["open_invoice__total_currency"],
                                               row["organisation__language"])
                       if row["open_invoice_id"] else ""})
                for row in due[start:start + BATCH]])
    return {"reminded": sent}


def sweep_card_expiry_reminders() -> dict:
    """A renewing subscription whose default card will have expired by its next charge, due
    within KANRI_CARD_EXPIRY_NOTICE_DAYS: tell the admins once per card and expiry."""
    now = clock.now()
    horizon = now + dt.timedelta(days=settings.KANRI_CARD_EXPIRY_NOTICE_DAYS)
    # Cards that expire by the horizon's month at the latest: a small indexed set, exact below.
    candidates = (Subscription.objects.filter(status__in=RENEWING)
                  .exclude(default_payment_method=None)
                  .filter(Q(default_payment_method__exp_year__lt=horizon.year)
                          | Q(default_payment_method__exp_year=horizon.year,
                              default_payment_method__exp_month__lte=horizon.month))
                  .select_related("organisation", "default_payment_method").order_by("pk"))
    events = []
    for subscription in candidates:
        charge_at, card = next_charge_at(subscription), subscription.default_payment_method
        if charge_at is None or charge_at > horizon or not card_runs_out_before(card, charge_at):
            continue
        organisation = subscription.organisation
        events.append(Event(organisation.pk, Notification.Kind.CARD_EXPIRING,
                            f"card_expiring:{card.pk}:{card.exp_year}-{card.exp_month:02d}",
                            {"card": f"{card.brand_label} •••• {card.last4}",
                             "expiry": f"{card.exp_month:02d}/{card.exp_year}",
                             "next_charge": organisation_date(charge_at, organisation)}))
    sent = 0
    for start in range(0, len(events), BATCH):
        with transaction.atomic():
            sent += notify_all(events[start:start + BATCH])
    return {"reminded": sent}


SWEEPS = {"trial_reminders": sweep_trial_reminders, "trial_ends": sweep_trial_ends,
          "renewals": sweep_renewals, "retries": sweep_retries, "locks": sweep_locks,
          "moves_to_free": sweep_moves_to_free, "grace_reminders": sweep_grace_reminders,
          "card_expiry_reminders": sweep_card_expiry_reminders,
          "unsent_emails": notifications_send_pending}

