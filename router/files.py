"""Files people send us (visitors' uploads, agents' attachments): what the bytes really are,
read from their first bytes, never from what the browser claims; an image must also open
as one (Pillow). Multipart parts read no further than their cap, and display names made
safe to show."""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Sequence
from urllib.parse import unquote

from aiohttp import BodyPartReader
from PIL import Image, UnidentifiedImageError

SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
)


def sniff(data: bytes) -> str:
    """The type the bytes are (by their signature), or "" when unknown."""
    for signature, content_type in SIGNATURES:
        if data.startswith(signature):
            return content_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return ""


def checked_type(data: bytes, allowed: Sequence[str]) -> str:
    """The type the bytes are, if it is one of `allowed` (an image must also open as one);
    "" when refused. The agents' inbox checks its files with this too."""
    content_type = sniff(data)
    if content_type not in allowed or (content_type.startswith("image/") and not _is_image(data)):
        return ""
    return content_type


def allowed_names(allowed: Sequence[str]) -> str:
    return ", ".join(t.split("/")[1].upper() for t in allowed)


async def read_capped(part: BodyPartReader, cap: int) -> bytes | None:
    """A multipart file part's bytes, read no further than one byte past `cap`: None when over it."""
    data = await part.read_chunk(cap + 1)
    while len(data) <= cap and (chunk := await part.read_chunk(cap + 1 - len(data))):
        data += chunk
    return None if len(data) > cap else data


def _is_image(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return False
    return True


def safe_filename(name: str | None) -> str:
    """A display name: the last path part, control and direction characters dropped, 120
    characters at most. Browsers percent-encode quotes and line breaks in it; so do clients."""
    name = re.split(r"[\\/]", unquote(name or ""))[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip()
    return name[:120] or "file"
