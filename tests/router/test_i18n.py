"""The product's words in the reader's language: which catalogue a browser's
Accept-Language picks, and that our own pages render from it, escaped."""

from __future__ import annotations

import pytest

from router import i18n
from router.templating import pages


def test_catalogues_are_english_simplified_and_traditional_chinese() -> None:
    assert i18n.locales()[0] == "en"
    assert {"zh_Hans", "zh_Hant"} <= set(i18n.locales())


@pytest.mark.parametrize(
    ("header", "locale"),
    [
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh_Hans"),
        ("zh-TW", "zh_Hant"),  # a region only: Taiwan writes Traditional characters
        ("zh-HK,en;q=0.5", "zh_Hant"),
        ("zh-Hant", "zh_Hant"),
        ("zh", "zh_Hans"),
        ("yue", "zh_Hant"),  # Cantonese reads written Chinese in Traditional characters
        ("en-GB,zh-CN;q=0.5", "en"),
        ("fr, zh-TW;q=0.4", "zh_Hant"),  # French has no catalogue: the next choice
        ("en;q=0.2, zh-CN;q=0.9", "zh_Hans"),  # by q, not by order
        ("de", "en"),
        ("", "en"),
        ("*;q=1, ;;, zh-CN;q=abc", "en"),  # nonsense is no choice, never an error
    ],
)
def test_accept_language_picks_the_best_catalogue(header: str, locale: str) -> None:
    assert i18n.negotiate(header) == locale


def test_a_message_without_a_translation_stays_as_written() -> None:
    assert i18n.gettext("zh_Hans", "Log in") == "登录"
    assert i18n.gettext("zh_Hant", "Log in") == "登入"
    assert i18n.gettext("en", "Log in") == "Log in"
    assert i18n.gettext("zh_Hans", "no such message") == "no such message"


def test_pages_render_in_the_locale_with_lang_and_placeholders_escaped() -> None:
    template = pages("zh_Hans").from_string(
        '<html lang="{{ html_lang }}">{{ _("Confirm opt-out of %(what)s", what=what) }} {{ term("queued") }}'
    )
    html = template.render(what="<b>sms</b>")
    assert html == '<html lang="zh-Hans">确认退订 &lt;b&gt;sms&lt;/b&gt; 排队中'


def test_an_edited_catalogue_is_compiled_in_memory_when_its_mo_is_older(tmp_path, monkeypatch) -> None:
    folder = tmp_path / "locale" / "zh_Hans" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    (folder / "messages.po").write_text('msgid ""\nmsgstr ""\n\nmsgid "Log in"\nmsgstr "进入"\n', "utf-8")
    monkeypatch.setattr(i18n, "folder", lambda: tmp_path / "locale")
    i18n.locales.cache_clear()
    i18n.translations.cache_clear()
    try:
        assert i18n.locales() == ("en", "zh_Hans")
        assert i18n.gettext("zh_Hans", "Log in") == "进入"
    finally:
        i18n.locales.cache_clear()
        i18n.translations.cache_clear()


def test_a_customers_language_is_named_in_the_readers() -> None:
    assert i18n.language_name("yue", "zh_Hans") == "粤语"
    assert i18n.language_name("yue", "zh_Hant") == "粵語"
    assert i18n.language_name("yue", "en") == "Cantonese"
    assert i18n.language_name("not a tag", "en") == "not a tag"
