"""Pricing a change: pure rules, no database writes. The quote service saves what this returns.

Proration rule: by the exact share of the current paid period still to run, in seconds
(`(period_end − now) / (period_end − period_start)`, kept to 12 decimal places). Only time that
was paid is credited (`Subscription.period_was_paid`): each charge line of the invoice that paid
the running period is credited for that share, at that line's price and tax rate, and points at
it, scaled by how much of that invoice was paid with money and not refunded (`paid_share`: a
period refunded in full or given free by support earns nothing). The new configuration is
charged for the same remaining share when the billing cycle stays, or for a whole new period
starting now when the cycle changes or nothing paid is running (Free, trial, past due, locked);
a new period's end comes from `billing.periods` on the organisation's clock. A change that
replaces an unpaid renewal (past due, locked) is refused for the configuration held (Renew pays
it), and otherwise bills the grace days used at the renewal's price: its charge lines for the
share of its period from the due date to now, or to the lock (locked time is free); a move to
Free bills none. Each line is rounded once; tax is computed once per rate on the sum of that
rate's lines, at the rate and rounding fixed in the quote. A negative total becomes account
credit; a positive one is paid from account credit first, then by card.
"""
import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from django.conf import settings
from django.db.models import Count, OuterRef, Subquery, Sum
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from djmoney.money import Money

from accounts.models import LicenceType, Organisation
from billing import periods
from billing.errors import BillingError
from billing.models import CreditNote, InvoiceLine, Status, Subscription
from billing.models.quotes import LineKind
from store import clock
from store.models import AddOn, Plan, Price
from store.money import money_sum, prorate, tax_by_rate, tax_on, zero

FRACTION_PLACES = Decimal("1e-12")


@dataclass(frozen=True)
class Change:
    plan: Plan
    cycle: str
    regular_licences: int
    team_licences: int
    storage_units: int


@dataclass(frozen=True)
class DraftLine:
    """A priced line before it is saved on a quote."""

    kind: str
    price: Price
    quantity: int
    fraction: Decimal
    amount: Money
    period_start: dt.datetime
    period_end: dt.datetime
    tax_rate: Decimal
    unit_amount: Money
    credits_line: InvoiceLine | None = None

    @property
    def item(self):
        return self.price.plan or self.price.addon


@dataclass(frozen=True)
class TaxRule:
    """The rate for new charges and the rounding mode, as fixed when a quote is made."""

    rate: Decimal
    rounding: str

    @classmethod
    def current(cls, currency: str) -> "TaxRule":
        return cls(Decimal(settings.KANRI_TAX_RATES[currency]), settings.KANRI_TAX_ROUNDING)


def current_price(*, cycle: str, currency: str, plan: Plan | None = None,
                  addon: AddOn | None = None) -> Price | None:
    """The newest price version in effect for one item, cycle and currency."""
    return (Price.objects.filter(plan=plan, addon=addon, cycle=cycle, amount_currency=currency,
                                 effective_from__lte=clock.now())
            .order_by("-effective_from").first())


def _addons() -> dict[str, AddOn]:
    return {addon.code: addon for addon in AddOn.objects.filter(code__in=["team_user",
                                                                           "storage"])}


def new_prices(*, change: Change, currency: str) -> list[tuple[Price, int]]:
    """(price, quantity) for each item of the new configuration with a quantity."""
    wanted = [({"plan": change.plan}, change.regular_licences),
              ({"addon": "team_user"}, change.team_licences),
              ({"addon": "storage"}, change.storage_units)]
    addons = _addons() if change.team_licences or change.storage_units else {}
    priced = []
    for item, quantity in wanted:
        if quantity == 0:
            continue
        if "addon" in item:
            item = {"addon": addons[item["addon"]]}
        price = current_price(cycle=change.cycle, currency=currency, **item)
        if price is None:
            raise BillingError(_("%(item)s is not sold in %(currency)s.")
                               % {"item": next(iter(item.values())).display_name,
                                  "currency": currency}, code="not_sold")
        priced.append((price, quantity))
    return priced


