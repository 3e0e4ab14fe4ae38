"""What the inbox page lists: the user's offers and conversations across their tenants,
as plain dicts the page template and the live JSON share."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from router import agents, conversations, events, names
from router.app.inbox.accounts import User
from router.config import Deployment, Tenant
from router.keys import Keys
from router.store import Store, text

# Short labels rather than emoji: an agent's desktop may have no colour-emoji font. Pages show
# them in the reader's language as terms (router/terms.py).
CHANNEL_ICONS = {
    "sms": "SMS",
    "voice": "Call",
    "email": "Email",
    "fax": "Fax",
    "webchat": "Chat",
    "telegram": "Telegram",
}
PREVIEW_CHARS = 140


def _preview(entry: events.HistoryEntry | None) -> str:
    if entry is None:
        return ""
    body = " ".join(entry.body.split())
    if not body and entry.contact_kind != "message":
        body = entry.contact_kind
    return body[:PREVIEW_CHARS] + ("…" if len(body) > PREVIEW_CHARS else "")


async def _last_message(store: Store, tenant: str, conversation: str) -> events.HistoryEntry | None:
    """The newest customer or agent message (notes are internal, not a 'last message')."""
    raw = await store.redis.lrange(Keys(tenant).conversation_log(conversation), -10, -1)
    for item in reversed(raw):
        entry = events.decode_history(item)
        if entry.kind != "note":
            return entry
    return None


def sla_due_ms(tenant: Tenant, record: dict[str, str]) -> int:
    """When the queue's service-level target falls due for this conversation (0: met or none)."""
    try:
        queue = tenant.queue(record.get("queue", ""))
    except KeyError:
        return 0
    enqueued = int(record.get("enqueued_at") or 0)
    if not enqueued:
        return 0
    met = record.get("first_response_at") if queue.sla.measure == "first_response" else record.get("answered_at")
    return 0 if met else enqueued + queue.sla.seconds * 1000


async def offers(store: Store, deployment: Deployment, user: User) -> list[dict[str, object]]:
    result = []
    for tenant, agent in user.seats(deployment):
        for offer in await agents.offers(store, tenant, agent):
            record = await conversations.get(store, tenant.id, offer["conv"])
            channel, address = names.where(record)
            result.append(
                {
                    "tenant": tenant.id,
                    "tenant_name": tenant.name or tenant.id,
                    "reservation": offer["reservation"],
                    "conversation": offer["conv"],
                    "channel": offer.get("channel", ""),
                    "icon": CHANNEL_ICONS.get(offer.get("channel", ""), "•"),
                    "queue": offer.get("queue", ""),
                    "customer": await names.of_conversation(store, tenant.id, record),
                    "address": names.formatted_address(channel, address),
                    "kind": record.get("kind", "message"),
                    "preview": _preview(await _last_message(store, tenant.id, offer["conv"])),
                    "expires_at": int(offer.get("expires_at") or 0),
                }
            )
    return sorted(result, key=lambda o: o["expires_at"])


# --- the list's tabs, sorts, filters and pages ---

TABS = ("mine", "queue", "all")  # offers are listed on their own; queue and all for supervisors
SORTS = ("activity", "sla", "waiting")
STATES = ("queued", "reserved", "assigned", "wrap-up")
PAGE = 100  # rows a page of the list shows


@dataclass(frozen=True)
class Filter:
    """Which conversations the list shows and in what order (from the page's query string)."""

    tab: str = "mine"
    sort: str = "activity"
    channel: str = ""
    tenant: str = ""
    state: str = ""
    offset: int = 0
    limit: int = PAGE

    @classmethod
    def parse(cls, query: Mapping[str, str], user: User) -> Filter:
        """The filter a query asks for; what it may not ask (another tab than its own for an
        agent, an unknown sort or channel) falls back to the default rather than failing."""
        tab = query.get("tab", "mine")
        try:
            offset = max(0, int(query.get("offset", "0")))
        except ValueError:
            offset = 0
        return cls(
            tab=tab if tab in TABS and (tab == "mine" or user.supervises) else "mine",
            sort=query.get("sort", "") if query.get("sort") in SORTS else "activity",
            channel=query.get("channel", "") if query.get("channel") in CHANNEL_ICONS else "",
            tenant=query.get("tenant", "")[:64],
            state=query.get("state", "") if query.get("state") in STATES else "",
            offset=offset,
        )


@dataclass
class Page:
    rows: list[dict[str, object]]
    total: int  # rows the filter selects, on every page
    counts: dict[str, int]  # per tab, for its badge: mine (unread), offers, queue (waiting), all (open)


def _sort_key(sort: str) -> Callable[[dict[str, object]], tuple]:
    if sort == "sla":  # the soonest due first; met or no target last
        return lambda row: (row["sla_due_at"] == 0, row["sla_due_at"], row["conversation"])
    if sort == "waiting":  # the customer waiting longest first
        return lambda row: (-int(row["waiting_s"]), row["conversation"])
    return lambda row: (-int(row["activity_at"]), row["conversation"])


