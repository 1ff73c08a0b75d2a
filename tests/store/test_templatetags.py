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


def test_fixed_url_is_the_routes_path_under_the_script_prefix_of_the_moment():
    from django.urls import reverse, set_script_prefix

    page = Template("{% fixed_url 'billing:details' %}|{% url 'billing:details' %}")
    assert page.render(Context()) == f"{reverse('billing:details')}|{reverse('billing:details')}"
    try:
        set_script_prefix("/kanri/")
        assert page.render(Context()) == "/kanri/manage/|/kanri/manage/"
    finally:
        set_script_prefix("/")
    assert page.render(Context()) == "/manage/|/manage/"


def test_fixed_url_takes_only_a_quoted_route_name():
    with pytest.raises(TemplateSyntaxError, match="quoted route name"):
        Template("{% fixed_url 'billing:invoice' number %}")
    with pytest.raises(TemplateSyntaxError, match="quoted route name"):
        Template("{% fixed_url name %}")
