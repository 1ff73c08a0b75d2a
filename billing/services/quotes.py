"""Quotes: the priced review of a change (plan, cycle, licences, add-ons), line by line.

Proration rule: by the exact share of the current paid period still to run, in seconds
(`(period_end − now) / (period_end − period_start)`, kept to 12 decimal places). The unused part of
what is paid now is credited line by line; the new configuration is charged for the same remaining
share when the billing cycle stays, or for a whole new period starting now when the cycle changes
or nothing paid is running (Free, trial). Each line is rounded once; tax is computed once on the
sum of the lines. A negative total becomes account credit; a positive one is paid from account
credit first, then by card.
"""
import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from djmoney.money import Money

from accounts.models import LicenceType, Organisation, User
from billing.errors import BillingError
from billing.models import Quote, QuoteLine, Status, Subscription
from billing.models.quotes import LineKind
from billing.money import money_sum, prorate, tax_on, zero
from store import clock
from store.models import CYCLE_MONTHS, AddOn, Plan, Price

FRACTION_PLACES = Decimal("1e-12")


@dataclass(frozen=True)
class Change:
    plan: Plan
    cycle: str
    regular_licences: int
    team_licences: int
    storage_units: int


@dataclass(frozen=True)
class _Line:
    kind: str
    price: Price
    quantity: int
    fraction: Decimal
    amount: Money
    period_start: dt.datetime
    period_end: dt.datetime


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
                                  "currency": currency})
        priced.append((price, quantity))
    return priced


def _paid_prices(subscription: Subscription) -> list[tuple[Price, int]]:
    held = [(subscription.plan_price, subscription.regular_licences),
            (subscription.team_price, subscription.team_licences),
            (subscription.storage_price, subscription.storage_units)]
    return [(price, quantity) for price, quantity in held if price is not None and quantity > 0]


def remaining_fraction(*, start: dt.datetime, end: dt.datetime, now: dt.datetime) -> Decimal:
    """Share of [start, end) still to run at `now`, in whole seconds, 0 to 1."""
    total = int((end - start).total_seconds())
    left = max(0, min(total, int((end - now).total_seconds())))
    return (Decimal(left) / Decimal(total)).quantize(FRACTION_PLACES) if total else Decimal(0)


def _validate(*, organisation: Organisation, subscription: Subscription, change: Change) -> None:
    limit = settings.KANRI_MAX_QUANTITY
    if not 1 <= change.regular_licences <= limit:
        raise BillingError(_("Regular user licences must be between 1 and %(max)s.")
                           % {"max": limit})
    for quantity in (change.team_licences, change.storage_units):
        if not 0 <= quantity <= limit:
            raise BillingError(_("Quantities must be between 0 and %(max)s.") % {"max": limit})
    if change.plan.max_users and change.regular_licences > change.plan.max_users:
        raise BillingError(_("%(plan)s allows at most %(max)s users.")
                           % {"plan": change.plan.display_name, "max": change.plan.max_users})
    active = dict.fromkeys(LicenceType.values, 0)
    for licence_type in organisation.users.filter(is_active=True).values_list(
            "licence_type", flat=True):
        active[licence_type] += 1
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
                   "wanted": wanted})
    if organisation.storage_used_mb and (
            organisation.storage_used_mb > (included := included_storage_mb(change))):
        raise BillingError(_("Your organisation uses %(used)s MB of storage; this configuration "
                             "includes %(included)s MB. Add storage units or free space first.")
                           % {"used": organisation.storage_used_mb, "included": included})
    unchanged = (change.plan == subscription.plan and change.cycle == subscription.cycle
                 and change.regular_licences == subscription.regular_licences
                 and change.team_licences == subscription.team_licences
                 and change.storage_units == subscription.storage_units)
    if unchanged and subscription.status == Status.ACTIVE:
        raise BillingError(_("This is what you have now: change the plan, cycle or quantities."))
    if unchanged and subscription.status == Status.FREE:
        raise BillingError(_("You are on the Free plan already."))


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


