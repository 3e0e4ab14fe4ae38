"""What an agent's softphone does to a call in progress beyond the browser's own
controls (answer, mute, keys, hang up): hold it, resume it, transfer it to a queue or
a colleague.

A caller's call with Twilio is in its conversation's conference with the agent
(channels.voice.bridge): on hold, the caller's participant is held through the REST API
(hold music) while the agent stays on the line; resumed, it is let back in;
transferred, the caller's leg is moved to the wait loop (which ends the conference and
the agent's leg), the conversation moves (agents.transfer) and the caller waits in the loop
for whoever accepts it next, as any caller does. Calls the router placed (callbacks,
the agent's own calls) are the agent's leg with the customer dialled inside it, which
cannot be held without ending it: they are hung up, not held or transferred. A
simulated call (channels.voice.simulated) changes its own state instead.
"""

from __future__ import annotations

import logging

import aiohttp

from channels._twilio_rest import TwilioClients, TwilioError
from channels.voice import bridge, inbound, simulated, waiting
from router import agents
from router.config import Tenant
from router.errors import ContactRouterError
from router.keys import Keys
from router.settings import Settings
from router.store import Store

log = logging.getLogger(__name__)


class DeskError(ContactRouterError, ValueError):
    """The softphone cannot do that to this call (not the agent's, not one a caller made,
    or Twilio refused); the message says why."""


async def hold(
    store: Store,
    twilio: TwilioClients,
    settings: Settings,
    tenant: Tenant,
    agent: str,
    conversation: str,
    sid: str,
    *,
    on: bool,
) -> None:
    """Put the agent's call on hold (on) or take it off hold: the caller's participant in
    the conversation's conference is held (hold music) while the agent stays in it."""
    if simulated.is_simulated(sid):
        await _simulated(store, tenant, agent, sid, "hold" if on else "resume")
        return
    caller = await callers_leg(store, tenant, agent, conversation, ("connected",))
    if (await inbound.get_call(store, tenant.id, caller)).get("held") == ("1" if on else "0"):
        return  # already so: a repeated click
    room = await bridge.conference(store, tenant.id, conversation)
    if tenant.twilio is not None:
        if not room.get("sid"):
            raise DeskError("the call is not in its conference yet: try again in a moment")
        music, method = bridge.hold_url(settings.base_url, tenant)
        try:
            participant = twilio.client(tenant).conferences(room["sid"]).participants(caller)
            await participant.update_async(hold=on, hold_url=music, hold_method=method)
        except TwilioError as exc:
            raise DeskError(f"Twilio refused to {'hold' if on else 'resume'} the call: {exc}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeskError(f"Twilio did not answer: {type(exc).__name__}") from None
    await inbound.update_call(store, tenant.id, caller, held="1" if on else "0")
    log.info("agent %s of %s %s call %s", agent, tenant.id, "holds" if on else "resumes", caller)


async def hang_up_held(store: Store, twilio: TwilioClients, tenant: Tenant, agent: str, conversation: str) -> None:
    """End a caller's call the agent holds, when the page's own leg is gone (a page that
    held a call outside a conference, or lost its leg while the caller was held)."""
    caller = await callers_leg(store, tenant, agent, conversation, (waiting.HELD, "connected"))
    if tenant.twilio is not None:
        try:
            await twilio.client(tenant).calls(caller).update_async(status="completed")
        except TwilioError as exc:
            raise DeskError(f"Twilio refused to end the call: {exc}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeskError(f"Twilio did not answer: {type(exc).__name__}") from None
    await inbound.update_call(store, tenant.id, caller, state="closed", hung_up_by="agent", held="0")
    log.info("agent %s of %s hung up held call %s", agent, tenant.id, caller)


async def transfer(
    store: Store,
    twilio: TwilioClients,
    settings: Settings,
    tenant: Tenant,
    agent: str,
    conversation: str,
    sid: str,
    *,
    to_agent: str = "",
    to_queue: str = "",
    note: str = "",
) -> str:
    """Hand the call and its conversation to a colleague or a queue; the caller waits
    in the queue's loop meanwhile. Returns the transfer's outcome (offered, queued)."""
    if simulated.is_simulated(sid):
        call = await simulated.record(store, tenant.id, sid)
        if call.get("agent") != agent or call.get("status") != "in-progress" or call.get("kind") != "call":
            raise DeskError("only a call in progress that a caller made can be transferred")
        outcome = await agents.transfer(
            store, tenant, agent, conversation, to_agent=to_agent, to_queue=to_queue, note=note
        )
        await simulated.act(store, tenant, agent, sid, "hangup", by="transfer")
        if call.get("linked"):  # the caller's own call waits for the next agent, as with Twilio
            await inbound.update_call(store, tenant.id, call["linked"], state="queued", agent="")
        return outcome
    caller = await callers_leg(store, tenant, agent, conversation, ("connected", waiting.HELD))
    outcome = await agents.transfer(store, tenant, agent, conversation, to_agent=to_agent, to_queue=to_queue, note=note)
    await inbound.update_call(store, tenant.id, caller, state="queued", agent="", held="0")
    await store.redis.hdel(Keys(tenant.id).call(caller), "bridged_at")  # the next agent's take bridges anew
    try:
        await _to_wait_loop(twilio, settings, tenant, caller)
    except DeskError as exc:
        log.error("call %s of %s transferred, but the caller's leg was not moved: %s", caller, tenant.id, exc)
        raise DeskError(f"the conversation was transferred, but the call could not be moved: {exc}") from None
    return outcome


async def _simulated(store: Store, tenant: Tenant, agent: str, sid: str, action: str) -> None:
    try:
        after = await simulated.act(store, tenant, agent, sid, action)
    except simulated.NotYourCall:
        raise DeskError("no such call on your softphone") from None
    if after != "in-progress":
        raise DeskError(f"the call is {after or 'gone'}")


async def callers_leg(store: Store, tenant: Tenant, agent: str, conversation: str, states: tuple[str, ...]) -> str:
    """The CallSid of the caller's call in the conversation, if it is with this agent
    in one of these states."""
    sid = await inbound.latest_call(store, tenant.id, conversation)
    call = await inbound.get_call(store, tenant.id, sid) if sid else {}
    if not call or call.get("agent") != agent or call.get("state") not in states:
        raise DeskError("hold and transfer work on a caller's call that is with you")
    return sid


async def _to_wait_loop(twilio: TwilioClients, settings: Settings, tenant: Tenant, sid: str) -> None:
    """Send the caller's leg to the wait loop, which reads its state and goes on from there."""
    if tenant.twilio is None:
        return  # the sandbox: the loop reads the new state at its next round
    try:
        await (
            twilio.client(tenant)
            .calls(sid)
            .update_async(url=f"{settings.base_url}{waiting.WAIT_PATH}?n=1", method="POST")
        )
    except TwilioError as exc:
        raise DeskError(f"Twilio refused to move the call: {exc}") from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise DeskError(f"Twilio did not answer: {type(exc).__name__}") from None
