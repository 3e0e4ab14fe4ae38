"""The translation catalogues' commands (docs/i18n.md), Babel's own underneath:

    python -m ops.i18n extract          read the code and templates into router/locale/messages.pot
    python -m ops.i18n update           merge the template into every catalogue (new msgids untranslated)
    python -m ops.i18n init LOCALE      start a catalogue for a new language (e.g. ja, ko, vi)
    python -m ops.i18n compile          write each catalogue's .mo (CI does, before tests and the wheel)
    python -m ops.i18n check            exit 1 when a catalogue lacks, leaves untranslated or fuzzy a msgid

English is the source language: its catalogue carries no translations, so `check` skips it.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import CommandLineInterface, parse_mapping_cfg
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
LOCALE_DIR = ROOT / "router" / "locale"
TEMPLATE = LOCALE_DIR / "messages.pot"
CONFIG = ROOT / "babel.cfg"
SOURCE = "en"
KEYWORDS = ("_", "N_", "gettext", "ngettext:1,2")


def _pybabel(*args: str) -> None:
    CommandLineInterface().run(["pybabel", "-q", *args])


def extract() -> None:
    keywords = [arg for keyword in KEYWORDS for arg in ("-k", keyword)]
    with contextlib.chdir(ROOT):  # references relative to the checkout, the same on every machine
        _pybabel(
            "extract", "-F", str(CONFIG), "--no-default-keywords", *keywords, "--sort-by-file",
            "--project", "contactrouter", "--no-wrap", "-o", str(TEMPLATE), ".",
        )  # fmt: skip


def update() -> None:
    _pybabel("update", "-i", str(TEMPLATE), "-d", str(LOCALE_DIR), "--no-wrap", "--ignore-obsolete")


def init(locale: str) -> None:
    _pybabel("init", "-i", str(TEMPLATE), "-d", str(LOCALE_DIR), "-l", locale, "--no-wrap")


def compile_all() -> None:
    _pybabel("compile", "-d", str(LOCALE_DIR), "--statistics")


def extracted() -> Catalog:
    """What the code and templates ask for now, read the way `extract` reads it."""
    with CONFIG.open() as handle:
        method_map, options_map = parse_mapping_cfg(handle, str(CONFIG))
    keywords: dict[str, object] = {}
    for keyword in KEYWORDS:
        name, _, spec = keyword.partition(":")
        keywords[name] = tuple(int(n) for n in spec.split(",")) if spec else None
    catalog = Catalog()
    for filename, lineno, message, comments, context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=keywords, strip_comment_tags=True
    ):
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return catalog


def problems() -> list[str]:
    """Each catalogue's gaps against the code: missing, untranslated or fuzzy msgids."""
    wanted = extracted()
    found = []
    for po in sorted(LOCALE_DIR.glob("*/LC_MESSAGES/messages.po")):
        locale = po.parent.parent.name
        with po.open("rb") as handle:
            catalog = read_po(handle, locale=locale)
        for message in wanted:
            if not message.id:
                continue
            have = catalog.get(message.id, context=message.context)
            key = message.id if isinstance(message.id, str) else message.id[0]
            if have is None:
                found.append(f"{locale}: missing {key!r} (run extract and update)")
            elif locale != SOURCE and have.fuzzy:
                found.append(f"{locale}: fuzzy {key!r}")
            elif locale != SOURCE and not all(have.string if isinstance(have.string, tuple) else (have.string,)):
                found.append(f"{locale}: untranslated {key!r}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.i18n", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("extract", "update", "compile", "check"):
        commands.add_parser(name)
    commands.add_parser("init").add_argument("locale")
    args = parser.parse_args(argv)
    if args.command == "extract":
        extract()
    elif args.command == "update":
        update()
    elif args.command == "init":
        init(args.locale)
    elif args.command == "compile":
        compile_all()
    else:
        gaps = problems()
        for gap in gaps:
            print(gap, file=sys.stderr)
        return 1 if gaps else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
