"""Supervisors' conversation search: by customer, address, text, date, disposition, queue and
agent, a page of 50 at a time with the total.

There is no separate search index: candidates come from what the keyspace already
holds. An address (or customer id) finds the customer's conversations through the
identity map; otherwise the tenant's events stream, whose entry ids are times, gives
the conversations opened in the date range (as far back as the stream is kept).
The other filters are checked on each candidate, and the work is bounded. With an
archive (DATABASE_URL), the archive answers instead, over every conversation it holds,
however old (router/records/search.py); rows are read where they live now.
"""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import msgspec
from aiohttp import web

from router import conversations, customers, events, names
from router.app.inbox.access import tenant_of
from router.app.inbox.rendering import render
from router.app.inbox.sessions import USER, require_role
from router.appkeys import DEPLOYMENT, STORE
from router.config import Tenant
from router.errors import ContactRouterError
from router.keys import Keys
from router.records import search as records_search
from router.store import Store, text

PAGE_SIZE = 50
MAX_PAGE = 10_000
MAX_CANDIDATES = 2000  # conversations looked at per search
SCAN_BATCH = 500
DEFAULT_DAYS = 7


class Query(msgspec.Struct, frozen=True, kw_only=True):
    tenant: str
    address: str = ""  # an address, whole or in part
    customer: str = ""  # a customer id
    text: str = ""  # in any message, note or subject
    date_from: dt.date | None = None  # in the tenant's time zone, inclusive
    date_to: dt.date | None = None
    disposition: str = ""
    queue: str = ""  # the queue it was in last
    agent: str = ""  # the agent who had it last
    page: int = 1


class SearchError(ContactRouterError, ValueError):
    """A query that cannot run (a date that is not a date, say)."""


def _glob_escape(value: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", value)


async def _customers_by_exact_address(store: Store, tenant: Tenant, address: str) -> set[str]:
    keys = Keys(tenant.id)
    found: set[str] = set()
    for channel in ("sms", "email", "telegram", "webchat"):
        try:
            ident = customers.identity(channel, customers.normalise(channel, address))
        except customers.InvalidAddress:
            continue
        if owner := await store.redis.hget(keys.identities, ident):
            found.add(text(owner))
    return found


async def _customers_by_address(store: Store, tenant: Tenant, address: str) -> set[str]:
    keys = Keys(tenant.id)
    found = await _customers_by_exact_address(store, tenant, address)  # an exact address first
    if found:
        return found
    scanned = 0
    async for _ident, owner in store.redis.hscan_iter(
        keys.identities, match=f"*{_glob_escape(address.lower())}*", count=SCAN_BATCH
    ):
        found.add(text(owner))
        scanned += 1
        if scanned >= MAX_CANDIDATES:
            break
    return found


def _bounds_ms(tenant: Tenant, query: Query) -> tuple[int, int]:
    zone = ZoneInfo(tenant.timezone)
    today = dt.datetime.now(zone).date()
    start = query.date_from or (query.date_to or today) - dt.timedelta(days=DEFAULT_DAYS)
    end = query.date_to or today
    start_ms = int(dt.datetime.combine(start, dt.time(), zone).timestamp() * 1000)
    end_ms = int(dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), zone).timestamp() * 1000) - 1
    return start_ms, end_ms


async def _opened_between(store: Store, tenant: Tenant, start_ms: int, end_ms: int) -> list[str]:
    """Conversations whose first contact was queued in the window, newest first."""
    stream = Keys(tenant.id).events
    found: dict[str, None] = {}
    high = f"{end_ms}-18446744073709551615"
    while len(found) < MAX_CANDIDATES:
        rows = await store.redis.xrevrange(stream, max=high, min=f"{start_ms}-0", count=SCAN_BATCH)
        for _entry_id, fields in rows:
            try:
                event = events.decode_state(fields[b"e"])
            except (msgspec.DecodeError, msgspec.ValidationError, KeyError):
                continue
            if isinstance(event, events.Queued) and event.conversation:
                found.setdefault(event.conversation)
        if len(rows) < SCAN_BATCH:
            break
        high = f"({text(rows[-1][0])}"
    return list(found)


