"""Kanri's template helpers (store/templatetags/kanri.py)."""
import pytest
from django.template import Context, Template, TemplateSyntaxError


def test_capture_renders_its_markup_once_escaped_and_prints_it_where_asked():
    page = Template("{% load kanri %}{% capture as cell %}<b>{{ name }}</b>{% endcapture %}"
                    "[{{ cell }}][{{ cell }}]").render(Context({"name": "<i>Ann</i>"}))

    assert page == "[<b>&lt;i&gt;Ann&lt;/i&gt;</b>][<b>&lt;i&gt;Ann&lt;/i&gt;</b>]"


def test_capture_without_a_name_is_a_template_error():
    with pytest.raises(TemplateSyntaxError, match="capture as name"):
        Template("{% load kanri %}{% capture %}x{% endcapture %}")
