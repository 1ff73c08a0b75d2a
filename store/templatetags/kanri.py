"""Template helpers: money shown in the active language, never with half a yen; `capture`,
which renders a piece of markup once for a page that repeats it on every row; and `fixed_url`,
a link to a route without arguments, reversed once per process. Loaded in every template
(TEMPLATES' builtins)."""
from decimal import Decimal
from functools import lru_cache

from django import template
from django.conf import settings
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils.html import conditional_escape
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


@lru_cache(maxsize=512)
def _fixed_url(name: str, urlconf, script_prefix: str) -> str:
    return conditional_escape(reverse(name, urlconf=urlconf))


class FixedURLNode(template.Node):
    def __init__(self, name: str):
        self.name = name

    def render(self, context) -> str:
        return _fixed_url(self.name, get_urlconf() or settings.ROOT_URLCONF, get_script_prefix())


@register.tag
def fixed_url(parser, token):
    """{% fixed_url 'billing:details' %}: {% url %} for a route that takes no arguments. Its path
    depends only on the URLconf and the script prefix, so each process reverses it once (a
    page links to a dozen such routes; reversing one costs about twenty variables)."""
    bits = token.split_contents()
    if len(bits) != 2 or bits[1][0] not in "'\"" or bits[1][0] != bits[1][-1]:
        raise template.TemplateSyntaxError(
            "Use {% fixed_url 'name' %} with a quoted route name; {% url %} for the rest.")
    return FixedURLNode(bits[1][1:-1])
