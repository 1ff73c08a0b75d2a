"""Billing's reads, always scoped to one organisation."""
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.paginator import Paginator
from django.db.models import Count, Q, QuerySet, TextChoices
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.translation import get_language, ngettext
from django.utils.translation import gettext_lazy as _
from djmoney.money import Money

from accounts.models import AuditEvent, LicenceType, Organisation
from billing import periods
from billing.models import (
    CreditEntry,
    CreditNote,
    Invoice,
    Payment,
    PaymentMethod,
    Quote,
    Status,
    Subscription,
    TrialUse,
)
from billing.models.payments import PaymentDisplay
from store import clock
from store.models import Plan
from store.money import format_money, money_sum, prorate, tax_on, zero
from store.prepared import Prepared
from store.selectors import prices_by_id


@dataclass(frozen=True)
class DunningTimeline:
    """What comes next for an unpaid renewal, as dates on the organisation's clock."""

    payment_failed_on: dt.date | None
    next_retry_on: dt.date | None  # None once every retry was made
    grace_ends_on: dt.date | None  # the account locks then
    locked_on: dt.date | None
    moves_to_free_on: dt.date | None


@dataclass(frozen=True)
class Overview:
    subscription: Subscription
    next_renewal_amount: Money | None
    invoices: list[Invoice]
    open_payment: Payment | None  # a payment whose outcome is not known yet
    dunning: DunningTimeline | None  # past due or locked only
    ended_trial: TrialUse | None = None  # a trial that just ended, leaving Free
    card_runs_out: bool = False  # the default card expires before the next charge


@dataclass(frozen=True)
class LockOverview:
    """The lock screen: what happened, what is owed, and when the account moves to Free."""

    subscription: Subscription
    open_invoice: Invoice | None
    amount_due: Money | None  # the open invoice's total less the credit already applied
    dunning: DunningTimeline


def free_move_at(*, subscription: Subscription, time_zone: str) -> dt.datetime | None:
    """When a locked (or, once its grace ends, a past-due) subscription moves to Free:
    KANRI_LOCK_MONTHS calendar months after the lock (SPEC: 2), month ends clamped, on the
    organisation's clock."""
    return free_move_after(locked_at=subscription.locked_at
                           if subscription.status == Status.LOCKED
                           else subscription.grace_ends_at, time_zone=time_zone)


def free_move_after(*, locked_at: dt.datetime | None, time_zone: str) -> dt.datetime | None:
    """The rule itself: KANRI_LOCK_MONTHS calendar months after `locked_at`, on `time_zone`."""
    if locked_at is None:
        return None
    return periods.boundary(anchor=locked_at, cycle="monthly",
                            index=settings.KANRI_LOCK_MONTHS, time_zone=time_zone)


def dunning_timeline(subscription: Subscription) -> DunningTimeline | None:
    """The dates of a past-due or locked subscription, or None in any other status. Reads the
    organisation's time zone from `subscription.organisation` (select it with the row)."""
    if subscription.status not in {Status.PAST_DUE, Status.LOCKED}:
        return None
    time_zone = subscription.organisation.time_zone
    zone = ZoneInfo(time_zone)

    def day(moment: dt.datetime | None) -> dt.date | None:
        return moment.astimezone(zone).date() if moment else None

    return DunningTimeline(
        payment_failed_on=day(subscription.payment_failed_at),
        next_retry_on=(day(subscription.next_retry_at)
                       if subscription.status == Status.PAST_DUE else None),
        grace_ends_on=day(subscription.grace_ends_at),
        locked_on=day(subscription.locked_at),
        moves_to_free_on=day(free_move_at(subscription=subscription, time_zone=time_zone)))


def renewal_amount(subscription: Subscription) -> Money | None:
    """What the next period costs at the prices this subscription pays, tax included."""
    if subscription.status not in {Status.ACTIVE, Status.PAST_DUE}:
        return None
    held = [(subscription.plan_price, subscription.regular_licences),
            (subscription.team_price, subscription.team_licences),
            (subscription.storage_price, subscription.storage_units)]
    subtotal = money_sum((prorate(price.amount, quantity, Decimal(1))
                          for price, quantity in held if price and quantity),
                         subscription.currency)
    rate = Decimal(settings.KANRI_TAX_RATES[subscription.currency])
    return subtotal + tax_on(subtotal, rate, settings.KANRI_TAX_ROUNDING)


