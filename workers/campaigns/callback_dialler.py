"""Customer-requested callbacks of campaign conversations, dialled at their time to the
agent they asked for (router.campaigns.callbacks keeps them on that agent's list).

Each round of the campaigns worker looks at the callbacks that are due. Each is judged
again at that moment (callbacks.refusal: the campaign's state, do-not-contact, the voice
opt-outs, a dispute, the calling hours now); one that may not be made stays on the
agent's list, which says why. One that may is dialled when its agent is free (available,
ready for a call, no other in hand) and still holds the conversation: their phone or
softphone rings first, then the customer's number (channels.voice.callbacks.dial_customer,
whose sender refuses a dial for a conversation no longer with that agent), and it leaves
their list. Otherwise it stays on their Callbacks page, due, for them (or for the next
round): it is never given to another agent. (A conversation already closed is not opened
again for the agent here: that needs routing to reserve it for them, not done yet.)
"""

from __future__ import annotations

import datetime as dt
import logging

from channels.voice import callbacks as voice_callbacks
from channels.voice import softphone, waiting
from router.campaigns import callbacks
from router.config import Deployment, Tenant
from router.keys import Keys
from router.store import Store, text

log = logging.getLogger(__name__)


async def dial_due(store: Store, deployment: Deployment, now: dt.datetime) -> int:
    """Dial the due callbacks whose agents are free and that may be made now; how many."""
    dialled = 0
    now_ms = int(now.timestamp() * 1000)
    for tenant in deployment.tenants:
        for agent in tenant.agents:
            if not await store.redis.zcount(Keys(tenant.id).agent_campaign_callbacks(agent.id), "-inf", now_ms):
                continue
            for callback in await callbacks.of_agent(store, tenant.id, agent.id, now_ms):
                if callback.due_ms <= now_ms and await _dial(store, tenant, callback, now):
                    dialled += 1
    return dialled


async def _dial(store: Store, tenant: Tenant, callback: callbacks.Callback, now: dt.datetime) -> bool:
    why = await callbacks.refusal(store, tenant.id, tenant.timezone, callback, now)
    if why:
        return False  # shown on the agent's list
    keys = Keys(tenant.id)
    state, holder = await store.redis.hmget(keys.conversation(callback.conversation), "state", "agent")
    if state != b"assigned" or text(holder or b"") != callback.agent:
        return False  # not in their hands: theirs to call from the list
    presence, calls = await store.redis.hmget(keys.agent(callback.agent), "presence", "load:voice")
    if presence != b"available" or int(calls or 0) > 1:
        return False  # away, or on another call: the next round's once they are free
    if not waiting.callable_number(tenant, callback.address):
        log.warning("callback %s of %s: %s is not callable", callback.conversation, tenant.id, callback.address)
        return False
    if softphone.mode(tenant) == "unavailable" and not softphone.phone_of(tenant, callback.agent):
        return False  # nothing to ring for the agent: they call from the conversation
    # one call per scheduled time, however often a round (or two workers) gets here
    await voice_callbacks.dial_customer(
        store, tenant, callback.agent, callback.conversation, callback.address, f"callback{callback.due_ms}"
    )
    await callbacks.done(store, tenant.id, callback.agent, callback.conversation)
    log.info("callback %s of %s dialled for agent %s", callback.conversation, tenant.id, callback.agent)
    return True
