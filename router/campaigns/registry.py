"""Campaigns in Redis: create, launch, pause, resume, cancel, and their progress.

A campaign is a hash (definition as JSON, state, row count) in its tenant's
keyspace; the running ones are in a set the campaigns workers read each round,
and the send script checks the state again at the moment of queueing, and the
dispatcher's lease at the moment of sending, so a pause or a cancel stops sending at
once, even mid-batch and for messages already queued.
"""

from __future__ import annotations

import msgspec

from router.campaigns.model import (
    Campaign,
    CampaignError,
    Recipient,
    check_against,
    decode_campaign,
    decode_recipient,
    encode_campaign,
)
from router.campaigns.render import Renderer
from router.config import Deployment
from router.events import now_ms
from router.keys import Keys
from router.store import Store, text

# action -> (states it may start from, the state it leads to)
TRANSITIONS = {
    "launch": (("draft",), "running"),
    "pause": (("running",), "paused"),
    "resume": (("paused",), "running"),
    "cancel": (("draft", "running", "paused"), "cancelled"),
}
# action -> the campaign's field holding when it was last taken (ms)
CHANGED_AT = {
    "launch": "launched_at",
    "pause": "paused_at",
    "resume": "resumed_at",
    "cancel": "cancelled_at",
    "finish": "finished_at",
}
# what versions before December 2026 wrote instead ("{action}ed_at"), still read
OLD_CHANGED_AT = {"paused_at": "pauseed_at", "resumed_at": "resumeed_at", "cancelled_at": "canceled_at"}
COUNTERS = (
    "imported",
    "rejected",
    "sent",
    "delivered",
    "failed",
    "suppressed",
    "replied",
    "converted",
    "skipped",
    "retried",
    "rescheduled",
    "refused_at_send",  # messages the dispatcher would not let leave (held for later or refused)
)
REFUSED_AT_SEND = "refused_at_send:"  # its counters per reason


class Progress(msgspec.Struct, frozen=True, kw_only=True):
    """A campaign's figures. `counts["sent"]` is recipients whose message went (their latest
    attempt), each once however often it was retried: the raw counter counts attempts
    (`counts["attempts"]`), and every retry scheduled (`retried`) takes one back, so a text
    that failed and went again by email counts once, and one failed twice is one sent and
    one failed. So sent = delivered + failed + those awaiting a report, recipient by
    recipient, as the per-recipient export shows them (workers/campaigns/export.py)."""

    campaign: str
    tenant: str
    state: str
    queued: int  # recipients still to send (due now or later)
    counts: dict[str, int]
    dispositions: dict[str, int] = {}
    variants: dict[str, dict[str, int]] = {}  # A/B variant -> its own counters
    refused_at_send: dict[str, int] = {}  # reason (outside_window, paused, do_not_contact...) -> messages

    @property
    def done(self) -> int:
        """Recipients whose message went or never will."""
        c = self.counts
        return c.get("sent", 0) + c.get("suppressed", 0) + c.get("skipped", 0)

    @property
    def share(self) -> float:
        """The part of the audience done, 0.0 to 1.0 (1.0 when nobody is left to send to)."""
        total = self.done + self.queued
        return self.done / total if total else 1.0


async def create(store: Store, deployment: Deployment, campaign: Campaign, *, replace: bool = False) -> None:
    """Store a new campaign (draft). `replace` updates one that has not been launched."""
    check_against(campaign, deployment)
    Renderer(campaign)  # every template compiles, or the error names it and its line
    keys = Keys(campaign.tenant)
    key = keys.campaign(campaign.id)
    async with store.redis.pipeline(transaction=True) as pipe:
        await pipe.watch(key)
        state = await pipe.hget(key, "state")
        if state is not None and not (replace and text(state) == "draft"):
            await pipe.reset()
            hint = "" if replace else " (--replace updates a draft)"
            raise CampaignError(f"campaign {campaign.id} of {campaign.tenant} exists ({text(state)}){hint}")
        pipe.multi()
        pipe.hset(key, mapping={"definition": encode_campaign(campaign), "state": "draft", "created_at": now_ms()})
        pipe.sadd(keys.campaigns, campaign.id)
        await pipe.execute()


async def load(store: Store, tenant: str, campaign_id: str) -> tuple[Campaign, str]:
    """A campaign's definition and state."""
    definition, state = await store.redis.hmget(Keys(tenant).campaign(campaign_id), "definition", "state")
    if definition is None:
        raise CampaignError(f"no campaign {campaign_id!r} for tenant {tenant}")
    return decode_campaign(definition), text(state)


async def ids(store: Store, tenant: str) -> list[str]:
    """The tenant's campaign ids, sorted."""
    return sorted(text(c) for c in await store.redis.smembers(Keys(tenant).campaigns))


async def rejects(store: Store, tenant: str, campaign_id: str) -> list[tuple[int, str]]:
    """The CSV rows the imports refused, (line, reason) by line (each import keeps its first ones)."""
    rows = await store.redis.hgetall(Keys(tenant).campaign_rejects(campaign_id))
    return sorted((int(k), text(v)) for k, v in rows.items())


async def first_recipients(store: Store, tenant: str, campaign_id: str, n: int) -> list[Recipient]:
    """The audience's first n recipients, for a preview. Rejected rows leave gaps in the
    numbering, so a few times n numbers are read."""
    numbers = list(range(1, max(n, 0) * 4 + 1))
    if not numbers:
        return []
    blobs = await store.redis.hmget(Keys(tenant).campaign_audience(campaign_id), numbers)
    return [decode_recipient(b) for b in blobs if b][:n]