def _invoice_sum(model, amount: str, **filters) -> Subquery:
    """The sum of one money column over the rows of the outer line's invoice."""
    return Subquery(model.objects.filter(invoice_id=OuterRef("invoice_id"), **filters)
                    .values("invoice_id").annotate(sum=Sum(amount)).values("sum"))


def paid_lines(subscription: Subscription) -> list[InvoiceLine]:
    """The charge lines that paid the running period: what unused time may be credited for.
    Empty unless the period was paid (the one rule: `Subscription.period_was_paid`). Each
    comes with its invoice, what was refunded of it and what its charge lines add up to, for
    `paid_share` (in the same query)."""
    if not subscription.period_was_paid:
        return []
    # Lines that end by the period's start are grace days billed with it: used, not unused.
    return list(InvoiceLine.objects.filter(invoice_id=subscription.paid_invoice_id,
                                           kind=LineKind.CHARGE,
                                           period_end__gt=subscription.current_period_start)
                .select_related("price__plan", "price__addon", "invoice")
                .annotate(refunded=_invoice_sum(CreditNote, "total",
                                                kind=CreditNote.Kind.REFUND),
                          charged=_invoice_sum(InvoiceLine, "amount", kind=LineKind.CHARGE)))


def _amount(value) -> Decimal:
    return Decimal(0) if value is None else getattr(value, "amount", value)


def paid_share(paid: list[InvoiceLine]) -> Decimal:
    """How much of what the running period's invoice charged was paid and not refunded, 0 to 1:
    1 − unpaid ÷ charged, where unpaid = total − paid by card − paid by account credit +
    refunded (what support waived, what was waived below the minimum, what was refunded) and
    both are taken before tax (unpaid × subtotal ÷ total; charged = the charge lines' sum),
    rounded down. The rest of the charges was paid by the unused time the invoice credited.
    Unused time is credited in this share: a period refunded in full or given free by support
    earns nothing, one refunded in half earns half. `paid` is `paid_lines`' answer (lines not
    saved on an invoice count as paid)."""
    if not paid or paid[0].invoice_id is None:
        return Decimal(1)
    line, invoice = paid[0], paid[0].invoice
    total, charged = invoice.total.amount, _amount(getattr(line, "charged", None))
    unpaid = (total - invoice.amount_paid.amount - invoice.credit_applied.amount
              + _amount(getattr(line, "refunded", None)))
    if total <= 0 or unpaid <= 0 or charged <= 0:
        return Decimal(1)
    share = 1 - unpaid * invoice.subtotal.amount / total / charged
    return min(max(share, Decimal(0)), Decimal(1)).quantize(FRACTION_PLACES, rounding=ROUND_DOWN)


def owed_lines(subscription: Subscription) -> list[InvoiceLine]:
    """The charge lines of the unpaid renewal a change replaces (past due, locked, or a renewal
    the processor has not answered): the grace days used are billed at their price."""
    if subscription.open_invoice_id is None:
        return []
    return list(InvoiceLine.objects.filter(invoice_id=subscription.open_invoice_id,
                                           kind=LineKind.CHARGE)
                .select_related("price__plan", "price__addon"))


def usable_until(subscription: Subscription, now: dt.datetime) -> dt.datetime:
    """The end of the grace days that could be used: now, or when the account locked (or was
    due to lock): locked time is never billed."""
    ends = [moment for moment in (subscription.locked_at, subscription.grace_ends_at) if moment]
    return min([now, *ends])


def remaining_fraction(*, start: dt.datetime, end: dt.datetime, now: dt.datetime) -> Decimal:
    """Share of [start, end) still to run at `now`, in whole seconds, 0 to 1."""
    total = int((end - start).total_seconds())
    left = max(0, min(total, int((end - now).total_seconds())))
    return (Decimal(left) / Decimal(total)).quantize(FRACTION_PLACES) if total else Decimal(0)


