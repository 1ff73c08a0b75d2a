"""Japanese and English are both complete; the browser picks, the switcher overrides."""
import gettext
from pathlib import Path

import polib
import pytest
from django.urls import reverse

from tests.accounts.factories import AdminFactory

LOCALE = Path(__file__).resolve().parents[2] / "locale" / "ja" / "LC_MESSAGES"


def test_every_japanese_message_is_translated_and_none_is_fuzzy():
    po = polib.pofile(str(LOCALE / "django.po"))

    assert po.untranslated_entries() == []
    assert po.fuzzy_entries() == []
    assert len(po.translated_entries()) > 100


def test_the_compiled_catalog_matches_the_source():
    po = polib.pofile(str(LOCALE / "django.po"))
    with open(LOCALE / "django.mo", "rb") as handle:
        mo = gettext.GNUTranslations(handle)

    for entry in po.translated_entries():
        if entry.msgid_plural:
            assert mo.ngettext(entry.msgid, entry.msgid_plural, 1) == entry.msgstr_plural[0]
        else:
            assert mo.gettext(entry.msgid) == entry.msgstr, entry.msgid


def test_the_seeds_manage_label_is_used_verbatim():
    po = polib.pofile(str(LOCALE / "django.po"))

    assert po.find("Manage").msgstr == "管理"


@pytest.mark.django_db
@pytest.mark.parametrize("accept, heading", [("ja", "ログイン"), ("en-US,en;q=0.9", "Log in")])
def test_the_browser_language_picks(client, accept, heading):
    page = client.get(reverse("accounts:login"), HTTP_ACCEPT_LANGUAGE=accept).content.decode()

    assert f"<h1>{heading}</h1>" in page


@pytest.mark.django_db
def test_the_switcher_overrides_the_browser(client):
    client.force_login(AdminFactory())

    client.post(reverse("set_language"), {"language": "en", "next": reverse("billing:details")})
    page = client.get(reverse("billing:details"), HTTP_ACCEPT_LANGUAGE="ja").content.decode()

    assert "<h1>Subscription details</h1>" in page


@pytest.mark.django_db
def test_an_unknown_language_is_ignored(client):
    client.post(reverse("set_language"), {"language": "xx", "next": "/"})
    page = client.get(reverse("accounts:login"), HTTP_ACCEPT_LANGUAGE="ja").content.decode()

    assert "<h1>ログイン</h1>" in page