PRICES = ("plan_price", "team_price", "storage_price")


def with_prices(subscription: Subscription) -> Subscription:
    """`subscription` with its three prices set from the catalog rows this process keeps
    (store.selectors.prices_by_id): what a select_related of them would give, without joins."""
    prices = prices_by_id(getattr(subscription, f"{name}_id") for name in PRICES)
    for name in PRICES:
        if (pk := getattr(subscription, f"{name}_id")) is not None:
            setattr(subscription, name, prices[pk])
    return subscription


def subscription_overview(*, organisation: Organisation) -> Overview:
    subscription = with_prices(_the_one(_SUBSCRIPTION_WITH_PLAN_AND_CARD(organisation.pk)))
    subscription.organisation = organisation  # the signed-in user's, already loaded
    invoices = _OVERVIEW_INVOICES(organisation.pk)
    open_payment = next(iter(_OVERVIEW_OPEN_PAYMENT(organisation.pk)), None)
    return Overview(subscription=subscription, next_renewal_amount=renewal_amount(subscription),
                    invoices=invoices, open_payment=open_payment,
                    dunning=dunning_timeline(subscription),
                    ended_trial=ended_trial(subscription),
                    card_runs_out=card_runs_out_before(subscription.default_payment_method,
                                                       next_charge_at(subscription)))


# The details page's reads (the portal's busiest page), compiled once per process; the first
# is also `subscription_get`'s.
_SUBSCRIPTION_WITH_PLAN_AND_CARD = Prepared(lambda organisation_id: Subscription.objects.filter(
    organisation_id=organisation_id).select_related("plan", "default_payment_method"))
_OVERVIEW_INVOICES = Prepared(lambda organisation_id: Invoice.objects.filter(
    organisation_id=organisation_id).only(
    "number", "issued_at", "plan_name", "plan_name_ja", "state", "currency", "total",
    "total_currency", "amount_paid", "amount_paid_currency", "paid_by")[:10])
# At most one is open per organisation (constraint one_open_payment_per_organisation).
_OVERVIEW_OPEN_PAYMENT = Prepared(lambda organisation_id: Payment.objects.open_for(
    organisation_id).order_by().only(
    "amount", "amount_currency", "created_at", "quote_id")[:1])


RENEWING = {Status.ACTIVE, Status.PAST_DUE, Status.LOCKED}


def next_charge_at(subscription: Subscription) -> dt.datetime | None:
    """When the default card is next charged without anyone paying: the renewal at the period's
    end, or, past due or locked, the next retry (now or soon). None when nothing renews."""
    if subscription.status not in RENEWING:
        return None
    if subscription.status == Status.ACTIVE:
        return subscription.current_period_end
    return subscription.next_retry_at or clock.now()


def card_runs_out_before(method: PaymentMethod | None, moment: dt.datetime | None) -> bool:
    """A card is good through the last day of its expiry month (UTC, as the processor reads
    it); True when it will have expired by `moment`."""
    if method is None or moment is None:
        return False
    moment = moment.astimezone(dt.UTC)
    return (method.exp_year, method.exp_month) < (moment.year, moment.month)


@dataclass(frozen=True)
class CardRow:
    method: PaymentMethod
    is_default: bool
    expired: bool
    runs_out: bool  # expires before the next charge (only said of the default card)


@dataclass(frozen=True)
class PaymentMethods:
    subscription: Subscription
    cards: list[CardRow]
    next_charge_at: dt.datetime | None


def payment_methods_list(*, organisation: Organisation) -> PaymentMethods:
    """購入設定 → 決済方法: the cards, newest first, the default marked (two queries)."""
    subscription = Subscription.objects.select_related("plan").get(organisation=organisation)
    charge_at, now = next_charge_at(subscription), clock.now()
    rows = []
    for method in PaymentMethod.objects.filter(organisation=organisation).order_by(
            "-created_at", "-pk"):
        default = method.pk == subscription.default_payment_method_id
        rows.append(CardRow(method=method, is_default=default,
                            expired=card_runs_out_before(method, now),
                            runs_out=default and card_runs_out_before(method, charge_at)))
    return PaymentMethods(subscription=subscription, cards=rows, next_charge_at=charge_at)


