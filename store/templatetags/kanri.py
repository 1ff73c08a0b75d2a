"""Template helpers: money shown in the active language, never with half a yen; and `capture`,
which renders a piece of markup once for a page that repeats it on every row."""
from decimal import Decimal

from django import template
from django.utils.safestring import mark_safe
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


class CaptureNode(template.Node):
    def __init__(self, nodelist, name: str):
        self.nodelist, self.name = nodelist, name

    def render(self, context) -> str:
        # The body's output is already escaped by its own rendering: safe to print as it is.
        context[self.name] = mark_safe(self.nodelist.render(context))
        return ""


@register.tag
def capture(parser, token):
    """{% capture as name %}markup{% endcapture %}: renders the markup once into `name`, so a
    table prints the same piece on every row as one variable."""
    bits = token.split_contents()
    if len(bits) != 3 or bits[1] != "as":
        raise template.TemplateSyntaxError("Use {% capture as name %}...{% endcapture %}.")
    nodelist = parser.parse(("endcapture",))
    parser.delete_first_token()
    return CaptureNode(nodelist, bits[2])
