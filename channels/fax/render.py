"""A reply to a fax, rendered to PDF with fpdf2.

The text comes from templates/fax/reply.txt; the page carries the tenant's name
on its brand colour at the top and "Page n of N" at the bottom, with the text
wrapped to the page. Unicode text needs a TrueType font (channels.fax.fonts):
DejaVu Sans where it is installed, and for Chinese, Japanese or Korean text the
Noto Sans CJK face of its script, with DejaVu Sans for what that face lacks.
Without DejaVu Sans, the PDF's core font can print Latin-1 only, so the text is
transliterated and the rendering carries a note saying so; characters no
installed font has a glyph for are printed as '?' and noted the same way.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from channels.fax import fonts as installed
from router.config import Tenant
from router.events import OutboundMessage
from router.templating import pages

TEMPLATE = "fax/reply.txt"
HEADER_MM = 18
# What Latin-1 lacks but everyday text is full of (typographic quotes and dashes).
PUNCTUATION = {
    "\u2013": "-",
    "\u2014": "-",
    "\u2018": "'",
    "\u2019": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u2026": "...",
    "\u20ac": "EUR",
    "\u2022": "*",
}
FONT_SIZE = 11


@dataclass(frozen=True)
class RenderedFax:
    pdf: bytes
    pages: int
    note: str = ""  # what could not be printed as written


def reply_pdf(
    tenant: Tenant,
    message: OutboundMessage,
    *,
    fonts: tuple[Path, Path] | None = None,
    cjk_fonts: tuple[Path, Path] | None = None,
) -> RenderedFax:
    """The PDF a fax reply is sent as. `fonts` (regular, bold) overrides the installed DejaVu
    Sans, and `cjk_fonts` the installed Noto Sans CJK collections."""
    sent = dt.datetime.fromtimestamp(message.occurred_at / 1000, _zone(tenant.timezone))
    text = (
        pages()
        .get_template(TEMPLATE)
        .render(
            to=message.to,
            sender=tenant.name or tenant.id,
            date=sent.strftime("%d %B %Y, %H:%M %Z"),
            subject=message.subject,
            body=message.body,
        )
    )
    pdf = _Page(tenant.name or tenant.id, _rgb(tenant.brand_color))
    pdf.set_title(message.subject or f"Fax from {tenant.name or tenant.id}")
    pdf.set_author(tenant.name or tenant.id)
    pdf.set_creator("contactrouter")
    latin = installed.latin(fonts)
    script = installed.script_of(text + pdf.brand_name)
    cjk = installed.cjk(script, cjk_fonts) if script else None
    # the CJK face draws the text when it has CJK (its Latin and punctuation match its
    # ideographs), DejaVu Sans what it lacks; else DejaVu Sans alone
    faces = [("cjk", cjk), ("latin", latin)] if cjk else [("latin", latin)]
    faces = [(name, pair) for name, pair in faces if pair is not None]
    note = ""
    if faces:
        drawable: set[int] = set()
        for name, pair in faces:
            pdf.add_font(name, fname=pair.regular.path, collection_font_number=pair.regular.index)
            pdf.add_font(name, style="B", fname=pair.bold.path, collection_font_number=pair.bold.index)
            drawable |= set(pdf.fonts[name].cmap)
        pdf.face = faces[0][0]
        pdf.set_fallback_fonts([name for name, _ in faces[1:]])
        missing = sorted({c for c in text + pdf.brand_name if ord(c) not in drawable and not c.isspace()})
        if missing:
            text = "".join("?" if c in missing else c for c in text)
            pdf.brand_name = "".join("?" if c in missing else c for c in pdf.brand_name)
            note = f"no glyph for {''.join(missing[:20])!r} in {' or '.join(p.regular.name for _, p in faces)}"
            note += ": printed as '?'"
            if script and cjk is None:
                note += f" (install {installed.CJK_PACKAGE} for Chinese, Japanese and Korean)"
    else:
        text, changed = _latin1(text)
        pdf.brand_name, _ = _latin1(pdf.brand_name)
        pdf.face = "helvetica"
        if changed:
            note = "no Unicode font installed (DejaVu Sans): text outside Latin-1 transliterated"
    pdf.add_page()
    pdf.set_font(pdf.face, size=FONT_SIZE)
    pdf.multi_cell(0, FONT_SIZE * 0.5, text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    return RenderedFax(bytes(pdf.output()), pdf.pages_count, note)


class _Page(FPDF):
    """A4 with the tenant's header band and numbered pages."""

    def __init__(self, title: str, color: tuple[int, int, int]) -> None:
        super().__init__(format="A4")
        self.brand_name = title
        self.color = color
        self.face = "helvetica"
        self.set_auto_page_break(auto=True, margin=20)
        self.set_margins(20, HEADER_MM + 10, 20)

    def header(self) -> None:
        self.set_fill_color(*self.color)
        self.rect(0, 0, self.w, HEADER_MM, style="F")
        self.set_xy(20, 4)
        self.set_text_color(255, 255, 255)
        self.set_font(self.face, style="B", size=16)
        self.cell(0, 10, self.brand_name)
        self.set_text_color(0, 0, 0)
        self.set_xy(self.l_margin, HEADER_MM + 10)
        self.set_font(self.face, size=FONT_SIZE)

    def footer(self) -> None:
        self.set_y(-15)
        self.set_font(self.face, size=9)
        self.set_text_color(90, 90, 90)
        self.cell(0, 10, f"Page {self.page_no()} of {{nb}}", align="C")
        self.set_text_color(0, 0, 0)


def _rgb(color: str) -> tuple[int, int, int]:
    if not re.fullmatch(r"#[0-9a-fA-F]{6}", color):
        return (31, 111, 235)  # the default brand colour
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def _zone(name: str) -> dt.tzinfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        return dt.UTC


def _latin1(text: str) -> tuple[str, bool]:
    """Text the core fonts can print: accents kept where Latin-1 has them, others
    decomposed to their base letter, the rest '?'. Returns it and whether anything changed."""
    out = []
    for char in text:
        if ord(char) < 256:
            out.append(char)
            continue
        base = unicodedata.normalize("NFKD", char).encode("latin-1", "ignore").decode("latin-1")
        out.append(PUNCTUATION.get(char) or base or "?")
    result = "".join(out)
    return result, result != text
