"""A campaign call with agents on the line (`voice.dial_mode` progressive or predictive):
what happens once answering-machine detection has decided, before any agent is involved.

- A person, with an agent free (router.campaigns.dial_state.agents): they go straight into
  the campaign's queue as a caller, in the recipient's campaign conversation, and the
  routing offers them to that agent, whose leg is screened and then bridged in the
  conversation's conference (channels.voice.bridge, `conv-<conversation>`). No message,
  no "press 1": the agent speaks first.
- A person, and no agent free (the dialler rang ahead and lost the bet): an abandon. They
  hear the tenant's abandon message at once, who called and how to call back, and the
  call ends; the campaign counts it against its 30-day abandon limit.
- A machine: the campaign's machine message, only when it has one, else a hang-up (as
  any campaign call; answer.py decides that).
Each call's outcome is counted once for the dialler's figures (dial_state.record_outcome),
here or, for a call nobody answered, from its status report (`rang_out`).
"""

from __future__ import annotations

import datetime as dt

from router import events
from router.campaigns import dial_state
from router.campaigns.model import Campaign
from router.config import Tenant
from router.keys import Keys
from router.store import Store

AGENT_MODES = frozenset({"progressive", "predictive"})


def with_agents(campaign: Campaign) -> bool:
    return campaign.voice.dial_mode in AGENT_MODES


def abandon_message(tenant: Tenant) -> str:
    """The tenant's own, or who called and the number to call back on."""
    if tenant.voice.abandon_message:
        return tenant.voice.abandon_message
    number = " ".join(tenant.voice.numbers[0].lstrip("+")) if tenant.voice.numbers else ""  # said digit by digit
    back = f" Please call us back on {number}." if number else ""
    sorry = "Sorry, nobody is free to take your call just now."
    return f"This is {tenant.name or tenant.id} calling. {sorry}{back} Goodbye."


async def person_answered(store: Store, tenant: Tenant, campaign: Campaign, message: events.OutboundMessage) -> str:
    """"connected" when an agent is free to take the person, else "abandoned"; counted."""
    free, _busy = await dial_state.agents(store, tenant.id, campaign.queue)
    fate = "connected" if free > 0 else "abandoned"
    await _count(store, tenant.id, campaign.id, message.id, "person", fate)
    return fate


async def machine_answered(store: Store, tenant: str, campaign: str, message: str) -> None:
    await _count(store, tenant, campaign, message, "machine", "")


async def rang_out(store: Store, tenant: str, message: events.OutboundMessage) -> None:
    """A call of an agent-paced campaign that nobody answered (busy, no answer, failed):
    no longer in flight, and one more outcome for the answer rate. A call that was
    answered was counted then, and counts nothing more."""
    if message.campaign and await store.redis.zscore(Keys(tenant).campaign_ringing(message.campaign), message.id):
        await _count(store, tenant, message.campaign, message.id, "none", "")


async def _count(store: Store, tenant: str, campaign: str, message: str, outcome: str, fate: str) -> None:
    queued = await store.redis.zscore(Keys(tenant).campaign_ringing(campaign), message)
    now_ms = events.now_ms()
    ring_ms = now_ms - int(queued) if queued else 0
    today = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC).date()
    await dial_state.record_outcome(store, tenant, campaign, message, outcome, fate=fate, ring_ms=ring_ms, today=today)