async def find_tenant(store: Store, deployment: Deployment, campaign_id: str, tenant: str | None = None) -> str:
    """The tenant a campaign belongs to: the one given, else the only tenant with that campaign id."""
    if tenant:
        return tenant
    owners = [t.id for t in deployment.tenants if await store.redis.sismember(Keys(t.id).campaigns, campaign_id)]
    if not owners:
        raise CampaignError(f"no campaign {campaign_id!r} (create it first)")
    if len(owners) > 1:
        raise CampaignError(f"campaign {campaign_id!r} exists for {', '.join(owners)}: give --tenant")
    return owners[0]


async def change(
    store: Store, tenant: str, campaign_id: str, action: str, *, deployment: Deployment | None = None
) -> str:
    """Launch, pause, resume or cancel; returns the new state. A launch checks the campaign
    against the deployment again, as create did (it may have changed since), so it needs it."""
    starts, target = TRANSITIONS[action]
    if action == "launch" and deployment is None:
        raise TypeError("a launch checks the campaign against the deployment: pass deployment")
    keys = Keys(tenant)
    key = keys.campaign(campaign_id)
    async with store.redis.pipeline(transaction=True) as pipe:
        await pipe.watch(key)
        state, definition = await pipe.hmget(key, "state", "definition")
        if state is None:
            await pipe.reset()
            raise CampaignError(f"no campaign {campaign_id!r} for tenant {tenant}")
        if text(state) not in starts:
            await pipe.reset()
            raise CampaignError(f"cannot {action} campaign {campaign_id}: it is {text(state)}")
        if deployment is not None and action == "launch":
            try:
                check_against(decode_campaign(definition), deployment)
            except CampaignError as exc:
                await pipe.reset()
                raise CampaignError(f"cannot launch campaign {campaign_id}: {exc}") from None
        pipe.multi()
        pipe.hset(key, mapping={"state": target, CHANGED_AT[action]: now_ms()})
        if target == "running":
            pipe.sadd(keys.campaigns_running, campaign_id)
        else:
            pipe.srem(keys.campaigns_running, campaign_id)
        await pipe.execute()
    return target


async def finish(store: Store, tenant: str, campaign_id: str) -> None:
    """A running campaign past its end: nothing more goes out. (One with nobody left to
    send to finishes too: campaigns/complete.lua.)"""
    keys = Keys(tenant)
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.hset(
            keys.campaign(campaign_id), mapping={"state": "finished", CHANGED_AT["finish"]: now_ms(), "ended": "end"}
        )
        pipe.srem(keys.campaigns_running, campaign_id)
        await pipe.execute()


async def changes(store: Store, tenant: str, campaign_id: str) -> dict[str, int]:
    """When the campaign was last launched, paused, resumed, cancelled and finished (ms),
    those it was; the names older versions wrote are read too."""
    fields = list(CHANGED_AT.values())
    old = [OLD_CHANGED_AT.get(f, f) for f in fields]
    values = await store.redis.hmget(Keys(tenant).campaign(campaign_id), fields + old)
    found = {}
    for action, new, was in zip(CHANGED_AT, values[: len(fields)], values[len(fields) :], strict=True):
        value = new if new is not None else was
        if value is not None:
            found[action] = int(value)
    return found


async def progress(store: Store, tenant: str, campaign_id: str) -> Progress:
    keys = Keys(tenant)
    async with store.redis.pipeline(transaction=False) as pipe:
        pipe.hget(keys.campaign(campaign_id), "state")
        pipe.zcard(keys.campaign_due(campaign_id))
        pipe.hgetall(keys.campaign_stats(campaign_id))
        state, queued, stats = await pipe.execute()
    if state is None:
        raise CampaignError(f"no campaign {campaign_id!r} for tenant {tenant}")
    counts = dict.fromkeys(COUNTERS, 0)
    dispositions: dict[str, int] = {}
    variants: dict[str, dict[str, int]] = {}
    refused: dict[str, int] = {}
    for field, value in stats.items():
        name = text(field)
        if name.startswith("v:"):  # v:<variant>:<counter>
            _, variant, counter = name.split(":", 2)
            variants.setdefault(variant, {})[counter] = int(value)
        elif name.startswith("disposition:"):
            dispositions[name.partition(":")[2]] = int(value)
        elif name.startswith(REFUSED_AT_SEND):
            refused[name.removeprefix(REFUSED_AT_SEND)] = int(value)
        else:
            counts[name] = int(value)
    return Progress(
        campaign=campaign_id,
        tenant=tenant,
        state=text(state),
        queued=queued,
        counts=reconciled(counts),
        dispositions=dispositions,
        variants={name: reconciled(counters) for name, counters in variants.items()},
        refused_at_send=dict(sorted(refused.items())),
    )


def reconciled(counters: dict[str, int]) -> dict[str, int]:
    """Counters as people read them: `sent` per recipient (attempts sent less the retries
    they led to), the attempts themselves as `attempts`."""
    attempts = counters.get("sent", 0)
    return {**counters, "attempts": attempts, "sent": max(attempts - counters.get("retried", 0), 0)}


async def running(store: Store, tenant: str) -> list[str]:
    return sorted(text(c) for c in await store.redis.smembers(Keys(tenant).campaigns_running))
