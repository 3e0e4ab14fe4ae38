"""The catalogues' commands: every catalogue compiles, and Simplified and Traditional
Chinese translate every message the code and templates ask for, none of them fuzzy."""

from __future__ import annotations

import shutil
from pathlib import Path

from babel.messages.mofile import read_mo

from ops import i18n


def test_every_catalogue_compiles(tmp_path: Path, monkeypatch) -> None:
    copy = tmp_path / "locale"
    shutil.copytree(i18n.LOCALE_DIR, copy, ignore=shutil.ignore_patterns("*.mo"))
    monkeypatch.setattr(i18n, "LOCALE_DIR", copy)
    i18n.compile_all()
    for locale in ("zh_Hans", "zh_Hant"):
        with (copy / locale / "LC_MESSAGES" / "messages.mo").open("rb") as handle:
            catalog = read_mo(handle)
        assert catalog.get("Log in").string in ("登录", "登入")


def test_chinese_catalogues_translate_every_message_of_the_code() -> None:
    assert i18n.problems() == []


def test_a_missing_or_fuzzy_message_is_reported(tmp_path: Path, monkeypatch) -> None:
    copy = tmp_path / "locale"
    shutil.copytree(i18n.LOCALE_DIR, copy, ignore=shutil.ignore_patterns("*.mo"))
    po = copy / "zh_Hant" / "LC_MESSAGES" / "messages.po"
    text = po.read_text("utf-8")
    text = text.replace('msgid "Log in"\nmsgstr "登入"', '#, fuzzy\nmsgid "Log in"\nmsgstr "登入"')
    text = text.replace('msgid "Log out"\nmsgstr "登出"\n', "")
    po.write_text(text, "utf-8")
    monkeypatch.setattr(i18n, "LOCALE_DIR", copy)
    assert sorted(i18n.problems()) == [
        "zh_Hant: fuzzy 'Log in'",
        "zh_Hant: missing 'Log out' (run extract and update)",
    ]
