"""Supervisors' conversation search: by customer, address, text, date and disposition.

There is no separate search index: candidates come from what the keyspace already
holds. An address (or customer id) finds the customer's conversations through the
identity map; otherwise the tenant's events stream, whose entry ids are times, gives
the conversations opened in the date range (as far back as the stream is kept).
The other filters are checked on each candidate, and the work is bounded. With an
archive (DATABASE_URL), it adds the archived conversations that match, however old.
"""

from __future__ import annotations

import datetime as dt
import re
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
from router.store import Store, text

MAX_RESULTS = 100
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


class SearchError(ContactRouterError, ValueError):
    """A query that cannot run (a date that is not a date, say)."""


def _glob_escape(value: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", value)


async def _customers_by_address(store: Store, tenant: Tenant, address: str) -> set[str]:
    keys = Keys(tenant.id)
    found: set[str] = set()
    for channel in ("sms", "email", "telegram", "webchat"):  # an exact address first
        try:
            ident = customers.identity(channel, customers.normalise(channel, address))
        except customers.InvalidAddress:
            continue
        if owner := await store.redis.hget(keys.identities, ident):
            found.add(text(owner))
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


async def run(store: Store, tenant: Tenant, query: Query) -> list[dict[str, object]]:
    keys = Keys(tenant.id)
    start_ms, end_ms = _bounds_ms(tenant, query)
    owners: set[str] = set()
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
    if store.archive is not None:  # every conversation ever archived, not only what Redis and the stream hold
        owners_given = bool(query.customer or query.address)
        archived = await store.archive.search(
            tenant.id,
            customers=sorted(owners) if owners_given else None,
            start_ms=start_ms if dated else None,
            end_ms=end_ms if dated else None,
            disposition=query.disposition,
            text=query.text,
            limit=MAX_CANDIDATES,
        )
        known = set(candidates)
        candidates += [c for c in archived if c not in known]
    needle = query.text.casefold()
    results = []
    for conversation in candidates[:MAX_CANDIDATES]:
        try:
            record = await conversations.get(store, tenant.id, conversation)
        except conversations.NotFound:
            continue
        created = int(record.get("created_at") or 0)
        if dated and not start_ms <= created <= end_ms:
            continue
        if query.disposition and record.get("disposition") != query.disposition:
            continue
        if needle:
            history = await conversations.history(store, tenant.id, conversation)
            if not any(needle in f"{e.subject}\n{e.body}".casefold() for e in history):
                continue
        results.append(
            {
                "conversation": conversation,
                "customer": record.get("customer", ""),
                "name": await names.of_conversation(store, tenant.id, record),
                "address": names.formatted_address(*names.where(record)),
                "channel": record.get("last_channel") or record.get("channel", ""),
                "state": record.get("state", ""),
                "disposition": record.get("disposition", ""),
                "agent": record.get("agent", ""),
                "created": dt.datetime.fromtimestamp(created / 1000, ZoneInfo(tenant.timezone)).strftime(
                    "%Y-%m-%d %H:%M"
                ),
                "created_at": created,
            }
        )
        if len(results) >= MAX_RESULTS:
            break
    return sorted(results, key=lambda r: r["created_at"], reverse=True)


def parse(params: dict[str, str], default_tenant: str) -> Query:
    def date(name: str) -> dt.date | None:
        value = params.get(name, "").strip()
        if not value:
            return None
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise SearchError(f"{name.replace('_', ' ')}: {value!r} is not a date (YYYY-MM-DD)") from None

    return Query(
        tenant=params.get("tenant") or default_tenant,
        address=params.get("address", "").strip()[:200],
        customer=params.get("customer", "").strip()[:100],
        text=params.get("text", "").strip()[:200],
        date_from=date("date_from"),
        date_to=date("date_to"),
        disposition=params.get("disposition", "").strip()[:100],
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
        dispositions=sorted({d for t in tenants for d in t.dispositions}),
        query_tenant=query.tenant if query else tenants[0].id,
    )


def routes(app: web.Application) -> None:
    app.router.add_get("/search", search_page)
