"""Callbacks a customer asks for on a campaign conversation: at a time they choose, in
their own time zone, with the agent they spoke to.

The agent enters the customer's local time. It must be ahead, inside the campaign's send
window in every time zone the recipient may be in (for collections, 08:00-21:00), and
before the campaign ends; otherwise it is refused with the reason and nothing is stored.
A scheduled callback is that agent's (Keys.agent_campaign_callbacks, by due time; the
conversation records `callback_at` and `callback_agent`), listed in their desk, and dialled
by them from the conversation, so the customer gets the agent they asked for. Rescheduling
moves it, to another agent too. Every rule that can change meanwhile is judged again when
the list is shown (`refusal`): the campaign's state, the do-not-contact list, the voice
opt-outs, a dispute, and the window at that moment; a refused one says why instead of
offering the call. (Regulation F lets a debtor's own request stand outside the 7-in-7 cap
and the quiet period, 12 CFR 1006.14(b)(3)(i), so those are not applied to it.)
"""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import msgspec

from router.campaigns import compliance, registry
from router.campaigns.model import Campaign, CampaignError, decode_recipient
from router.keys import Keys
from router.store import Store, text

SHOWN_DAYS = 1  # a callback stays on the agent's list this long after it was due


class Callback(msgspec.Struct, frozen=True, kw_only=True):
    conversation: str
    agent: str
    campaign: str
    due_ms: int
    zone: str  # the zone the customer gave the time in
    address: str


async def zones_of(
    store: Store, tenant: str, fallback_zone: str, campaign: Campaign, record: dict[str, str]
) -> tuple[str, ...]:
    """The time zones the conversation's recipient may be in (the first is theirs to enter)."""
    blob = await store.redis.hget(Keys(tenant).campaign_audience(campaign.id), record.get("campaign_recipient", ""))
    if not blob:
        return compliance.zones_for(record.get("address", ""), "", fallback_zone)
    recipient = decode_recipient(blob)
    return compliance.zones_for(recipient.phone, recipient.timezone, fallback_zone, recipient.zones)


async def schedule(
    store: Store,
    tenant: str,
    fallback_zone: str,
    record: dict[str, str],
    agent: str,
    local: str,
    now: dt.datetime,
) -> Callback:
    """Schedule the conversation's callback at `local` (YYYY-MM-DDTHH:MM, the customer's
    time) for `agent`; CampaignError says why it cannot be."""
    if record.get("agent") != agent:
        raise CampaignError("only the agent on the conversation can schedule its callback")
    address = record.get("address", "")
    if not address.startswith("+"):
        raise CampaignError("this conversation has no phone number to call back")
    campaign, _state = await registry.load(store, tenant, record.get("campaign", ""))
    zones = await zones_of(store, tenant, fallback_zone, campaign, record)
    try:
        naive = dt.datetime.strptime(local.strip(), "%Y-%m-%dT%H:%M")
    except ValueError:
        raise CampaignError("give the date and time the customer asked for (YYYY-MM-DD HH:MM)") from None
    due = naive.replace(tzinfo=ZoneInfo(zones[0]))
    if due <= now:
        raise CampaignError(f"{local} in {zones[0]} has passed")
    if campaign.end and due >= campaign.end:
        raise CampaignError("the campaign ends before then")
    window = campaign.effective_window()
    if not compliance.allowed(due, zones, window):
        raise CampaignError(
            f"{naive:%H:%M} on {naive:%A} is outside the hours the campaign may call "
            f"({window.start}-{window.end} {', '.join(window.days)}, in {' and '.join(zones)})"
        )
    keys = Keys(tenant)
    due_ms = int(due.timestamp() * 1000)
    before = text(await store.redis.hget(keys.conversation(record["id"]), "callback_agent") or b"")
    async with store.redis.pipeline(transaction=True) as pipe:
        if before and before != agent:
            pipe.zrem(keys.agent_campaign_callbacks(before), record["id"])
        pipe.zadd(keys.agent_campaign_callbacks(agent), {record["id"]: due_ms})
        pipe.hset(
            keys.conversation(record["id"]),
            mapping={"callback_at": due_ms, "callback_agent": agent, "callback_zone": zones[0]},
        )
        await pipe.execute()
    return Callback(
        conversation=record["id"], agent=agent, campaign=campaign.id, due_ms=due_ms, zone=zones[0], address=address
    )


async def of_agent(store: Store, tenant: str, agent: str, now_ms: int) -> list[Callback]:
    """The agent's callbacks, soonest first (those due more than SHOWN_DAYS ago dropped)."""
    keys = Keys(tenant)
    key = keys.agent_campaign_callbacks(agent)
    await store.redis.zremrangebyscore(key, "-inf", now_ms - SHOWN_DAYS * 86_400_000)
    entries = [(text(c), int(due)) for c, due in await store.redis.zrange(key, 0, -1, withscores=True)]
    async with store.redis.pipeline(transaction=False) as pipe:
        for conversation, _due in entries:
            pipe.hmget(keys.conversation(conversation), "campaign", "callback_zone", "address")
        rows = await pipe.execute()
    return [
        Callback(
            conversation=conversation, agent=agent, campaign=text(campaign or b""), due_ms=due,
            zone=text(zone or b"UTC"), address=text(address or b""),
        )
        for (conversation, due), (campaign, zone, address) in zip(entries, rows, strict=True)
    ]


async def done(store: Store, tenant: str, agent: str, conversation: str) -> bool:
    """The agent called back (or the customer no longer wants it): off their list."""
    return bool(await store.redis.zrem(Keys(tenant).agent_campaign_callbacks(agent), conversation))


async def refusal(store: Store, tenant: str, fallback_zone: str, callback: Callback, now: dt.datetime) -> str:
    """Why the callback cannot be made now ("" when it can)."""
    keys = Keys(tenant)
    try:
        campaign, state = await registry.load(store, tenant, callback.campaign)
    except CampaignError:
        return "its campaign is gone"
    if state != "running":
        return f"the campaign is {state}"
    raw = await store.redis.hgetall(keys.conversation(callback.conversation))
    record = {text(k): text(v) for k, v in raw.items()}
    async with store.redis.pipeline(transaction=False) as pipe:
        pipe.sismember(keys.do_not_contact, callback.address)
        pipe.sismember(keys.suppression("voice"), callback.address)
        pipe.sismember(keys.disputes, record.get("customer", ""))
        pipe.sismember(keys.disputes, _debt(campaign, record))
        dnc, opted_out, disputed, debt_disputed = await pipe.execute()
    if dnc:
        return "the number is on the do-not-contact list"
    if opted_out:
        return "the number opted out of calls"
    if campaign.kind == "collections" and (disputed or debt_disputed):
        return "the customer disputes the debt"
    if callback.due_ms > now.timestamp() * 1000:
        return ""  # its time was inside the window when it was scheduled; judged again once due
    zones = await zones_of(store, tenant, fallback_zone, campaign, record)
    if not compliance.allowed(now, zones, campaign.effective_window()):
        return "outside the hours the campaign may call, now"
    return ""


def _debt(campaign: Campaign, record: dict[str, str]) -> str:
    """The debt a dispute may name ("debt:<account>"), from the recipient's fields."""
    try:
        fields = json.loads(record.get("campaign_context") or "{}")
    except ValueError:
        fields = {}
    fields = fields if isinstance(fields, dict) else {}
    return compliance.cap_subject(campaign.kind, "", "", fields, campaign.debt_field)