def _validate(*, organisation: Organisation, subscription: Subscription, change: Change) -> None:
    limit = settings.KANRI_MAX_QUANTITY
    if not 1 <= change.regular_licences <= limit:
        raise BillingError(_("Regular user licences must be between 1 and %(max)s.")
                           % {"max": limit}, code="quantity_out_of_range")
    for quantity in (change.team_licences, change.storage_units):
        if not 0 <= quantity <= limit:
            raise BillingError(_("Quantities must be between 0 and %(max)s.") % {"max": limit},
                               code="quantity_out_of_range")
    if change.plan.max_users and change.regular_licences > change.plan.max_users:
        raise BillingError(_("%(plan)s allows at most %(max)s users.")
                           % {"plan": change.plan.display_name, "max": change.plan.max_users},
                           code="plan_user_limit")
    active = dict.fromkeys(LicenceType.values, 0)
    active.update(organisation.users.filter(is_active=True).values_list("licence_type")
                  .annotate(Count("pk")).order_by())
    for licence_type, wanted, label in (
            (LicenceType.REGULAR, change.regular_licences, _("regular")),
            (LicenceType.TEAM, change.team_licences, _("team"))):
        if wanted < active[licence_type]:
            excess = active[licence_type] - wanted
            raise BillingError(ngettext(
                "You have %(active)s active %(type)s users: deactivate %(excess)s user before "
                "reducing the licences to %(wanted)s.",
                "You have %(active)s active %(type)s users: deactivate %(excess)s users before "
                "reducing the licences to %(wanted)s.", excess)
                % {"active": active[licence_type], "type": label, "excess": excess,
                   "wanted": wanted}, code="licences_below_active_users")
    if organisation.storage_used_mb and (
            organisation.storage_used_mb > (included := included_storage_mb(change))):
        raise BillingError(_("Your organisation uses %(used)s MB of storage; this configuration "
                             "includes %(included)s MB. Add storage units or free space first.")
                           % {"used": organisation.storage_used_mb, "included": included},
                           code="storage_below_usage")
    unchanged = (change.plan == subscription.plan and change.cycle == subscription.cycle
                 and change.regular_licences == subscription.regular_licences
                 and change.team_licences == subscription.team_licences
                 and change.storage_units == subscription.storage_units)
    if unchanged and subscription.status == Status.ACTIVE:
        raise BillingError(_("This is what you have now: change the plan, cycle or quantities."),
                           code="no_change")
    if unchanged and subscription.status == Status.FREE:
        raise BillingError(_("You are on the Free plan already."), code="no_change")
    if unchanged and subscription.status in {Status.PAST_DUE, Status.LOCKED}:
        # Renewing pays the open invoice from its due date; a "change" to the same thing would
        # void it and start a period now, so the grace days used would never be billed.
        raise BillingError(_("This is what you have now, and its renewal is unpaid: to keep it, "
                             "pay the renewal with Renew subscription."), code="renew_instead")


def included_storage_mb(change: Change) -> int:
    storage = _addons()["storage"]
    return (change.plan.storage_per_org_mb
            + change.plan.storage_per_licence_mb * change.regular_licences
            + storage.storage_mb_per_unit * change.storage_units)


def limit_warnings(*, organisation: Organisation, plan: Plan) -> list[dict]:
    """What the organisation uses beyond the new plan's limits (allowed, but said plainly)."""
    warnings = []
    if plan.max_records is not None and organisation.record_count > plan.max_records:
        warnings.append({"kind": "records", "usage": organisation.record_count,
                         "limit": plan.max_records})
    return warnings


@dataclass(frozen=True)
class Lines:
    lines: list[DraftLine]
    period_start: dt.datetime | None
    period_end: dt.datetime | None
    billing_anchor: dt.datetime | None  # set when a new period starts


