"""Money is exact: one rounding per amount, to the currency's minor unit; never half a yen."""
from decimal import Decimal

from djmoney.money import Money
from hypothesis import given
from hypothesis import strategies as st

from store.money import format_money, is_whole_minor_units, per_month, round_money


def test_yen_round_to_whole_yen_and_dollars_to_cents():
    assert round_money(Money("1680.5", "JPY")) == Money(1681, "JPY")
    assert round_money(Money("1680.49", "JPY")) == Money(1680, "JPY")
    assert round_money(Money("13.995", "USD")) == Money("14.00", "USD")


def test_a_year_shown_per_month():
    assert per_month(Money(20160, "JPY"), 12) == Money(1680, "JPY")
    assert per_month(Money(100, "USD"), 12) == Money("8.33", "USD")


def test_formatting_never_shows_fractions_of_a_yen():
    assert format_money(Money("2040", "JPY"), "ja") == "￥2,040"
    assert format_money(Money("2040", "JPY"), "en") == "¥2,040"
    assert format_money(Money("20", "USD"), "en") == "$20.00"


@given(st.decimals(min_value=0, max_value=10**9, places=4, allow_nan=False))
def test_any_rounded_yen_amount_is_whole_and_within_half_a_yen(amount):
    rounded = round_money(Money(amount, "JPY"))

    assert is_whole_minor_units(rounded)
    assert abs(rounded.amount - amount) <= Decimal("0.5")


@given(st.decimals(min_value=0, max_value=10**9, places=4, allow_nan=False))
def test_any_rounded_dollar_amount_is_whole_cents(amount):
    rounded = round_money(Money(amount, "USD"))

    assert rounded.amount == rounded.amount.quantize(Decimal("0.01"))
    assert abs(rounded.amount - amount) <= Decimal("0.005")
