"""Text in the charset an email declares, read with what senders really put under that
name: bodies, and headers (RFC 2047 encoded words and raw 8-bit bytes) alike.

GB2312 mail is often really GBK or GB18030 (朱镕基: 镕 is GBK), Big5 often
Big5-HKSCS or Microsoft's CP950, ISO-2022-JP often carries half-width katakana, the
JIS X 0213 characters of ISO-2022-JP-2004, or the NEC and IBM rows of Microsoft's
CP932 (①, ㈱, 髙). Each label is read with the first of its readings that decodes the
bytes whole, so a superset that reads them never leaves a replacement character.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from functools import lru_cache

# A declared charset -> the codecs that read it, tried in order, before the label itself.
SUPERSETS: dict[str, tuple[str, ...]] = {
    "gb2312": ("gb18030",),
    "gbk": ("gb18030",),
    "x-gbk": ("gb18030",),
    "cp936": ("gb18030",),
    "big5": ("big5hkscs", "cp950"),
    "x-big5": ("big5hkscs", "cp950"),
    "iso-2022-jp": ("iso2022_jp_ext", "iso2022_jp_2004", "x-iso-2022-jp-cp932"),
    "csiso2022jp": ("iso2022_jp_ext", "iso2022_jp_2004", "x-iso-2022-jp-cp932"),
    "shift_jis": ("cp932", "shift_jis_2004"),
    "x-sjis": ("cp932", "shift_jis_2004"),
    "euc-jp": ("euc_jp", "euc_jis_2004"),
    "ks_c_5601-1987": ("cp949",),
    "euc-kr": ("cp949",),
    "iso-8859-1": ("cp1252",),  # the web's rule: Latin-1 labels are Windows-1252 in practice
    "us-ascii": ("utf-8",),
    "ascii": ("utf-8",),
}
CP932_JIS = "x-iso-2022-jp-cp932"  # Microsoft's ISO-2022-JP (CP50220/50221): no codec in Python

# RFC 2047's encoded word; a charset may carry an RFC 2231 language (utf-8*en)
ENCODED_WORD = re.compile(rb"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
BLANK = re.compile(rb"[ \t]*")
FOLD = re.compile(r"\r?\n(?=[ \t])")
FOLD_BYTES = re.compile(rb"\r?\n(?=[ \t])")
JIS_ESCAPE = re.compile(rb"\x1b[$(]")


def readings(declared: str) -> tuple[str, ...]:
    """The codecs that read text labelled `declared`, best first, ending with UTF-8."""
    label = declared.strip().strip('"').lower()
    return tuple(dict.fromkeys((*SUPERSETS.get(label, ()), label, "utf-8")))


def decode(data: bytes, declared: str, *also: str) -> str:
    """`data` read as the first reading of `declared` (then of each of `also`) that decodes it
    whole; failing all, the first known one with replacement characters for the bad bytes."""
    candidates = [c for label in (declared, *also) if label for c in readings(label)]
    for name in dict.fromkeys(candidates):
        try:
            return _decode(data, name)
        except (LookupError, UnicodeDecodeError):
            continue
    for name in candidates:
        try:
            return _decode(data, name, "replace")
        except LookupError:  # an unknown label
            continue
    return data.decode("utf-8", "replace")


def _decode(data: bytes, name: str, errors: str = "strict") -> str:
    if name == CP932_JIS:
        return _jis_as_cp932(data).decode("cp932", errors)
    if not _known(name):
        raise LookupError(name)
    return data.decode(name, errors)


@lru_cache(maxsize=256)
def _known(name: str) -> bool:
    try:
        codecs.lookup(name)
    except LookupError:
        return False
    return True


def header(raw: str, *charsets: str) -> str:
    """A header's text from its raw value as the email package keeps it (8-bit bytes as
    surrogate escapes): RFC 2047 encoded words decoded, each run of adjacent words of one
    charset as one text, so a character split between two words reads whole; raw 8-bit
    text read as UTF-8, then as `charsets` (the message's), and ISO-2022-JP escapes as
    ISO-2022-JP. Whitespace is left as it is but unfolded."""
    if raw.isascii() and "=?" not in raw and "\x1b" not in raw:
        return FOLD.sub("", raw)
    data = FOLD_BYTES.sub(b"", raw.encode("utf-8", "surrogateescape"))
    out: list[str] = []
    run: list[bytes] = []  # the bytes of the encoded words since the last text between them
    run_charset = ""
    end = 0
    for word in ENCODED_WORD.finditer(data):
        payload = _payload(word.group(2), word.group(3))
        if payload is None:  # not really an encoded word: left as it came
            continue
        charset = word.group(1).decode("ascii", "replace").partition("*")[0]
        between = data[end : word.start()]
        adjacent = bool(run) and BLANK.fullmatch(between) is not None  # the blank is no text (6.2)
        if run and not (adjacent and charset.lower() == run_charset.lower()):
            out.append(decode(b"".join(run), run_charset, *charsets))
            run = []
        if not adjacent:
            out.append(_raw(between, charsets))
        run.append(payload)
        run_charset, end = charset, word.end()
    if run:
        out.append(decode(b"".join(run), run_charset, *charsets))
    out.append(_raw(data[end:], charsets))
    return "".join(out)


def _payload(encoding: bytes, text: bytes) -> bytes | None:
    if encoding in b"qQ":
        return binascii.a2b_qp(text.replace(b"_", b" "), header=False)
    try:
        return base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        return None


def _raw(data: bytes, charsets: tuple[str, ...]) -> str:
    """Header text outside encoded words: ASCII as is, 8-bit bytes in the likeliest charset."""
    if data.isascii() and not JIS_ESCAPE.search(data):
        return data.decode("ascii")
    if JIS_ESCAPE.search(data):
        return decode(data, "iso-2022-jp", "utf-8", *charsets)
    return decode(data, "utf-8", *charsets)


def _jis_as_cp932(data: bytes) -> bytes:
    """ISO-2022-JP as Microsoft writes it (CP50220/50221), as the Shift_JIS bytes of CP932:
    each JIS X 0208 pair moved to its Shift_JIS place, which CP932 reads with the NEC and
    IBM rows that JIS X 0208 lacks, and half-width katakana (ESC ( I, or SO/SI) as single
    bytes. UnicodeDecodeError for anything else."""
    out = bytearray()
    mode = "ascii"  # ascii | jis | kana
    i = 0
    while i < len(data):
        byte = data[i]
        if byte == 0x1B:
            sequence = data[i + 1 : i + 3]
            mode = {b"$B": "jis", b"$@": "jis", b"(I": "kana", b"(B": "ascii", b"(J": "ascii"}.get(sequence, "")
            if not mode:
                raise UnicodeDecodeError(CP932_JIS, data, i, i + 3, "an escape this reading does not know")
            i += 3
        elif byte in (0x0E, 0x0F):  # SO / SI: half-width katakana in and out
            mode = "kana" if byte == 0x0E else "ascii"
            i += 1
        elif mode == "jis" and byte not in b"\r\n":
            if i + 1 >= len(data) or not (0x21 <= byte <= 0x7E and 0x21 <= data[i + 1] <= 0x7E):
                raise UnicodeDecodeError(CP932_JIS, data, i, i + 2, "not a JIS pair")
            first, second = byte, data[i + 1]
            lead = (first - 0x21) // 2 + 0x81
            out.append(lead + 0x40 if lead > 0x9F else lead)
            if first % 2:
                out.append(second + (0x1F if second < 0x60 else 0x20))
            else:
                out.append(second + 0x7E)
            i += 2
        elif mode == "kana" and 0x21 <= byte <= 0x5F:
            out.append(byte + 0x80)
            i += 1
        else:
            out.append(byte)
            i += 1
    return bytes(out)