def price_lines(*, subscription: Subscription, change: Change, now: dt.datetime,
                paid: list, new: list[tuple[Price, int]], tax: TaxRule,
                time_zone: str, owed: list | None = None,
                share: Decimal = Decimal(1)) -> Lines:
    """The quote's lines and the new period, by the rule in this module's docstring. `paid` is
    the charge lines that paid the running period (`paid_lines`) and `share` how much of them
    was paid (`paid_share`), `owed` the lines of the unpaid renewal the change replaces
    (`owed_lines`), `new` the new prices."""
    lines: list[DraftLine] = []
    running = (bool(paid) and subscription.current_period_end is not None
               and subscription.current_period_end > now)
    left = Decimal(0)
    if running:
        left = remaining_fraction(start=subscription.current_period_start,
                                  end=subscription.current_period_end, now=now)
        credited = (left * share).quantize(FRACTION_PLACES, rounding=ROUND_DOWN)
        for line in paid if credited else []:
            lines.append(DraftLine(
                LineKind.CREDIT, line.price, line.quantity, credited,
                -prorate(line.unit_amount, line.quantity, credited), now,
                subscription.current_period_end, line.tax_rate, line.unit_amount,
                credits_line=line))
    if change.plan.is_free:
        # The seed's 無料プランへのダウングレード ends the unpaid renewal with nothing to pay.
        return Lines(lines, None, None, None)
    for line in owed or []:
        # The grace days used, from the due date: the share of the unpaid period elapsed.
        until = usable_until(subscription, now)
        used = Decimal(1) - remaining_fraction(start=line.period_start, end=line.period_end,
                                               now=until)
        if used:
            lines.append(DraftLine(
                LineKind.CHARGE, line.price, line.quantity, used,
                prorate(line.unit_amount, line.quantity, used), line.period_start,
                max(until, line.period_start), tax.rate, line.unit_amount))
    anchor = None
    if running and change.cycle == subscription.cycle:
        start, end = subscription.current_period_start, subscription.current_period_end
        fraction = left
    else:
        start, end = periods.first_period(start=now, cycle=change.cycle, time_zone=time_zone)
        anchor, fraction = now, Decimal(1)
    for price, quantity in new:
        lines.append(DraftLine(LineKind.CHARGE, price, quantity, fraction,
                               prorate(price.amount, quantity, fraction), max(start, now), end,
                               tax.rate, price.amount))
    return Lines(lines, start, end, anchor)


@dataclass(frozen=True)
class Priced:
    """Everything a quote shows, before it is saved: the live preview uses it as it is."""

    change: Change
    lines: list[DraftLine]
    period_start: dt.datetime | None
    period_end: dt.datetime | None
    billing_anchor: dt.datetime | None
    tax_rule: TaxRule
    taxes: list[dict]
    subtotal: Money
    tax: Money
    total: Money
    credit_applied: Money
    amount_due: Money
    credit_to_account: Money
    next_renewal_amount: Money | None
    warnings: list[dict]


def quote_price(*, organisation: Organisation, subscription: Subscription,
                change: Change, paid: list | None = None) -> Priced:
    """Validate and price a change; raises BillingError with the reason it is refused. `paid`
    is the running period's paid lines when the caller has them (else `paid_lines`)."""
    _validate(organisation=organisation, subscription=subscription, change=change)
    currency = subscription.currency
    rule = TaxRule.current(currency)
    new = [] if change.plan.is_free else new_prices(change=change, currency=currency)
    paid = paid_lines(subscription) if paid is None else paid
    priced = price_lines(subscription=subscription, change=change, now=clock.now(), paid=paid,
                         new=new, tax=rule, time_zone=organisation.time_zone,
                         owed=owed_lines(subscription), share=paid_share(paid))
    subtotal = money_sum((line.amount for line in priced.lines), currency)
    taxes = tax_by_rate([(line.tax_rate, line.amount) for line in priced.lines], rule.rounding,
                        currency)
    tax = money_sum((group["tax"] for group in taxes), currency)
    total = subtotal + tax
    positive = total > zero(currency)
    credit_applied = min(subscription.credit_balance, total) if positive else zero(currency)
    renewal = None
    if not change.plan.is_free:
        full = money_sum((prorate(price.amount, quantity, Decimal(1))
                          for price, quantity in new), currency)
        renewal = full + tax_on(full, rule.rate, rule.rounding)
    return Priced(change=change, lines=priced.lines, period_start=priced.period_start,
                  period_end=priced.period_end, billing_anchor=priced.billing_anchor,
                  tax_rule=rule, taxes=taxes, subtotal=subtotal, tax=tax, total=total,
                  credit_applied=credit_applied,
                  amount_due=max(total - credit_applied, zero(currency)),
                  credit_to_account=max(-total, zero(currency)), next_renewal_amount=renewal,
                  warnings=limit_warnings(organisation=organisation, plan=change.plan))