def payment_method_get(*, organisation: Organisation, method_id: int) -> PaymentMethod:
    return get_object_or_404(PaymentMethod, pk=method_id, organisation=organisation)


def ended_trial(subscription: Subscription) -> TrialUse | None:
    """A trial that ended in the last 30 days and left the organisation on Free: the details
    page says so. Asked only of Free subscriptions (one query)."""
    if subscription.status != Status.FREE:
        return None
    now = clock.now()
    return (TrialUse.objects.filter(organisation_id=subscription.organisation_id,
                                    ends_at__lte=now, ends_at__gt=now - dt.timedelta(days=30))
            .select_related("plan").order_by("-ends_at").first())


def lock_overview(*, organisation: Organisation) -> LockOverview | None:
    """The lock screen's facts, or None when the organisation is not locked."""
    subscription = (Subscription.objects
                    .select_related("organisation", "plan", "open_invoice",
                                    "default_payment_method")
                    .get(organisation=organisation))
    if subscription.status != Status.LOCKED:
        return None
    invoice = subscription.open_invoice
    owed = invoice if invoice is not None and invoice.state == Invoice.State.OPEN else None
    return LockOverview(subscription=subscription, open_invoice=owed,
                        amount_due=owed.total - owed.credit_applied if owed else None,
                        dunning=dunning_timeline(subscription))


def subscription_get(*, organisation: Organisation) -> Subscription:
    """The subscription with its plan and default card."""
    return _the_one(_SUBSCRIPTION_WITH_PLAN_AND_CARD(organisation.pk))


def _the_one(subscriptions: list[Subscription]) -> Subscription:
    """An organisation's one subscription (every organisation has one from sign-up)."""
    if not subscriptions:
        raise Subscription.DoesNotExist("the organisation has no subscription")
    [subscription] = subscriptions  # one per organisation: a unique key
    return subscription


def quote_get(*, organisation: Organisation, quote_id) -> Quote:
    """A quote of this organisation, or 404: another organisation's quote id never leaks."""
    return get_object_or_404(
        Quote.objects.select_related("plan", "from_plan").prefetch_related(
            "lines__plan", "lines__addon"), pk=quote_id, organisation=organisation)


def open_payment(*, quote: Quote) -> Payment | None:
    """The attempt of this quote whose outcome is not settled yet, if any."""
    return quote.payments.open().first()


def invoice_get(*, organisation: Organisation, number: str) -> Invoice:
    return get_object_or_404(
        Invoice.objects.prefetch_related("lines__plan", "lines__addon", "payments",
                                         "credit_notes__payment"),
        number=number, organisation=organisation)


class Settlement(TextChoices):
    """What happened to an invoice's money: one kind per statement the invoice page and the
    invoice PDF print (SPEC "The books" 10), worded once, in SETTLEMENT_WORDS."""
    PAID_BY_CARD = "paid_by_card"
    PAID_BY_CREDIT = "paid_by_credit"
    PAID_BY_GRANTED_CREDIT = "paid_by_granted_credit"
    WAIVED_BY_SUPPORT = "waived_by_support"
    WAIVED_BELOW_MINIMUM = "waived_below_minimum"
    STILL_OPEN = "still_open"
    VOIDED = "voided"
    CREDIT_GIVEN_BACK = "credit_given_back"
    REFUNDED_TO_CARD = "refunded_to_card"
    CREDITED_TO_ACCOUNT = "credited_to_account"


