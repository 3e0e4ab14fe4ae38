"""An agent-paced campaign's session: the agents who joined it to work its list.

Joining (from the desk's Campaign session page) puts the agent in the session and available,
so the dialler dials for them (dial_state counts the session's agents once anyone has
joined) and its calls are offered to them; leaving takes them out, so it dials for them no
more. Their wait time starts when they join and at the end of each call's wrap-up, and ends
at the next accept or when they leave (counted per agent in the campaign's figures,
campaign_agent_figures.lua). Only a member of the campaign's queue may join a running
voice campaign with agents on the line.
"""

from __future__ import annotations

from router import agents
from router.campaigns import registry
from router.campaigns.model import Campaign, CampaignError
from router.config import Tenant
from router.keys import Keys
from router.store import Store, text

AGENT_MODES = ("preview", "progressive", "predictive")


def agent_paced(campaign: Campaign) -> bool:
    return campaign.channel == "voice" and campaign.voice.dial_mode in AGENT_MODES


async def workable(store: Store, tenant: Tenant, agent: str) -> list[tuple[Campaign, bool]]:
    """The running agent-paced campaigns the agent may work (a member of their queue), and
    whether they are in each one's session, by name."""
    keys = Keys(tenant.id)
    found = []
    for campaign_id in await registry.running(store, tenant.id):
        try:
            campaign, _state = await registry.load(store, tenant.id, campaign_id)
        except CampaignError:
            continue
        if not agent_paced(campaign) or await store.redis.zscore(keys.members(campaign.queue, 0), agent) is None:
            continue
        found.append((campaign, bool(await store.redis.sismember(keys.campaign_session(campaign.id), agent))))
    return sorted(found, key=lambda pair: (pair[0].name or pair[0].id).lower())


async def join(store: Store, tenant: Tenant, campaign_id: str, agent: str, now_ms: int) -> Campaign:
    campaign, state = await registry.load(store, tenant.id, campaign_id)
    keys = Keys(tenant.id)
    if not agent_paced(campaign):
        raise CampaignError("this campaign has no agents on the line")
    if state != "running":
        raise CampaignError(f"the campaign is {state}")
    if await store.redis.zscore(keys.members(campaign.queue, 0), agent) is None:
        raise CampaignError(f"you are not an agent of its queue ({campaign.queue})")
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.sadd(keys.campaign_session(campaign.id), agent)
        pipe.hsetnx(keys.campaign_agent_figures(campaign.id), f"waiting:{agent}", now_ms)
        await pipe.execute()
    await agents.set_presence(store, tenant, agent, "available")
    return campaign


async def leave(store: Store, tenant: Tenant, campaign_id: str, agent: str, now_ms: int) -> bool:
    """Out of the session; the wait so far counted, and the recipient they were previewing
    given back to the list at once (due now) rather than when its lease ends. False when
    they were not in it."""
    keys = Keys(tenant.id)
    figures = keys.campaign_agent_figures(campaign_id)
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.srem(keys.campaign_session(campaign_id), agent)
        pipe.hget(figures, f"waiting:{agent}")
        pipe.hdel(figures, f"waiting:{agent}")
        pipe.getdel(keys.campaign_preview(campaign_id, agent))
        left, since, _, previewed = await pipe.execute()
    if previewed is not None:  # XX: only while it is still waiting in the list (not sent or settled)
        await store.redis.zadd(keys.campaign_due(campaign_id), {text(previewed): now_ms}, xx=True)
    if since is not None:
        await store.redis.hincrby(figures, f"{agent}:wait_ms", max(0, now_ms - int(text(since))))
    return bool(left)


async def members(store: Store, tenant: str, campaign_id: str) -> set[str]:
    return {text(m) for m in await store.redis.smembers(Keys(tenant).campaign_session(campaign_id))}
