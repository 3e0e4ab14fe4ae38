"""A reply to a fax becomes a branded PDF: it opens, and its text is the reply."""

from __future__ import annotations

import io
from pathlib import Path

import pypdf
import pytest

from channels.fax.render import FONTS, reply_pdf
from tests.factories import deployment, outbound

TENANT = """
[[tenants]]
id = "acme"
name = "Acme Energy"
brand_color = "#c2410c"
timezone = "Europe/London"

[[tenants.queues]]
id = "support"
"""
REPLY = "Dear Ms Zoë Müller,\n\nWe have corrected your meter reading. Привет from the billing team — thank you."


def read(pdf: bytes) -> list[str]:
    """Each page's text, as a fax machine's reader would get it."""
    return [page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages]


def tenant():
    return deployment(TENANT).tenants[0]


@pytest.mark.skipif(not any(regular.is_file() for regular, _bold in FONTS), reason="DejaVu Sans is not installed")
def test_a_reply_pdf_opens_and_holds_the_reply_in_unicode_under_the_tenants_name() -> None:
    message = outbound(channel="fax", to="+15551234567", body=REPLY, subject="Your meter")
    rendered = reply_pdf(tenant(), message)
    [page] = read(rendered.pdf)
    flat = " ".join(page.split())
    assert "Acme Energy" in flat
    assert "To: +15551234567" in flat and "Subject: Your meter" in flat
    assert " ".join(REPLY.split()) in flat
    assert "Page 1 of 1" in flat
    assert (rendered.pages, rendered.note) == (1, "")
    metadata = pypdf.PdfReader(io.BytesIO(rendered.pdf)).metadata
    assert (metadata.title, metadata.author) == ("Your meter", "Acme Energy")


def test_a_long_reply_wraps_onto_numbered_pages() -> None:
    paragraph = "Your account has been reviewed line by line and every charge is explained below. " * 12
    body = "\n\n".join(f"{n}. {paragraph}" for n in range(1, 9))
    rendered = reply_pdf(tenant(), outbound(channel="fax", to="+15551234567", body=body))
    pages = read(rendered.pdf)
    assert rendered.pages == len(pages) > 1
    for number, text in enumerate(pages, start=1):
        assert f"Page {number} of {len(pages)}" in text
        assert "Acme Energy" in text  # the header on every page
    flat = " ".join(" ".join(pages).split())
    assert "8. Your account has been reviewed" in flat


def test_without_a_unicode_font_the_text_is_transliterated_and_noted(tmp_path: Path) -> None:
    missing = (tmp_path / "NoSuchFont.ttf", tmp_path / "NoSuchFont-Bold.ttf")
    rendered = reply_pdf(tenant(), outbound(channel="fax", to="+15551234567", body=REPLY), fonts=missing)
    flat = " ".join(" ".join(read(rendered.pdf)).split())
    assert "Dear Ms Zoë Müller" in flat  # Latin-1 survives
    assert "from the billing team - thank you" in flat  # the dash is spelt plainly
    assert "Привет" not in flat
    assert rendered.note == "no Unicode font installed (DejaVu Sans): text outside Latin-1 transliterated"


@pytest.mark.skipif(not any(regular.is_file() for regular, _bold in FONTS), reason="DejaVu Sans is not installed")
def test_characters_the_font_cannot_draw_are_replaced_and_noted() -> None:
    rendered = reply_pdf(tenant(), outbound(channel="fax", to="+15551234567", body="Order 日本 received"))
    assert "Order ?? received" in " ".join(read(rendered.pdf)[0].split())
    assert rendered.note.startswith("no glyph for '日本' in DejaVuSans.ttf")