SETTLEMENT_WORDS = {
    Settlement.PAID_BY_CARD: _("%(amount)s paid by %(card)s on %(date)s. Payment ID: "
                               "%(payment_id)s"),
    Settlement.PAID_BY_CREDIT: _("%(amount)s paid with account credit."),
    Settlement.PAID_BY_GRANTED_CREDIT: _("%(amount)s paid with account credit granted by Kanri "
                                         "support."),
    Settlement.WAIVED_BY_SUPPORT: _("%(amount)s waived by Kanri support: %(reason)s"),
    Settlement.WAIVED_BELOW_MINIMUM: _("%(amount)s not charged: below the smallest amount the "
                                       "payment service can charge."),
    Settlement.STILL_OPEN: _("%(amount)s still owed."),
    Settlement.VOIDED: _("Voided on %(date)s: nothing is owed."),
    Settlement.CREDIT_GIVEN_BACK: _("%(amount)s of account credit given back to the account."),
    Settlement.REFUNDED_TO_CARD: _("%(amount)s refunded to %(card)s on %(date)s (credit note "
                                   "%(number)s)."),
    Settlement.CREDITED_TO_ACCOUNT: _("Credit note %(number)s: %(amount)s credited to the "
                                      "account on %(date)s."),
}

# The label of the totals row that says what was not collected, by whom it was waived.
WAIVED_LABELS = {
    Settlement.WAIVED_BY_SUPPORT: _("Waived by Kanri support"),
    Settlement.WAIVED_BELOW_MINIMUM: _("Not charged (below the smallest amount the payment "
                                       "service can charge)"),
}


@dataclass(frozen=True)
class Statement:
    """One thing that happened to an invoice, worded in the reader's language when printed
    (the page's and the PDF's language and time zone are those active while rendering)."""

    kind: Settlement
    amount: Money | None = None
    at: dt.datetime | None = None
    card: str = ""
    payment_id: str = ""
    number: str = ""
    reason: str = ""

    def __str__(self) -> str:
        language = get_language()
        return str(SETTLEMENT_WORDS[self.kind]) % {
            "amount": format_money(self.amount, language) if self.amount is not None else "",
            "date": timezone.localtime(self.at).date().isoformat() if self.at else "",
            # "Visa •••• 4242" kept on one line on a phone (no-break spaces).
            "card": self.card.replace(" ", "\u00a0"), "payment_id": self.payment_id,
            "number": self.number,
            "reason": self.reason}


@dataclass(frozen=True)
class InvoiceStory:
    """How an invoice was settled, as statements, and its figures, which add up with a pencil:
    total = card + credit + waived + voided + still_open − credited (SPEC "The books" 2; a
    downgrade's total is below zero by what it credited to the account). Refunds come after
    the settlement and are statements only."""

    statements: list[Statement]
    total: Money
    card: Money
    credit: Money
    waived: Money
    voided: Money
    still_open: Money
    credited: Money
    waived_by: Settlement | None = None

    @property
    def waived_label(self) -> str:
        return str(WAIVED_LABELS[self.waived_by]) if self.waived_by else ""


