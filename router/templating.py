"""Jinja2 environments over templates/: one for our own pages and messages, one
sandboxed for templates that non-engineers write (campaign texts, canned replies).

templates/ sits beside the packages in the checkout (the layout the product's
owner fixed). The router package reaches it as its resource "templates": in the
checkout router/templates links to it (an editable install reads the checkout's
files), and a wheel carries a copy as package data, so an installed copy renders
the same pages. A deployment may use its own folder instead (TEMPLATES_DIR, read
into Settings): each process applies it once at start-up with `use`.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from router import formats, i18n
from router.terms import TERMS


def _packaged() -> Path:
    """The templates installed with the router package: a folder on disk, as the
    loader and the inbox's static files read it (a wheel is installed unpacked)."""
    return Path(str(resources.files(__package__) / "templates"))


_folder = _packaged()


def use(folder: str) -> None:
    """Read templates from `folder` from now on ("" for the installed ones). Called once
    at start-up, before any page is rendered."""
    global _folder
    _folder = Path(folder) if folder else _packaged()
    pages.cache_clear()


def folder() -> Path:
    """Where the templates are read from."""
    return _folder


@cache
def pages(locale: str = i18n.SOURCE) -> jinja2.Environment:
    """Our own templates (inbox pages, widget, branded mail) in `locale`: everything escaped
    for HTML unless a template says otherwise, and a missing variable is an error, not a blank.

    One environment per locale, each with its catalogue installed for `{% trans %}` and
    `_()`: new-style gettext, so a translation is escaped like any other value and its
    placeholders are filled by name (`_("Hello %(name)s", name=...)`). Dates, numbers and
    money are written the locale's way by the filters of router/formats.py."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_folder),
        autoescape=jinja2.select_autoescape(["html", "htm", "xml", "j2"]),
        undefined=jinja2.StrictUndefined,
        enable_async=False,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.i18n"],
    )
    catalogue = i18n.translations(locale)
    env.install_gettext_translations(catalogue, newstyle=True)  # type: ignore[attr-defined]
    env.globals["term"] = lambda value: catalogue.gettext(TERMS[value]) if value in TERMS else value
    env.globals["locale"] = locale
    # the desk scripts' words (templates/inbox/*.js) and the stored values' names, for i18n.js
    env.globals["script_messages"] = i18n.messages_of(locale, "templates/inbox/*.js")
    env.globals["script_terms"] = {value: catalogue.gettext(message) for value, message in TERMS.items()}
    env.filters.update(
        datetime=lambda ms, timezone="UTC", width="medium": formats.datetime(ms, timezone, locale, width),
        date=lambda ms, timezone="UTC", width="short": formats.date(ms, timezone, locale, width),
        number=lambda value: formats.number(value, locale),
        percent=lambda share: formats.percent(share, locale),
        money=lambda amount, currency: formats.money(amount, currency, locale),
        language_name=lambda tag: i18n.language_name(tag, locale),
    )
    env.globals["html_lang"] = i18n.html_lang(locale)
    return env


def sandboxed(*, html: bool = False) -> ImmutableSandboxedEnvironment:
    """For templates written by users: no attribute tricks, no mutation of the data passed
    in, and a missing field raises UndefinedError naming it (with the template's line)."""
    return ImmutableSandboxedEnvironment(autoescape=html, undefined=jinja2.StrictUndefined)
