"""Full-text search of a tenant's articles, ranked, Chinese and Japanese included.

Terms: text is NFKC-normalised and case-folded; a run of Chinese, Japanese or Korean
characters becomes its overlapping character bigrams (a lone character stays one term),
the way Lucene's CJK analyser reads text with no spaces between words; any other word
becomes its Snowball stem in the article's language (snowballstemmer), so "refunds" finds
"refund". A query is stemmed in each of the tenant's languages, since a searcher's language
is not known.

Index: one sorted set per term (`Keys.kb_term`) holding the articles with that term, scored
by its BM25 weight in each (title terms count three times); a query is one ZUNIONSTORE of
its terms' sets, each weighted by the term's inverse document frequency, so Redis adds the
scores up, and only the best come back. The index is written in the same transaction as
the article (router/knowledge/articles.py), so a search never finds a version that is not stored.
"""

from __future__ import annotations

import math
import re
import secrets
import unicodedata
from collections import Counter
from functools import cache

import snowballstemmer

from router.keys import Keys
from router.store import Store, text

# Han (with extensions A and compatibility), Hiragana, Katakana (with its phonetic extensions
# and the prolonged sound mark), Hangul syllables.
_CJK = "\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_TOKEN = re.compile(rf"(?P<cjk>[{_CJK}]+)|(?P<word>(?:(?![{_CJK}])[^\W_])+)")
_LANGUAGES = {
    "ar": "arabic", "da": "danish", "de": "german", "el": "greek", "en": "english", "es": "spanish",
    "fi": "finnish", "fr": "french", "hu": "hungarian", "id": "indonesian", "it": "italian", "nl": "dutch",
    "no": "norwegian", "nb": "norwegian", "pt": "portuguese", "ro": "romanian", "ru": "russian",
    "sv": "swedish", "tr": "turkish",
}  # fmt: skip
TITLE_WEIGHT = 3
K1, B, AVERAGE_TERMS = 1.2, 0.75, 150  # BM25's constants; an assumed average length keeps one article's weights its own
MAX_QUERY_TERMS = 32
CANDIDATES = 200  # ranked articles read before filtering by status, category and locale
# A match scoring under this share of the best one is noise (one shared bigram, "ード" of
# "パスワード" in "クレジットカード"), not an answer: left out.
RELEVANCE = 0.25


@cache
def _stemmer(language: str) -> snowballstemmer.stemmer | None:
    name = _LANGUAGES.get(language.split("-")[0].lower())
    return snowballstemmer.stemmer(name) if name else None


def terms(value: str, locale: str = "en") -> list[str]:
    """The index terms of a text written in `locale`, in order, repeated as often as they occur."""
    stemmer = _stemmer(locale)
    found: list[str] = []
    for match in _TOKEN.finditer(unicodedata.normalize("NFKC", value).casefold()):
        run = match.group("cjk")
        if run:
            found.extend([run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)])
        else:
            word = match.group("word")
            found.append(stemmer.stemWord(word) if stemmer else word)
    return found


def query_terms(value: str, locales: list[str]) -> list[str]:
    """A query's distinct terms: each word stemmed in every locale given (and as typed)."""
    result: dict[str, None] = {}
    for locale in [*locales, "und"]:  # "und": no stemmer, the word as typed
        for term in terms(value, locale):
            result[term] = None
    return list(result)[:MAX_QUERY_TERMS]


def weights(title: str, body: str, locale: str) -> dict[str, float]:
    """Each term of an article, with its BM25 weight (before the query's idf)."""
    counts = Counter(terms(title, locale) * TITLE_WEIGHT + terms(body, locale))
    length = sum(counts.values())
    norm = K1 * (1 - B + B * length / AVERAGE_TERMS)
    return {term: round(tf * (K1 + 1) / (tf + norm), 4) for term, tf in counts.items()}


async def ranked(store: Store, tenant: str, query: str, locales: list[str]) -> list[tuple[str, float]]:
    """Article ids matching any term of the query, best first, with their scores."""
    keys = Keys(tenant)
    wanted = query_terms(query, locales)
    if not wanted:
        return []
    async with store.redis.pipeline(transaction=False) as pipe:
        pipe.zcard(keys.kb_articles)
        for term in wanted:
            pipe.zcard(keys.kb_term(term))
        total, *frequencies = await pipe.execute()
    weighted = {
        keys.kb_term(term): math.log(1 + (total - df + 0.5) / (df + 0.5))
        for term, df in zip(wanted, frequencies, strict=True)
        if df
    }
    if not weighted:
        return []
    # ZUNIONSTORE, the best CANDIDATES, DEL in one transaction: Redis ranks, and only the top
    # comes back (a bare ZUNION returns every article holding any of the terms).
    scratch = keys.kb_query(secrets.token_hex(8))
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.zunionstore(scratch, weighted)
        pipe.zrevrange(scratch, 0, CANDIDATES - 1, withscores=True)
        pipe.delete(scratch)
        _count, rows, _deleted = await pipe.execute()
    floor = rows[0][1] * RELEVANCE if rows else 0
    return [(text(member), float(score)) for member, score in rows if score >= floor]