def invoice_story(invoice: Invoice) -> InvoiceStory:
    """What happened to `invoice`, read from its payments, credit ledger entries, credit notes
    and audit rows (support's uncharged change is recorded only by its "support.plan_changed"
    audit row, with charged False and support's reason). A few queries, whatever the story."""
    nothing = zero(invoice.currency)
    statements: list[Statement] = []
    # A card payment paid the invoice only if the invoice is paid: a charge that could not be
    # applied to it (the invoice voided meanwhile) was given back whole (billing.services.refunds).
    card_payments = [p for p in invoice.payments.all()
                     if invoice.state == Invoice.State.PAID
                     and p.paid_with == Payment.Source.CARD
                     and p.state in (Payment.State.SUCCEEDED, Payment.State.REFUNDED)]
    card = money_sum([p.amount for p in card_payments], invoice.currency)
    for payment in card_payments:
        statements.append(Statement(Settlement.PAID_BY_CARD, payment.amount,
                                    payment.settled_at or invoice.paid_at, payment.card_label,
                                    payment_id=payment.processor_id))
    entries = list(CreditEntry.objects.filter(invoice=invoice).order_by("id"))
    spent = -money_sum([e.amount for e in entries if e.kind == CreditEntry.Kind.APPLIED],
                       invoice.currency)
    returned = money_sum([e.amount for e in entries if e.kind == CreditEntry.Kind.RETURNED],
                         invoice.currency)
    credit = spent - returned
    if credit.amount > 0:
        granted = _credit_granted_by_support(invoice, entries)
        statements.append(Statement(Settlement.PAID_BY_GRANTED_CREDIT if granted
                                    else Settlement.PAID_BY_CREDIT, credit))
    waived, waived_by = invoice.amount_waived, None
    if waived.amount > 0:
        waiver = (AuditEvent.objects.filter(
            target_type=Invoice._meta.label_lower, target_id=str(invoice.pk),
            action="support.plan_changed", after__charged=False).order_by("created_at").first())
        if waiver is not None:
            waived_by = Settlement.WAIVED_BY_SUPPORT
            statements.append(Statement(waived_by, waived, reason=waiver.reason))
        else:
            waived_by = Settlement.WAIVED_BELOW_MINIMUM
            statements.append(Statement(waived_by, waived))
    still_open = voided = nothing
    if invoice.state == Invoice.State.OPEN:
        still_open = invoice.total - invoice.credit_applied
        statements.append(Statement(Settlement.STILL_OPEN, still_open))
    elif invoice.state == Invoice.State.VOID:
        voided = invoice.total - card - credit
        statements.append(Statement(Settlement.VOIDED, at=invoice.voided_at))
        if returned.amount > 0:
            statements.append(Statement(Settlement.CREDIT_GIVEN_BACK, returned))
    for note in sorted(invoice.credit_notes.all(), key=lambda n: (n.issued_at, n.pk)):
        if note.kind == CreditNote.Kind.REFUND:
            statements.append(Statement(Settlement.REFUNDED_TO_CARD, note.total, note.issued_at,
                                        note.payment.card_label if note.payment else "",
                                        number=note.number))
        else:
            statements.append(Statement(Settlement.CREDITED_TO_ACCOUNT, note.total,
                                        note.issued_at, number=note.number))
    return InvoiceStory(statements, invoice.total, card, credit, waived, voided, still_open,
                        invoice.credit_to_account, waived_by)


def _credit_granted_by_support(invoice: Invoice, entries: list) -> bool:
    """Whether the credit that paid `invoice` came straight from a support grant: a grant pays
    the open renewal in the same transaction that adds it (billing.services.support), so each
    of the invoice's APPLIED entries comes right after a GRANTED entry in the organisation's
    ledger, of at least the amount applied."""
    applied = [e for e in entries if e.kind == CreditEntry.Kind.APPLIED]
    if not applied:
        return False
    for entry in applied:
        before = (CreditEntry.objects.filter(organisation_id=invoice.organisation_id,
                                             pk__lt=entry.pk).order_by("-pk").first())
        if before is None or before.kind != CreditEntry.Kind.GRANTED \
                or before.amount < -entry.amount:
            return False
    return True


def credit_note_get(*, organisation: Organisation, number: str) -> CreditNote:
    """A credit note of this organisation, or 404: another organisation's number never leaks."""
    return get_object_or_404(CreditNote.objects.select_related("invoice", "organisation"),
                             number=number, organisation=organisation)


def plans_for_change(*, subscription: Subscription) -> list[dict]:
    """Public plans, each marked current, upgrade or downgrade relative to the plan held."""
    rows = []
    for plan in Plan.objects.filter(is_public=True):
        if plan.pk == subscription.plan_id:
            relation = "current"
        else:
            relation = "upgrade" if plan.rank > subscription.plan.rank else "downgrade"
        rows.append({"plan": plan, "relation": relation})
    return rows


# 決済の履歴 / Payment history ------------------------------------------------------------------

HISTORY_STATUSES = {  # the filter's choices: what a person calls a payment's outcome
    "paid": Q(state=Payment.State.SUCCEEDED, paid_with=Payment.Source.CARD),
    "credit": Q(state=Payment.State.SUCCEEDED, paid_with=Payment.Source.CREDIT),
    "failed": Q(state=Payment.State.FAILED),
    "refunded": Q(state=Payment.State.REFUNDED),
    "pending": Q(state__in=Payment.OPEN),
}


def _local_midnight(day: dt.date, time_zone: str) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=ZoneInfo(time_zone))