class Results(msgspec.Struct, kw_only=True):
    rows: list[dict[str, object]]  # this page's, newest first
    total: int  # every conversation that matches (without an archive: of those looked at)
    page: int
    pages: int  # at least this many (more: the total is a floor)
    more: bool = False  # more match than the archive counts (records.search.COUNT_CAP): `total` is that cap


def _within(query: Query, record: dict[str, str], start_ms: int, end_ms: int, dated: bool) -> bool:
    created = int(record.get("created_at") or 0)
    return (
        (not dated or start_ms <= created <= end_ms)
        and (not query.disposition or record.get("disposition") == query.disposition)
        and (not query.queue or record.get("queue") == query.queue)
        and (not query.agent or record.get("agent") == query.agent)
    )


async def _row(store: Store, tenant: Tenant, conversation: str, record: dict[str, str]) -> dict[str, object]:
    created = int(record.get("created_at") or 0)
    return {
        "conversation": conversation,
        "customer": record.get("customer", ""),
        "name": await names.of_conversation(store, tenant.id, record),
        "address": names.formatted_address(*names.where(record)),
        "channel": record.get("last_channel") or record.get("channel", ""),
        "state": record.get("state", ""),
        "queue": next((q.name or q.id for q in tenant.queues if q.id == record.get("queue")), record.get("queue", "")),
        "disposition": record.get("disposition", ""),
        "agent": next((a.name or a.id for a in tenant.agents if a.id == record.get("agent")), record.get("agent", "")),
        "created": dt.datetime.fromtimestamp(created / 1000, ZoneInfo(tenant.timezone)).strftime("%Y-%m-%d %H:%M"),
        "created_at": created,
    }


