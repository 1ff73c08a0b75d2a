"""Template helpers: money shown in the active language, never with half a yen."""
from decimal import Decimal

from django import template
from django.utils.translation import get_language

from store.money import format_money

register = template.Library()


@register.filter
def money(value) -> str:
    return "" if value is None else format_money(value, get_language())


@register.filter
def megabytes(value: int) -> str:
    """1536 → '1.5 GB'; 512 → '512 MB'."""
    if value is None:
        return ""
    if value >= 1024:
        gigabytes = value / 1024
        return f"{gigabytes:g} GB"
    return f"{value} MB"


@register.filter
def percent(value) -> str:
    """0.5 → '50%'; 0.123456 → '12.35%'."""
    if value is None:
        return ""
    share = Decimal(value) * 100
    text = f"{share.quantize(Decimal('0.01')):f}".rstrip("0").rstrip(".")
    return f"{text}%"
