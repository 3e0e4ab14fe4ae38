"""A reply to a fax becomes a branded PDF: it opens, and its text is the reply."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pypdf
import pytest

from channels.fax import fonts
from channels.fax.render import reply_pdf
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


@pytest.mark.skipif(fonts.latin() is None, reason="DejaVu Sans is not installed")
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


@pytest.mark.skipif(fonts.latin() is None, reason="DejaVu Sans is not installed")
def test_characters_no_font_can_draw_are_replaced_and_noted(tmp_path: Path) -> None:
    rendered = reply_pdf(tenant(), outbound(channel="fax", to="+15551234567", body="Order \U00010000 received"))
    assert "Order ? received" in " ".join(read(rendered.pdf)[0].split())
    assert rendered.note.startswith("no glyph for '\U00010000' in DejaVuSans.ttf")


@pytest.mark.skipif(fonts.latin() is None, reason="DejaVu Sans is not installed")
def test_without_the_cjk_font_chinese_prints_as_question_marks_and_the_note_says_what_to_install(
    tmp_path: Path,
) -> None:
    missing = (tmp_path / "NoSuchCJK.ttc", tmp_path / "NoSuchCJK-Bold.ttc")
    body = "Order 日本 received"
    rendered = reply_pdf(tenant(), outbound(channel="fax", to="+15551234567", body=body), cjk_fonts=missing)
    assert "Order ?? received" in " ".join(read(rendered.pdf)[0].split())
    assert rendered.note == (
        "no glyph for '日本' in DejaVuSans.ttf: printed as '?' "
        "(install fonts-noto-cjk for Chinese, Japanese and Korean)"
    )


def cjk_installed() -> None:
    """Skip without Noto Sans CJK, with the reason; in CI (CI=true, where .ci/run installs
    fonts-noto-cjk) its absence is a failure, as a missing redis-server is."""
    if fonts.cjk("ja") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true and Noto Sans CJK (fonts-noto-cjk) is not installed", pytrace=False)
        pytest.skip("Noto Sans CJK is not installed (Debian's fonts-noto-cjk)")


def glyphs(pdf: bytes) -> str:
    """The PDF's text without whitespace (pypdf extracts CJK text with a space or a NUL
    between characters)."""
    return "".join("".join(read(pdf)).replace("\x00", "").split())


def embedded_fonts(pdf: bytes) -> set[str]:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    found = set()
    for page in reader.pages:
        for font in page["/Resources"]["/Font"].values():
            found.add(str(font.get_object()["/BaseFont"]).split("+", 1)[-1])
    return found


@pytest.mark.parametrize(
    ("body", "face"),
    [
        ("ご注文ありがとうございます。請求書を再発行しました。", "NotoSansCJKJP"),  # kana: Japanese
        ("朱镕基的问题已经解决。谢谢您的耐心。", "NotoSansCJKSC"),  # Simplified only
        ("我們已經處理了您的帳單。謝謝您的耐心。", "NotoSansCJKTC"),  # Traditional characters
        ("고객님의 요청을 처리했습니다.", "NotoSansCJKKR"),
    ],
)
def test_chinese_japanese_and_korean_print_in_the_face_of_their_script(body: str, face: str) -> None:
    cjk_installed()
    message = outbound(channel="fax", to="+15551234567", body=f"Dear Zoë,\n\n{body}", subject="Your bill")
    rendered = reply_pdf(tenant(), message)
    text = glyphs(rendered.pdf)
    assert "".join(body.split()) in text and "DearZoë," in text
    assert "?" not in text and rendered.note == ""
    assert face in embedded_fonts(rendered.pdf)
    assert not ({"NotoSansCJKJP", "NotoSansCJKSC", "NotoSansCJKTC", "NotoSansCJKKR"} - {face}) & embedded_fonts(
        rendered.pdf
    )


def test_a_tenant_name_in_chinese_prints_in_the_header() -> None:
    cjk_installed()
    chinese = deployment(TENANT.replace('name = "Acme Energy"', 'name = "顶峰能源"')).tenants[0]
    rendered = reply_pdf(chinese, outbound(channel="fax", to="+15551234567", body="Thank you."))
    assert "顶峰能源" in glyphs(rendered.pdf) and rendered.note == ""


def test_the_script_decides_the_face() -> None:
    assert fonts.script_of("Plain text, Zoë, Привет") is None
    assert fonts.script_of("東京の天気") == "ja"  # kana among the Han characters
    assert fonts.script_of("ｶﾀｶﾅ") == "ja"  # half-width kana
    assert fonts.script_of("朱镕基的问题") == "zh-Hans"
    assert fonts.script_of("這是繁體") == "zh-Hant"
    assert fonts.script_of("中文") == "zh-Hans"  # written alike in both: Simplified
    assert fonts.script_of("안녕하세요") == "ko"
