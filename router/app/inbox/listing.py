"""What the inbox page lists: the user's offers and conversations across their tenants,
as plain dicts the page template and the live JSON share."""

from __future__ import annotations

from router import agents, conversations, events, names
from router.app.inbox.accounts import User
from router.config import Deployment, Tenant
from router.keys import Keys
from router.store import Store

# Short labels rather than emoji: an agent's desktop may have no colour-emoji font.
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


async def conversations_of(store: Store, deployment: Deployment, user: User) -> list[dict[str, object]]:
    """The conversations holding the user's slots in every tenant, newest activity first."""
    now = events.now_ms()
    result = []
    for tenant, agent in user.seats(deployment):
        keys = Keys(tenant.id)
        read = {k.decode(): int(v) for k, v in (await store.redis.hgetall(keys.agent_read(agent))).items()}
        work = [r for r in await agents.work(store, tenant, agent) if r.get("state") != "reserved"]  # offers: above
        known = await names.records(store, tenant.id, (r.get("customer", "") for r in work))
        for record in work:
            channel, address = names.where(record)
            last_in = int(record.get("last_message_at") or 0)
            last_out = int(record.get("last_reply_at") or 0)
            last = await _last_message(store, tenant.id, record["id"])
            result.append(
                {
                    "tenant": tenant.id,
                    "tenant_name": tenant.name or tenant.id,
                    "conversation": record["id"],
                    "channel": channel,
                    "icon": CHANNEL_ICONS.get(channel, "•"),
                    "customer": names.display(known.get(record.get("customer", ""), {}), channel, address),
                    "address": names.formatted_address(channel, address),
                    "state": "wrap-up" if record.get("state") == "closed" else record.get("state", ""),
                    "preview": _preview(last),
                    "activity_at": max(last_in, last_out, int(record.get("accepted_at") or 0)),
                    # the customer waits for an answer since their last message, if it is unanswered
                    "waiting_s": (now - last_in) // 1000 if last_in > last_out else 0,
                    "sla_due_at": sla_due_ms(tenant, record),
                    "unread": last_in > read.get(record["id"], 0),
                }
            )
    return sorted(result, key=lambda c: c["activity_at"], reverse=True)


async def mark_read(store: Store, tenant: str, agent: str, conversation: str) -> None:
    key = Keys(tenant).agent_read(agent)
    async with store.redis.pipeline(transaction=False) as pipe:
        pipe.hset(key, conversation, str(events.now_ms()))
        pipe.expire(key, 30 * 24 * 3600)
        await pipe.execute()