def _payments_with_rows(organisation: Organisation) -> QuerySet[Payment]:
    return (Payment.objects.filter(organisation=organisation)
            .select_related("invoice", "quote__plan").order_by("-created_at", "-id"))


def _history_matching(organisation: Organisation, start: dt.date | None, end: dt.date | None,
                      status: str) -> Q:
    matching = Q()
    if start:
        matching &= Q(created_at__gte=_local_midnight(start, organisation.time_zone))
    if end:
        matching &= Q(created_at__lt=_local_midnight(end + dt.timedelta(days=1),
                                                    organisation.time_zone))
    if status:
        matching &= HISTORY_STATUSES[status]
    return matching


def payment_history(*, organisation: Organisation, start: dt.date | None = None,
                    end: dt.date | None = None, status: str = "") -> QuerySet:
    """Every payment attempt of the organisation, newest first, as the values a history row
    (HistoryRow) prints, selected or annotated in the same query (a page costs the same whatever
    its size). `start` and `end` are days on the organisation's clock, both included."""
    return (_history_rows().filter(organisation=organisation)
            .filter(_history_matching(organisation, start, end, status)))


@cache
def _history_rows() -> QuerySet:
    """`payment_history`'s query for every organisation, built once per process: resolving its
    columns across four tables costs about what running it does. Callers filter a copy."""
    return Payment.objects.order_by("-created_at", "-id").values(*HISTORY_VALUES)


def payment_history_count(*, organisation: Organisation, start: dt.date | None = None,
                          end: dt.date | None = None, status: str = "") -> int:
    """How many rows `payment_history` has, counted without its joins and annotations."""
    return (Payment.objects.filter(organisation=organisation)
            .filter(_history_matching(organisation, start, end, status)).count())


# The history's rows (page and CSV): plain values (four model objects a row cost twice the
# page's query).
HISTORY_VALUES = (
    "pk", "processor_id", "created_at", "amount", "amount_currency", "state", "paid_with",
    "failure_code", "failure_reason", "card_brand", "card_last4", "idempotency_key", "quote_id",
    "invoice_id", "invoice__number", "invoice__plan_name", "invoice__plan_name_ja",
    "invoice__cycle", "quote__plan_id", "quote__from_plan_id", "quote__cycle",
    "quote__from_cycle", "quote__plan__name", "quote__plan__name_ja")


@dataclass(frozen=True)
class HistoryRow(PaymentDisplay):
    """One attempt as the history page prints it: Payment's own display rules
    (billing.models.payments.PaymentDisplay) over the values `payment_history` selects."""

    pk: int
    processor_id: str
    created_at: dt.datetime
    amount: Money
    state: str
    paid_with: str
    failure_code: str
    failure_reason: str
    card_brand: str
    card_last4: str
    idempotency_key: str
    quote_id: object
    invoice_id: int | None
    invoice_number: str
    plan_changed: bool
    cycle: str
    plan_names: tuple[str, str]  # English and Japanese, as the invoice (else the quote) named it
    when: str  # created_at on the organisation's clock, as the page prints it
    language: str  # the one the page (or CSV) is read in, asked once for all its rows

    def reading_language(self) -> str:
        return self.language

    @property
    def plan_label(self) -> str:
        name, name_ja = self.plan_names
        return name_ja if (self.language or "").startswith("ja") else name

    @classmethod
    def of(cls, row: dict, zone: ZoneInfo, language: str) -> "HistoryRow":
        quoted = row["quote_id"] is not None
        return cls(
            language=language,
            when=row["created_at"].astimezone(zone).strftime("%Y-%m-%d %H:%M"),
            pk=row["pk"], processor_id=row["processor_id"], created_at=row["created_at"],
            amount=Money(row["amount"], row["amount_currency"]), state=row["state"],
            paid_with=row["paid_with"], failure_code=row["failure_code"],
            failure_reason=row["failure_reason"], card_brand=row["card_brand"],
            card_last4=row["card_last4"], idempotency_key=row["idempotency_key"],
            quote_id=row["quote_id"], invoice_id=row["invoice_id"],
            invoice_number=row["invoice__number"] or "",
            plan_changed=quoted and (row["quote__plan_id"] != row["quote__from_plan_id"]
                                     or row["quote__cycle"] != row["quote__from_cycle"]),
            cycle=(row["quote__cycle"] if quoted else row["invoice__cycle"]) or "",
            plan_names=((row["invoice__plan_name"], row["invoice__plan_name_ja"])
                        if row["invoice_id"] else
                        (row["quote__plan__name"], row["quote__plan__name_ja"]) if quoted
                        else ("", "")))


