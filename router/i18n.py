"""The product's own words in the reader's language: gettext catalogues managed with Babel.

The catalogues live in router/locale/<locale>/LC_MESSAGES/messages.po (English is the
source language: its catalogue is empty and every message falls back to its msgid).
`python -m ops.i18n compile` writes the .mo files beside them; CI runs it before the tests
and before building the wheel, which carries them as package data. A checkout where a .po
is newer than its .mo (or has none) compiles that catalogue in memory, so a developer who
edited a translation sees it without a step to forget. Adding a language is adding a
catalogue: LOCALES lists what is found on disk.
"""

from __future__ import annotations

import fnmatch
import io
import logging
from functools import cache
from importlib import resources
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.core import get_global
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

log = logging.getLogger(__name__)

DOMAIN = "messages"
SOURCE = "en"  # the language the msgids are written in


def folder() -> Path:
    """Where the catalogues are installed with the router package."""
    return Path(str(resources.files(__package__) / "locale"))


@cache
def locales() -> tuple[str, ...]:
    """The locales we have a catalogue for, in Babel's spelling ("zh_Hans"), source first."""
    found = sorted(p.name for p in folder().iterdir() if (p / "LC_MESSAGES" / f"{DOMAIN}.po").is_file())
    return (SOURCE, *[name for name in found if name != SOURCE])


def parse(tag: str) -> str | None:
    """The supported locale a tag names ("zh-Hant", "zh_TW", "zh-HK", "zh", "en-GB"), or None.

    CLDR's likely subtags fill in the script a tag leaves out (zh_TW and zh_HK are written
    in Traditional characters, zh and zh_CN in Simplified), so a browser that names only a
    region still gets the right catalogue. (Babel's Locale.negotiate matches by aliases and
    would send zh-TW to no catalogue at all.)"""
    try:
        wanted = Locale.parse(tag.strip().replace("-", "_"))
    except (ValueError, TypeError, UnknownLocaleError):
        return None
    script = wanted.script or _likely_script(wanted)
    language = _MACROLANGUAGE.get(wanted.language, wanted.language)
    for name in locales():
        have = Locale.parse(name)
        if have.language == language and (have.script is None or have.script == script):
            return name
    return None


# Chinese languages a browser may name on their own; each reads the written Chinese of its
# script (Cantonese, yue, is written in Traditional characters in Hong Kong and Macau).
_MACROLANGUAGE = {"yue": "zh", "cmn": "zh", "wuu": "zh", "nan": "zh", "hak": "zh", "gan": "zh", "hsn": "zh"}


def _likely_script(locale: Locale) -> str | None:
    likely = get_global("likely_subtags")
    for key in (f"{locale.language}_{locale.territory}", locale.language):
        if key in likely:
            return Locale.parse(likely[key]).script
    return None


def negotiate(accept_language: str, default: str = SOURCE) -> str:
    """The best supported locale for an Accept-Language header, by its q values."""
    for tag in _preferences(accept_language):
        found = parse(tag)
        if found:
            return found
    return default


def _preferences(header: str) -> list[str]:
    ranked = []
    for position, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        if not tag or tag == "*":
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0:
            ranked.append((-q, position, tag.strip()))
    return [tag for _, _, tag in sorted(ranked)]


@cache
def translations(locale: str) -> NullTranslations:
    """The compiled catalogue of a supported locale (the source language has none)."""
    if locale == SOURCE or locale not in locales():
        return NullTranslations()
    base = folder() / locale / "LC_MESSAGES"
    po, mo = base / f"{DOMAIN}.po", base / f"{DOMAIN}.mo"
    if mo.is_file() and mo.stat().st_mtime >= po.stat().st_mtime:
        with mo.open("rb") as handle:
            return Translations(handle, domain=DOMAIN)
    log.info("compiling %s in memory: its .mo is missing or older (python -m ops.i18n compile)", po)
    with po.open("rb") as handle:
        catalog = read_po(handle, locale=locale, domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer, domain=DOMAIN)


@cache
def messages_of(locale: str, source: str) -> dict[str, str]:
    """The translations of the messages the files `source` names (a path as the catalogue
    records it, or a pattern: "templates/webchat/widget.js", "templates/inbox/*.js") ask for:
    the dictionary a script is given, so it carries its own words and no more. Read from the
    .po, which keeps where each message is used."""
    if locale == SOURCE or locale not in locales():
        return {}
    with (folder() / locale / "LC_MESSAGES" / f"{DOMAIN}.po").open("rb") as handle:
        catalog = read_po(handle, locale=locale, domain=DOMAIN)
    return {
        message.id: message.string
        for message in catalog
        if isinstance(message.id, str) and message.string and not message.fuzzy
        and any(fnmatch.fnmatchcase(path, source) for path, _line in message.locations)
    }


def gettext(locale: str, message: str) -> str:
    """`message` in `locale`, or as written when the catalogue has no translation ("" stays
    "": gettext's empty msgid is the catalogue's header)."""
    return translations(locale).gettext(message) if message else message


def N_(message: str) -> str:
    """Marks a message for extraction where it is defined; it is translated where shown."""
    return message


def display_name(locale: str) -> str:
    """A language's name written in itself ("简体中文"), for a language selector."""
    return _NAMES.get(locale) or Locale.parse(locale).get_display_name(locale) or locale


# Babel names zh_Hans "中文 (简体)"; people pick from lists that say it as below.
_NAMES = {"en": "English", "zh_Hans": "简体中文", "zh_Hant": "繁體中文"}


def language_name(tag: str, locale: str) -> str:
    """A customer's language ("yue", "zh-HK") named in the reader's locale ("粤语"), or the
    tag as given when Babel does not know it."""
    try:
        return Locale.parse(tag.replace("-", "_")).get_display_name(locale) or tag
    except (ValueError, TypeError, UnknownLocaleError):
        return tag


def html_lang(locale: str) -> str:
    """The BCP 47 tag for a page's lang attribute ("zh-Hant")."""
    return locale.replace("_", "-")
