"""Search across all history: the archive's conversations that match every filter given,
newest first, a page at a time with the total.

The archive holds every conversation the events streams named (those Redis still holds
too, a few seconds after each change), so it answers for every period, not only what the
streams keep. Text matches as words (PostgreSQL full text, `simple` configuration, any
Latin script) or as a substring through trigram indexes, which also finds Chinese and
Japanese, written without spaces between words. Every query is bound to one tenant.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:  # a type only: search runs on the archive's pool
    from router.records.archive import Archive

MAX_PAGE = 500
# Matches counted exactly up to here: counting every one of a common word's hundreds of
# thousands would take a second; "more than 1,000" tells a supervisor to narrow the search.
COUNT_CAP = 1000
_TEXT = "(m.search @@ plainto_tsquery('simple', %(text)s) OR m.body ILIKE %(like)s OR m.subject ILIKE %(like)s)"


class Filters(msgspec.Struct, frozen=True, kw_only=True):
    customers: Sequence[str] | None = None  # of these customers (None: any)
    address: str = ""  # an address of the conversation or its customer, whole or in part
    start: dt.datetime | None = None  # opened at or after
    end: dt.datetime | None = None  # opened at or before
    disposition: str = ""
    queue: str = ""
    agent: str = ""  # the agent who had it last
    text: str = ""  # in a message, note or subject


class Page(msgspec.Struct, frozen=True):
    total: int  # every conversation that matches, up to COUNT_CAP
    conversations: list[str]  # this page's, newest first
    more: bool = False  # more than COUNT_CAP match: `total` is COUNT_CAP


def like_pattern(value: str) -> str:
    """`%value%` for ILIKE, its own wildcards escaped."""
    return "%" + value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _where(filters: Filters) -> list[str]:
    where = ["c.tenant = %(tenant)s"]
    if filters.customers is not None:
        where.append("c.customer = ANY(%(customers)s)")
    if filters.address:
        # one set from two trigram indexes (an OR across them would read every conversation)
        where.append(
            "c.id IN (SELECT a.id FROM conversations a WHERE a.tenant = %(tenant)s AND a.address ILIKE %(address)s"
            " UNION SELECT o.id FROM identities i JOIN conversations o ON o.tenant = i.tenant"
            " AND o.customer = i.customer WHERE i.tenant = %(tenant)s AND i.identity ILIKE %(address)s)"
        )
    if filters.start is not None:
        where.append("c.created_at >= %(start)s")
    if filters.end is not None:
        where.append("c.created_at <= %(end)s")
    for name in ("disposition", "queue", "agent"):
        if getattr(filters, name):
            where.append(f"c.{name} = %({name})s")
    if filters.text:
        where.append(
            f"EXISTS (SELECT 1 FROM messages m WHERE m.tenant = c.tenant AND m.conversation = c.id AND {_TEXT})"
        )
    return where


async def search(archive: Archive, tenant: str, filters: Filters, *, offset: int = 0, limit: int = 50) -> Page:
    """One page of the tenant's conversations matching `filters`, and how many match (up to COUNT_CAP)."""
    limit = max(1, min(limit, MAX_PAGE))
    params = {
        "tenant": tenant,
        "customers": list(filters.customers or []),
        "address": like_pattern(filters.address),
        "start": filters.start,
        "end": filters.end,
        "disposition": filters.disposition,
        "queue": filters.queue,
        "agent": filters.agent,
        "text": filters.text,
        "like": like_pattern(filters.text),
        "offset": max(0, offset),
        "limit": limit,
        "cap": COUNT_CAP + 1,
    }
    clauses = _where(filters)
    where = " AND ".join(clauses)  # built from the fixed clauses above only; values are parameters
    order = " ORDER BY c.created_at DESC, c.id DESC OFFSET %(offset)s LIMIT %(limit)s"
    async with archive.reading() as conn:
        cur = await conn.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM conversations c WHERE {where} LIMIT %(cap)s) s".encode(), params
        )
        counted = (await cur.fetchone())[0]
        if counted == 0 or (counted <= COUNT_CAP and offset >= counted):
            return Page(counted, [])
        if filters.text and counted <= COUNT_CAP:
            # Few match: from the messages that match, then newest first. (Walking every conversation
            # newest first to find a few would look at them all; many match: that walk ends soon.)
            rest = " AND ".join(clauses[:-1])
            sql = (
                "WITH hits AS MATERIALIZED (SELECT DISTINCT m.conversation FROM messages m"
                f" WHERE m.tenant = %(tenant)s AND {_TEXT})"
                f" SELECT c.id FROM conversations c JOIN hits h ON h.conversation = c.id WHERE {rest}{order}"
            )
        else:
            sql = f"SELECT c.id FROM conversations c WHERE {where}{order}"
        cur = await conn.execute(sql.encode(), params)
        found = [row[0] for row in await cur.fetchall()]
    return Page(min(counted, COUNT_CAP), found, more=counted > COUNT_CAP)
