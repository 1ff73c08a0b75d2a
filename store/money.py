"""All rounding and money formatting: each amount is rounded once, to its currency's minor unit.

It sits in `store/` (the site's lowest layer, beside the clock) because both the catalog and billing
stand on it.
"""
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

from babel.numbers import format_currency, format_decimal, get_currency_precision
from django.conf import settings
from djmoney.money import Money


def minor_unit_exponent(currency: str) -> int:
    """Digits after the decimal point in the currency's minor unit: JPY 0, USD 2."""
    return get_currency_precision(currency)


def is_whole_minor_units(money: Money) -> bool:
    """True when the amount has no fraction of the currency's minor unit (no half-yen)."""
    quantum = Decimal(1).scaleb(-minor_unit_exponent(str(money.currency)))
    return money.amount == money.amount.quantize(quantum)


def round_money(money: Money) -> Money:
    """Round half up to the currency's minor unit: the only rounding rule outside tax."""
    quantum = Decimal(1).scaleb(-minor_unit_exponent(str(money.currency)))
    return Money(money.amount.quantize(quantum, rounding=ROUND_HALF_UP), money.currency)


def per_month(money: Money, months: int) -> Money:
    """What an amount that covers `months` months costs per month, rounded once."""
    return round_money(Money(money.amount / months, money.currency))


def format_money(money: Money, language: str | None) -> str:
    """The amount as a person reads it in `language`: ¥2,040 or $20.00; never half a yen."""
    return format_amount(money.amount, str(money.currency), language)


@lru_cache(maxsize=4096)
def format_amount(amount: Decimal, currency: str, language: str | None) -> str:
    """format_money for an amount and currency apart; cached, as a sweep formats the same few
    prices for thousands of emails."""
    locale = {"ja": "ja_JP", "en": "en_US"}.get((language or "en")[:2], "en_US")
    quantum = Decimal(1).scaleb(-minor_unit_exponent(currency))
    return format_currency(amount.quantize(quantum, rounding=ROUND_HALF_UP), currency,
                           locale=locale)


def zero(currency: str) -> Money:
    return Money(0, currency)


def minimum_charge(currency: str) -> Money:
    """The smallest amount the processor charges in this currency (KANRI_MINIMUM_CHARGE)."""
    return Money(Decimal(settings.KANRI_MINIMUM_CHARGE.get(currency, "0")), currency)


def below_minimum_charge(amount: Money) -> bool:
    """Something is due, but less than the processor can charge: it is waived, not charged
    (the rule is billing.services.charging's)."""
    return zero(str(amount.currency)) < amount < minimum_charge(str(amount.currency))


def to_minor_units(money: Money) -> int:
    """The integer the processor expects: yen as they are, dollars in cents."""
    rounded = round_money(money)
    return int(rounded.amount.scaleb(minor_unit_exponent(str(money.currency))))


def from_minor_units(amount: int, currency: str) -> Money:
    """What the processor's integer means: yen as they are, cents as dollars."""
    currency = currency.upper()
    return Money(Decimal(amount).scaleb(-minor_unit_exponent(currency)), currency)


def prorate(unit: Money, quantity: int, fraction: Decimal) -> Money:
    """unit × quantity × fraction of the period, rounded once (one invoice line)."""
    return round_money(Money(unit.amount * quantity * fraction, unit.currency))


def tax_on(subtotal: Money, rate: Decimal, rounding: str) -> Money:
    """Tax on the sum of one rate's lines, rounded once (Japan's qualified-invoice rule).

    `rounding` is a decimal rounding mode; ROUND_DOWN truncates toward zero, so a credit's tax
    is never larger than the tax on the same charge.
    """
    quantum = Decimal(1).scaleb(-minor_unit_exponent(str(subtotal.currency)))
    return Money((subtotal.amount * rate).quantize(quantum, rounding=rounding), subtotal.currency)


def share_of(part: Money, whole: Money, amount: Money, rounding: str) -> Money:
    """`part` × amount ÷ whole, rounded once to the minor unit with `rounding` (a partial
    refund's tax: the invoice's tax in the proportion the refund bears to its total)."""
    quantum = Decimal(1).scaleb(-minor_unit_exponent(str(part.currency)))
    return Money((part.amount * amount.amount / whole.amount).quantize(quantum, rounding=rounding),
                 part.currency)


def refund_share(part: Money, whole: Money, *, paid: Money, refunded: Money, amount: Money,
                 taken: Money, rounding: str) -> Money:
    """What a refund of `amount` carries of `part` (an invoice's tax at one rate, or its gross),
    out of a payment of `paid` towards the invoice's `whole`, of which `refunded` went back
    before carrying `taken`: its proportion, rounded once and never more than is left; the
    refund that completes the payment takes all that is left, so the refunds of a payment
    refunded in full carry exactly the payment's share (SPEC "The books", invariant 4)."""
    left = share_of(part, whole, paid, rounding) - taken
    if refunded + amount >= paid:
        return left
    return min(share_of(part, whole, amount, rounding), left)


def money_sum(amounts, currency: str) -> Money:
    total = zero(currency)
    for amount in amounts:
        total += amount
    return total


def tax_by_rate(amounts: list[tuple[Decimal, Money]], rounding: str,
                currency: str) -> list[dict]:
    """Subtotal and tax per tax rate: each rate's lines summed, then taxed and rounded once.

    Returns [{"rate", "subtotal", "tax"}] ordered by rate, amounts as Money.
    """
    subtotals: dict[Decimal, Money] = {}
    for rate, amount in amounts:
        subtotals[rate] = subtotals.get(rate, zero(currency)) + amount
    return [{"rate": rate, "subtotal": subtotal, "tax": tax_on(subtotal, rate, rounding)}
            for rate, subtotal in sorted(subtotals.items())]


def breakdown_to_json(groups: list[dict]) -> list[dict]:
    """Tax groups as stored on a quote or invoice (exact decimal strings, no floats)."""
    return [{"rate": str(group["rate"]), "subtotal": str(group["subtotal"].amount),
             "tax": str(group["tax"].amount)} for group in groups]


def breakdown_from_json(rows: list[dict], currency: str) -> list[dict]:
    return [{"rate": Decimal(row["rate"]), "subtotal": Money(Decimal(row["subtotal"]), currency),
             "tax": Money(Decimal(row["tax"]), currency)} for row in rows]


def format_number(number: int, language: str | None) -> str:
    """A count as a person reads it in `language`: 12,340."""
    locale = {"ja": "ja_JP", "en": "en_US"}.get((language or "en")[:2], "en_US")
    return format_decimal(number, locale=locale)
