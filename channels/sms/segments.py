"""How many SMS segments a body takes, and in which encoding.

A body written entirely in the GSM 03.38 alphabet goes as GSM-7: 160 septets in
one message, 153 per part once it has to be concatenated (the user data header
takes the rest). A character of the extension table (€, [, ], {, }, ...) costs
two septets, an escape and the character, and a part never ends between them.
Anything else sends the whole body as UCS-2: 70 UTF-16 code units in one
message, 67 per part; a character outside the Basic Multilingual Plane (most
emoji) is a surrogate pair, two units that are never split across parts either.
"""

from __future__ import annotations

from typing import Literal

Encoding = Literal["GSM-7", "UCS-2"]

# GSM 03.38 basic character set, in code order (the escape 0x1B left out: it is
# how extension characters are written, not a character of its own).
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
) - {"\x1b"}
# The extension table: each is sent as escape + character, two septets.
GSM_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM_SINGLE, GSM_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


def segments(body: str) -> tuple[Encoding, int]:
    """(encoding, number of segments) of an SMS body; an empty body takes none."""
    if all(char in GSM_BASIC or char in GSM_EXTENSION for char in body):
        sizes = [2 if char in GSM_EXTENSION else 1 for char in body]
        return "GSM-7", _count(sizes, GSM_SINGLE, GSM_PART)
    sizes = [2 if ord(char) > 0xFFFF else 1 for char in body]
    return "UCS-2", _count(sizes, UCS2_SINGLE, UCS2_PART)


def _count(sizes: list[int], single: int, part: int) -> int:
    """Parts needed for characters of these sizes: one if all fit in a single
    message, else parts filled in order, a character that does not fit whole
    starting the next part."""
    total = sum(sizes)
    if total <= single:
        return 1 if total else 0
    parts, used = 1, 0
    for size in sizes:
        if used + size > part:
            parts, used = parts + 1, 0
        used += size
    return parts
