"""Template helpers: money shown in the active language, never with half a yen."""
from django import template
from django.utils.translation import get_language

from billing.money import format_money

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