def price_lines(*, subscription: Subscription, change: Change, now: dt.datetime,
                new: list[tuple[Price, int]] | None = None):
    """The quote's lines and the new period, by the rule in this module's docstring. `new` is
    the new configuration's prices when the caller has them already."""
    lines: list[_Line] = []
    running = (subscription.is_paid and subscription.current_period_end is not None
               and subscription.current_period_end > now)
    left = Decimal(0)
    if running:
        left = remaining_fraction(start=subscription.current_period_start,
                                  end=subscription.current_period_end, now=now)
        for price, quantity in _paid_prices(subscription):
            lines.append(_Line(LineKind.CREDIT, price, quantity, left,
                               -prorate(price.amount, quantity, left), now,
                               subscription.current_period_end))
    if change.plan.is_free:
        return lines, None, None
    if running and change.cycle == subscription.cycle:
        start, end = subscription.current_period_start, subscription.current_period_end
        fraction = left
    else:
        start, end, fraction = now, clock.add_months(now, CYCLE_MONTHS[change.cycle]), Decimal(1)
    if new is None:
        new = new_prices(change=change, currency=subscription.currency)
    for price, quantity in new:
        lines.append(_Line(LineKind.CHARGE, price, quantity, fraction,
                           prorate(price.amount, quantity, fraction), max(start, now), end))
    return lines, start, end


def _tax(subtotal: Money) -> Money:
    rate = Decimal(settings.KANRI_TAX_RATES[str(subtotal.currency)])
    return tax_on(subtotal, rate, settings.KANRI_TAX_ROUNDING)


@dataclass(frozen=True)
class Priced:
    """Everything a quote shows, before it is saved: the live preview uses it as it is."""

    change: Change
    lines: list[_Line]
    period_start: dt.datetime | None
    period_end: dt.datetime | None
    subtotal: Money
    tax: Money
    total: Money
    credit_applied: Money
    amount_due: Money
    credit_to_account: Money
    next_renewal_amount: Money | None
    warnings: list[dict]


def quote_price(*, organisation: Organisation, subscription: Subscription,
                change: Change) -> Priced:
    """Validate and price a change; raises BillingError with the reason it is refused."""
    _validate(organisation=organisation, subscription=subscription, change=change)
    currency = subscription.currency
    new = [] if change.plan.is_free else new_prices(change=change, currency=currency)
    lines, start, end = price_lines(subscription=subscription, change=change, now=clock.now(),
                                    new=new)
    subtotal = money_sum((line.amount for line in lines), currency)
    tax = _tax(subtotal)
    total = subtotal + tax
    positive = total > zero(currency)
    credit_applied = min(subscription.credit_balance, total) if positive else zero(currency)
    renewal = None
    if not change.plan.is_free:
        full = money_sum((prorate(price.amount, quantity, Decimal(1))
                          for price, quantity in new), currency)
        renewal = full + _tax(full)
    return Priced(change=change, lines=lines, period_start=start, period_end=end,
                  subtotal=subtotal, tax=tax, total=total, credit_applied=credit_applied,
                  amount_due=max(total - credit_applied, zero(currency)),
                  credit_to_account=max(-total, zero(currency)), next_renewal_amount=renewal,
                  warnings=limit_warnings(organisation=organisation, plan=change.plan))


def subscription_for_pricing(*, organisation: Organisation) -> Subscription:
    return (Subscription.objects.select_related("plan", "plan_price", "team_price",
                                                "storage_price")
            .get(organisation=organisation))


@transaction.atomic
def quote_create(*, organisation: Organisation, acting_user: User, change: Change) -> Quote:
    """Save a priced change for review. Nothing changes until the quote is paid."""
    subscription = subscription_for_pricing(organisation=organisation)
    priced = quote_price(organisation=organisation, subscription=subscription, change=change)
    now = clock.now()
    quote = Quote.objects.create(
        organisation=organisation, created_by=acting_user,
        subscription_version=subscription.version, from_plan=subscription.plan,
        from_cycle=subscription.cycle, plan=change.plan, cycle=change.cycle,
        regular_licences=change.regular_licences, team_licences=change.team_licences,
        storage_units=change.storage_units, currency=subscription.currency,
        period_start=priced.period_start, period_end=priced.period_end,
        subtotal=priced.subtotal, tax=priced.tax, total=priced.total,
        credit_applied=priced.credit_applied, amount_due=priced.amount_due,
        credit_to_account=priced.credit_to_account,
        next_renewal_amount=priced.next_renewal_amount, warnings=priced.warnings,
        created_at=now, expires_at=now + dt.timedelta(minutes=settings.KANRI_QUOTE_MINUTES))
    QuoteLine.objects.bulk_create(
        QuoteLine(quote=quote, kind=line.kind, price=line.price, plan=line.price.plan,
                  addon=line.price.addon, quantity=line.quantity, unit_amount=line.price.amount,
                  fraction=line.fraction, amount=line.amount, period_start=line.period_start,
                  period_end=line.period_end)
        for line in priced.lines)
    return quote