async def page(store: Store, deployment: Deployment, user: User, flt: Filter) -> Page:
    """One page of the list: the user's own conversations, or for supervisors the waiting
    ones (queue) or every open one (all) of the tenants they watch."""
    rows: list[dict[str, object]] = []
    counts = {"mine": 0, "offers": 0, "queue": 0, "all": 0}
    seats = dict((tenant.id, agent) for tenant, agent in user.seats(deployment))
    for tenant_id in user.tenants(deployment):
        tenant = deployment.tenant(tenant_id)
        agent = seats.get(tenant_id, "")
        read = await _read_marks(store, tenant_id, agent)
        mine = await agents.work(store, tenant, agent) if agent else []
        counts["offers"] += sum(1 for r in mine if r.get("state") == "reserved")
        mine = [r for r in mine if r.get("state") != "reserved"]  # offers: listed on their own
        counts["mine"] += sum(1 for r in mine if _unread(r, read))
        if user.supervises:
            waiting, open_count = await _open_counts(store, tenant)
            counts["queue"] += waiting
            counts["all"] += open_count
        if flt.tenant and flt.tenant != tenant_id:
            continue
        if flt.tab == "mine":
            records = mine
        elif flt.tab == "queue":
            records = await _waiting(store, tenant)
        else:
            records = await _waiting(store, tenant) + [
                r for a in tenant.agents for r in await agents.work(store, tenant, a.id)
            ]
        records = [r for r in records if _matches(r, flt)]
        rows += await _rows(store, tenant, records, read)
    rows.sort(key=_sort_key(flt.sort))
    return Page(rows[flt.offset : flt.offset + flt.limit], len(rows), counts)


def _matches(record: dict[str, str], flt: Filter) -> bool:
    if flt.channel and names.where(record)[0] != flt.channel:
        return False
    return not flt.state or _state(record) == flt.state


def _state(record: dict[str, str]) -> str:
    return "wrap-up" if record.get("state") == "closed" else record.get("state", "")


def _unread(record: dict[str, str], read: dict[str, int]) -> bool:
    return int(record.get("last_message_at") or 0) > read.get(record.get("id", ""), 0)


async def _read_marks(store: Store, tenant: str, agent: str) -> dict[str, int]:
    if not agent:
        return {}
    return {k.decode(): int(v) for k, v in (await store.redis.hgetall(Keys(tenant).agent_read(agent))).items()}


async def _waiting(store: Store, tenant: Tenant) -> list[dict[str, str]]:
    keys = Keys(tenant.id)
    async with store.redis.pipeline(transaction=False) as pipe:
        for queue in tenant.queues:
            pipe.zrange(keys.waiting(queue.id), 0, -1)
        ids = [text(c) for found in await pipe.execute() for c in found]
    records = []
    for conversation in dict.fromkeys(ids):  # in two queues' sets while it moves between them
        try:
            records.append(await conversations.get(store, tenant.id, conversation))
        except conversations.NotFound:
            continue  # gone between the two reads
    return records


async def _open_counts(store: Store, tenant: Tenant) -> tuple[int, int]:
    """(waiting in the tenant's queues, open in all: waiting, offered, assigned, in wrap-up)."""
    keys = Keys(tenant.id)
    async with store.redis.pipeline(transaction=False) as pipe:
        for queue in tenant.queues:
            pipe.zcard(keys.waiting(queue.id))
        for agent in tenant.agents:
            pipe.scard(keys.agent_work(agent.id))
        found = await pipe.execute()
    waiting = sum(found[: len(tenant.queues)])
    return waiting, waiting + sum(found[len(tenant.queues) :])


async def _rows(
    store: Store, tenant: Tenant, records: list[dict[str, str]], read: dict[str, int]
) -> list[dict[str, object]]:
    now = events.now_ms()
    known = await names.records(store, tenant.id, (r.get("customer", "") for r in records))
    agent_names = {a.id: a.name or a.id for a in tenant.agents}
    rows = []
    for record in records:
        channel, address = names.where(record)
        last_in = int(record.get("last_message_at") or 0)
        last_out = int(record.get("last_reply_at") or 0)
        rows.append(
            {
                "tenant": tenant.id,
                "tenant_name": tenant.name or tenant.id,
                "conversation": record["id"],
                "channel": channel,
                "icon": CHANNEL_ICONS.get(channel, "•"),
                "customer": names.display(known.get(record.get("customer", ""), {}), channel, address),
                "address": names.formatted_address(channel, address),
                "state": _state(record),
                "queue": record.get("queue", ""),
                "agent": agent_names.get(record.get("agent", ""), record.get("agent", "")),
                "preview": _preview(await _last_message(store, tenant.id, record["id"])),
                "activity_at": max(last_in, last_out, int(record.get("accepted_at") or 0)),
                # the customer waits for an answer since their last message, if it is unanswered
                "waiting_s": (now - last_in) // 1000 if last_in > last_out else 0,
                "sla_due_at": sla_due_ms(tenant, record),
                "unread": _unread(record, read),
            }
        )
    return rows


async def mark_read(store: Store, tenant: str, agent: str, conversation: str) -> None:
    key = Keys(tenant).agent_read(agent)
    async with store.redis.pipeline(transaction=False) as pipe:
        pipe.hset(key, conversation, str(events.now_ms()))
        pipe.expire(key, 30 * 24 * 3600)
        await pipe.execute()
