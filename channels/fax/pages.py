"""The page count of a fax document, read from the file itself: pypdf for PDF,
Pillow's frame count for TIFF (a multi-page TIFF holds one frame per page)."""

from __future__ import annotations

import io

import pypdf
from PIL import Image, UnidentifiedImageError
from pypdf.errors import PyPdfError

from router.errors import ContactRouterError

PDF = "application/pdf"
TIFF = "image/tiff"


class Unreadable(ContactRouterError, ValueError):
    """A fax document whose pages cannot be counted (damaged, encrypted, not what it claims)."""


def kind_of(data: bytes, content_type: str = "", filename: str = "") -> str | None:
    """PDF or TIFF by the file's own signature; the declared type and name only when it has none."""
    if data.startswith(b"%PDF-"):
        return PDF
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return TIFF
    name = filename.lower()
    if content_type == PDF or name.endswith(".pdf"):
        return PDF
    if content_type in (TIFF, "image/tif") or name.endswith((".tif", ".tiff")):
        return TIFF
    return None


def count(data: bytes, kind: str) -> int:
    """The number of pages; raises Unreadable with the reason."""
    if kind == PDF:
        try:
            reader = pypdf.PdfReader(io.BytesIO(data))
            if reader.is_encrypted:
                reader.decrypt("")  # most "encrypted" fax PDFs only restrict printing
            return len(reader.pages)
        except (PyPdfError, ValueError, KeyError, TypeError, NotImplementedError) as exc:
            raise Unreadable(f"not a readable PDF ({type(exc).__name__}: {exc})") from None
    try:
        with Image.open(io.BytesIO(data)) as image:
            return getattr(image, "n_frames", 1)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise Unreadable(f"not a readable TIFF ({type(exc).__name__}: {exc})") from None