def payment_history_page(*, number, size: int, organisation: Organisation,
                         start: dt.date | None = None, end: dt.date | None = None,
                         status: str = ""):
    """One page of `payment_history` as HistoryRows; its count without the joins."""
    if start or end or status:
        matching = {"organisation": organisation, "start": start, "end": end, "status": status}
        paginator = Paginator(payment_history(**matching), size)
        paginator.count = payment_history_count(**matching)
    else:  # the page as it opens: its two reads compiled once per process
        paginator = Paginator(_HISTORY_ROWS.rows(organisation.pk, count=lambda: sum(
            row["rows"] for row in _HISTORY_COUNT(organisation.pk))), size)
    page = paginator.get_page(number)
    zone = ZoneInfo(organisation.time_zone)
    language = get_language()
    page.object_list = [HistoryRow.of(row, zone, language) for row in page.object_list]
    return page


_HISTORY_ROWS = Prepared(lambda organisation_id: _history_rows().filter(
    organisation_id=organisation_id))
_HISTORY_COUNT = Prepared(lambda organisation_id: Payment.objects.filter(
    organisation_id=organisation_id).order_by().values("organisation_id").annotate(
    rows=Count("pk")))


def payment_history_rows(*, organisation: Organisation, start: dt.date | None = None,
                         end: dt.date | None = None, status: str = "") -> Iterator[HistoryRow]:
    """Every row of `payment_history`, read in chunks (the CSV export)."""
    zone, language = ZoneInfo(organisation.time_zone), get_language()
    for row in payment_history(organisation=organisation, start=start, end=end,
                               status=status).iterator(chunk_size=500):
        yield HistoryRow.of(row, zone, language)


def payment_get(*, organisation: Organisation, payment_id: int) -> Payment:
    """One attempt of this organisation with its invoice's lines, or 404."""
    return get_object_or_404(
        _payments_with_rows(organisation).prefetch_related("invoice__lines"),
        pk=payment_id)


# Licences --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LicenceRow:
    """One licence type as the panel says it: "you pay for 10 licences: 7 active users,
    2 deactivated, 1 unused"."""

    licence_type: str
    label: str
    purchased: int
    active: int
    deactivated: int
    unused: int  # neither an active nor a deactivated user holds it
    removable: int  # licences no active user needs (deactivated users' and unused ones)
    saving: Money | None  # what removing `removable` saves each period, tax included
    cycle_label: str = ""  # the subscription's billing cycle, as the saving is per period

    # The panel's sentences, made here once (the panel is on three busy pages).

    @property
    def summary(self) -> str:
        return ngettext(
            "you pay for %(purchased)s licence: %(active)s active, %(deactivated)s deactivated, "
            "%(unused)s unused",
            "you pay for %(purchased)s licences: %(active)s active, %(deactivated)s "
            "deactivated, %(unused)s unused", self.purchased) % {
            "purchased": self.purchased, "active": self.active,
            "deactivated": self.deactivated, "unused": self.unused}

    @property
    def saving_note(self) -> str:
        return ngettext(
            "%(count)s licence is not used by an active user: removing it saves %(saving)s per "
            "period (%(cycle)s, tax included).",
            "%(count)s licences are not used by active users: removing them saves %(saving)s "
            "per period (%(cycle)s, tax included).", self.removable) % {
            "count": self.removable, "cycle": self.cycle_label,
            "saving": format_money(self.saving, get_language()) if self.saving else ""}

    @property
    def remove_label(self) -> str:
        return ngettext("Remove %(count)s", "Remove %(count)s", self.removable) % {
            "count": self.removable}