async def _from_archive(store: Store, tenant: Tenant, query: Query) -> Results:
    """Every conversation ever archived: the archive answers for the page and the total, and
    each row is read where it lives now (Redis while hot: its latest state)."""
    assert store.archive is not None
    customers_given: list[str] | None = [query.customer] if query.customer else None
    address = query.address
    if query.address:
        exact = await _customers_by_exact_address(store, tenant, query.address)
        if exact:  # a whole address, however it was typed: its customers (and no substring guessing)
            customers_given = sorted(exact & set(customers_given) if customers_given else exact)
            address = ""
    start_ms, end_ms = _bounds_ms(tenant, query) if query.date_from or query.date_to else (None, None)
    filters = records_search.Filters(
        customers=customers_given,
        address=address,
        start=_at(start_ms),
        end=_at(end_ms),
        disposition=query.disposition,
        queue=query.queue,
        agent=query.agent,
        text=query.text,
    )
    found = await store.archive.search(tenant.id, filters, offset=(query.page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    rows = []
    for conversation in found.conversations:
        try:
            record = await conversations.get(store, tenant.id, conversation)
        except conversations.NotFound:  # erased or expired since the query ran
            continue
        rows.append(await _row(store, tenant, conversation, record))
    pages = max(1, -(-found.total // PAGE_SIZE))
    if found.more and len(found.conversations) == PAGE_SIZE:
        pages = max(pages, query.page + 1)  # uncounted: there may be a next page
    return Results(rows=rows, total=found.total, page=query.page, pages=pages, more=found.more)


def _at(ms: int | None) -> dt.datetime | None:
    return None if ms is None else dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


async def run(store: Store, tenant: Tenant, query: Query) -> Results:
    if store.archive is not None:
        return await _from_archive(store, tenant, query)
    keys = Keys(tenant.id)
    start_ms, end_ms = _bounds_ms(tenant, query)
    if query.customer or query.address:
        owners = {query.customer} if query.customer else set()
        if query.address:
            by_address = await _customers_by_address(store, tenant, query.address)
            owners = owners & by_address if query.customer else by_address
        candidates = []
        for owner in owners:
            candidates += [text(c) for c in await store.redis.zrevrange(keys.customer_conversations(owner), 0, -1)]
        dated = bool(query.date_from or query.date_to)
    else:
        candidates = await _opened_between(store, tenant, start_ms, end_ms)
        dated = True
    needle = query.text.casefold()
    matched = []
    for conversation in candidates[:MAX_CANDIDATES]:
        try:
            record = await conversations.get(store, tenant.id, conversation)
        except conversations.NotFound:
            continue
        if not _within(query, record, start_ms, end_ms, dated):
            continue
        if needle:
            history = await conversations.history(store, tenant.id, conversation)
            if not any(needle in f"{e.subject}\n{e.body}".casefold() for e in history):
                continue
        matched.append((int(record.get("created_at") or 0), conversation, record))
    matched.sort(key=lambda m: (m[0], m[1]), reverse=True)
    first = (query.page - 1) * PAGE_SIZE
    rows = [await _row(store, tenant, c, record) for _at_ms, c, record in matched[first : first + PAGE_SIZE]]
    total = len(matched)
    return Results(rows=rows, total=total, page=query.page, pages=max(1, -(-total // PAGE_SIZE)))


def parse(params: dict[str, str], default_tenant: str) -> Query:
    def date(name: str) -> dt.date | None:
        value = params.get(name, "").strip()
        if not value:
            return None
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise SearchError(f"{name.replace('_', ' ')}: {value!r} is not a date (YYYY-MM-DD)") from None

    def page() -> int:
        value = params.get("page", "").strip() or "1"
        if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE:
            raise SearchError(f"page: {value[:20]!r} is not a page number (1 to {MAX_PAGE})")
        return int(value)

    return Query(
        tenant=params.get("tenant") or default_tenant,
        address=params.get("address", "").strip()[:200],
        customer=params.get("customer", "").strip()[:100],
        text=params.get("text", "").strip()[:200],
        date_from=date("date_from"),
        date_to=date("date_to"),
        disposition=params.get("disposition", "").strip()[:100],
        queue=params.get("queue", "").strip()[:100],
        agent=params.get("agent", "").strip()[:100],
        page=page(),
    )


@require_role("supervisor", "admin")
async def search_page(request: web.Request) -> web.Response:
    deployment, user = request.app[DEPLOYMENT], request[USER]
    tenants = [deployment.tenant(t) for t in user.tenants(deployment)]
    if not tenants:
        raise web.HTTPNotFound()
    params = dict(request.query)
    error, results, query = "", None, None
    try:
        query = parse(params, tenants[0].id)
    except SearchError as exc:
        error = str(exc)
    if query is not None:
        tenant = tenant_of(request, query.tenant)
        if "go" in params:
            results = await run(request.app[STORE], tenant, query)
    return render(
        request,
        "search.html",
        status=400 if error else 200,
        error=error,
        tenants=tenants,
        params=params,
        results=results,
        pages=_page_links(params, results),
        dispositions=sorted({d for t in tenants for d in t.dispositions}),
        queues=sorted({(q.id, q.name or q.id) for t in tenants for q in t.queues}, key=lambda q: q[1]),
        agents=sorted({(a.id, a.name or a.id) for t in tenants for a in t.agents}, key=lambda a: a[1]),
        query_tenant=query.tenant if query else tenants[0].id,
    )


def _page_links(params: dict[str, str], results: Results | None) -> dict[str, str]:
    """The previous and next pages' addresses (the same query, another page)."""
    if results is None:
        return {}
    links = {}
    if results.page > 1:
        links["previous"] = "/inbox/search?" + urlencode({**params, "page": str(results.page - 1)})
    if results.page < results.pages:
        links["next"] = "/inbox/search?" + urlencode({**params, "page": str(results.page + 1)})
    return links


def routes(app: web.Application) -> None:
    app.router.add_get("/search", search_page)
