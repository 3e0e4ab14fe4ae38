"""The fonts a fax reply is drawn in, found on this machine at run time.

DejaVu Sans (Debian's fonts-dejavu-core) draws Latin, Greek and Cyrillic but has no
Chinese, Japanese or Korean glyphs. Noto Sans CJK (Debian's fonts-noto-cjk) draws all
three: its collection holds one face per region, because the same Unicode character is
written differently in each (直, 骨 or 誤 in a Japanese and a Chinese hand), so the face
is chosen by the script of the text (`script_of`). The package is large (90 MB
installed), which is why it is found rather than shipped: `contactrouter config check`
warns when a tenant sends faxes and it is missing, and such a fax prints '?' for what
it cannot draw, with a note on the message saying so.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path

from router.config import Deployment

LATIN_PAIRS = (
    (
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
    ),
    (Path("/usr/share/fonts/dejavu/DejaVuSans.ttf"), Path("/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf")),
)
CJK_PAIRS = (
    (  # Debian and Ubuntu: fonts-noto-cjk
        Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
        Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc"),
    ),
    (  # Fedora: google-noto-sans-cjk-ttc-fonts
        Path("/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc"),
        Path("/usr/share/fonts/google-noto-cjk/NotoSansCJK-Bold.ttc"),
    ),
)
CJK_PACKAGE = "fonts-noto-cjk"
# The face of each region in Noto Sans CJK's collection (NotoSansCJK-Regular.ttc).
CJK_FACES = {"ja": 0, "ko": 1, "zh-Hans": 2, "zh-Hant": 3}


@dataclass(frozen=True)
class Face:
    """One font face: a file, and its face number when the file is a collection."""

    path: Path
    index: int = 0

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class FontPair:
    regular: Face
    bold: Face


def _pair(candidates: tuple[tuple[Path, Path], ...], index: int = 0) -> FontPair | None:
    for regular, bold in candidates:
        if regular.is_file():
            return FontPair(Face(regular, index), Face(bold if bold.is_file() else regular, index))
    return None


def latin(override: tuple[Path, Path] | None = None) -> FontPair | None:
    """DejaVu Sans, regular and bold (`override` instead, when given), or None when not installed."""
    return _pair((override,) if override is not None else LATIN_PAIRS)


def cjk(script: str, override: tuple[Path, Path] | None = None) -> FontPair | None:
    """Noto Sans CJK's face for the script (a key of CJK_FACES), or None when not installed."""
    return _pair((override,) if override is not None else CJK_PAIRS, CJK_FACES[script])


def script_of(text: str) -> str | None:
    """Which CJK face draws the text as its readers write: "ja" when it has kana, "ko" when it
    has hangul, else for Han characters "zh-Hant" when one of them is Traditional only (in
    Big5 but not in GB2312, as 們, 這, 會), else "zh-Hans"; None when it has no CJK at all."""
    han = traditional = False
    for char in text:
        if char < "\u1100":  # below every CJK block: most text, decided quickly
            continue
        name = unicodedata.name(char, "")
        if name.startswith(("HIRAGANA", "KATAKANA", "HALFWIDTH KATAKANA")):
            return "ja"
        if name.startswith(("HANGUL", "HALFWIDTH HANGUL")):
            return "ko"
        if name.startswith("CJK UNIFIED IDEOGRAPH") or name.startswith("CJK COMPATIBILITY IDEOGRAPH"):
            han = True
            traditional = traditional or (not _encodes(char, "gb2312") and _encodes(char, "big5"))
        elif "\u3000" <= char <= "\u303f" or "\uff00" <= char <= "\uffef":  # CJK punctuation, full-width forms
            han = True
    if not han:
        return None
    return "zh-Hant" if traditional else "zh-Hans"


def _encodes(char: str, codec: str) -> bool:
    try:
        char.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


def warnings(deployment: Deployment) -> list[str]:
    """What `config check` says about fax fonts: a tenant that sends faxes on a machine
    without the fonts their replies may need."""
    senders = [t.id for t in deployment.tenants if any(g.outbound_address for g in t.fax.gateways)]
    if not senders:
        return []
    found = []
    if latin() is None:
        found.append(
            f"tenants {', '.join(senders)} send faxes but DejaVu Sans is not installed: fax replies are "
            "printed in Latin-1 only (install Debian's fonts-dejavu-core)"
        )
    if cjk("ja") is None:
        found.append(
            f"tenants {', '.join(senders)} send faxes but Noto Sans CJK is not installed: Chinese, Japanese "
            f"and Korean in fax replies print as '?' (install Debian's {CJK_PACKAGE})"
        )
    return found
