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
    total: int  # every conversation that matches
    conversations: list[str]  # this page's, newest first


def like_pattern(value: str) -> str:
    """`%value%` for ILIKE, its own wildcards escaped."""
    return "%" + value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _where(filters: Filters) -> list[str]:
    where = ["c.tenant = %(tenant)s"]
    if filters.customers is not None:
        where.append("c.customer = ANY(%(customers)s)")
    if filters.address:
        where.append(
            "(c.address ILIKE %(address)s OR c.customer IN"
            " (SELECT i.customer FROM identities i WHERE i.tenant = %(tenant)s AND i.identity ILIKE %(address)s))"
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
            "EXISTS (SELECT 1 FROM messages m WHERE m.tenant = c.tenant AND m.conversation = c.id"
            " AND (m.search @@ plainto_tsquery('simple', %(text)s)"
            " OR m.body ILIKE %(like)s OR m.subject ILIKE %(like)s))"
        )
    return where


async def search(archive: Archive, tenant: str, filters: Filters, *, offset: int = 0, limit: int = 50) -> Page:
    """One page of the tenant's conversations matching `filters`, and how many match in all."""
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
    }
    where = " AND ".join(_where(filters))  # built from the fixed clauses above only; values are parameters
    async with archive.reading() as conn:
        cur = await conn.execute(
            f"SELECT c.id, count(*) OVER () FROM conversations c WHERE {where}"
            " ORDER BY c.created_at DESC, c.id DESC OFFSET %(offset)s LIMIT %(limit)s".encode(),
            params,
        )
        rows = await cur.fetchall()
        if rows:
            return Page(rows[0][1], [row[0] for row in rows])
        if not offset:
            return Page(0, [])
        cur = await conn.execute(f"SELECT count(*) FROM conversations c WHERE {where}".encode(), params)
        return Page((await cur.fetchone())[0], [])