def _saving(subscription: Subscription, price, count: int) -> Money | None:
    if not count or price is None or subscription.status != Status.ACTIVE:
        return None
    subtotal = prorate(price.amount, count, Decimal(1))
    rate = Decimal(settings.KANRI_TAX_RATES[subscription.currency])
    return subtotal + tax_on(subtotal, rate, settings.KANRI_TAX_ROUNDING)


def licence_panel(*, subscription: Subscription, counts: dict) -> list[LicenceRow]:
    """The licence panel of the details and users pages, from the subscription (with its
    prices selected) and `accounts.selectors.org_user_counts`: no query of its own."""
    rows = []
    for licence_type, purchased, floor, price in (
            (LicenceType.REGULAR, subscription.regular_licences, 1, subscription.plan_price),
            (LicenceType.TEAM, subscription.team_licences, 0, subscription.team_price)):
        active = counts[licence_type]["active"]
        deactivated = counts[licence_type]["deactivated"]
        if not purchased and not active and not deactivated:
            continue
        removable = max(0, purchased - max(active, floor))
        rows.append(LicenceRow(
            licence_type=licence_type, label=LicenceType(licence_type).label,
            purchased=purchased, active=active, deactivated=deactivated,
            unused=max(0, purchased - active - deactivated), removable=removable,
            saving=_saving(subscription, price, removable),
            cycle_label=subscription.get_cycle_display()))
    return rows


def subscription_with_prices(*, organisation: Organisation) -> Subscription:
    """The subscription with its plan and per-period prices: what pricing a change and the
    licence panel read."""
    return with_prices(_the_one(_SUBSCRIPTION_WITH_PLAN(organisation.pk)))


_SUBSCRIPTION_WITH_PLAN = Prepared(lambda organisation_id: Subscription.objects.select_related(
    "plan").filter(organisation_id=organisation_id))


# Usage -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class UsageBar:
    key: str  # records, storage, users_regular, users_team
    used: int
    limit: int | None  # None: no limit
    unit: str  # "" for counts, "MB"

    @property
    def percent(self) -> int:
        if not self.limit:
            return 0 if self.limit is None else 100
        return min(100, round(self.used * 100 / self.limit))

    @property
    def over(self) -> bool:
        return self.limit is not None and self.used > self.limit

    @property
    def at_limit(self) -> bool:
        """Nothing more fits: creating a record is refused from here (usage >= limit)."""
        return self.limit is not None and self.used >= self.limit

    @property
    def to_free(self) -> int:
        """How many to delete before one more fits."""
        return max(0, self.used - self.limit + 1) if self.limit is not None else 0

    # What the panel prints: "Records: 1,234 / 10,000", "Storage: 512 MB / no limit".

    @property
    def label(self) -> str:
        return str(USAGE_LABELS[self.key])

    @property
    def used_text(self) -> str:
        return f"{self.used:,} {self.unit}".rstrip()

    @property
    def limit_text(self) -> str:
        return str(_("no limit")) if self.limit is None else f"{self.limit:,} {self.unit}".rstrip()


USAGE_LABELS = {"records": _("Records"), "storage": _("Storage"),
                "users_regular": _("Regular users"), "users_team": _("Team users")}


def usage_panel(*, subscription: Subscription, counts: dict) -> tuple:
    """The details page's usage panel: (entitlements, bars), from the subscription loaded with
    its plan and organisation and `accounts.selectors.org_user_counts` (one query: storage)."""
    from billing.entitlements import entitlements_from

    active = {kind: counts[kind]["active"] for kind in LicenceType.values}
    entitled = entitlements_from(subscription=subscription, active=active)
    bars = [UsageBar("records", entitled.usage.records, entitled.limits.records, ""),
            UsageBar("storage", entitled.usage.storage_mb, entitled.limits.storage_mb, "MB"),
            UsageBar("users_regular", active[LicenceType.REGULAR],
                     entitled.limits.users[LicenceType.REGULAR], "")]
    if entitled.limits.users[LicenceType.TEAM] or active[LicenceType.TEAM]:
        bars.append(UsageBar("users_team", active[LicenceType.TEAM],
                             entitled.limits.users[LicenceType.TEAM], ""))
    return entitled, bars
