"""The dialler of a voice campaign with agents on the line (`voice.dial_mode`
progressive or predictive): how many of its recipients the worker may call now.

The decision is router.campaigns.dialing.pace, over the campaign's floor and figures as
Redis holds them (router.campaigns.dial_state) and its queue's measured handle time (the
voice channel's, talk plus wrap-up). The token buckets still cap the rate on top. Calls
the worker queues count as in flight at once, so the next round, a moment later, does
not dial for the same free agents again.
"""

from __future__ import annotations

import datetime as dt
import logging

from channels.voice import estimate
from router.campaigns import dial_state
from router.campaigns.dialing import DialMode, Pace, pace
from router.campaigns.model import Campaign
from router.config import Tenant
from router.store import Store

log = logging.getLogger(__name__)

AGENT_MODES = frozenset({DialMode.PROGRESSIVE.value, DialMode.PREDICTIVE.value})


def paced_by_agents(campaign: Campaign) -> bool:
    return campaign.channel == "voice" and campaign.voice.dial_mode in AGENT_MODES


async def calls_now(store: Store, tenant: Tenant, campaign: Campaign, now: dt.datetime) -> Pace:
    now_ms = int(now.timestamp() * 1000)
    floor = await dial_state.floor(store, tenant.id, campaign.id, campaign.queue, now_ms)
    handle_s = await estimate.handle_seconds(store, tenant, campaign.queue)
    measured = await dial_state.measures(store, tenant.id, campaign.id, handle_s, now.date())
    decided = pace(DialMode(campaign.voice.dial_mode), floor, measured)
    if decided.calls:
        log.info(
            "campaign %s of %s: %d calls (%s, %s; %d free, %d busy, %d in flight)",
            campaign.id, tenant.id, decided.calls, decided.mode, decided.reason,
            floor.free_agents, floor.busy_agents, floor.in_flight,
        )
    return decided
