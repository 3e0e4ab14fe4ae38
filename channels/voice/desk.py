"""What an agent's softphone does to a call in progress beyond the browser's own
controls (answer, mute, keys, hang up): hold it, resume it, transfer it to a queue or
a colleague.

A caller's call with Twilio is moved by the REST API: on hold, the caller's leg goes
back to the wait loop in the state "held" (music until resumed; the agent's leg ends);
resumed, the loop dials the agent again, whose softphone takes it up by itself;
transferred, the conversation moves (agents.transfer) and the caller waits in the loop
for whoever accepts it next, as any caller does. Calls the router placed (callbacks,
the agent's own calls) are the agent's leg with the customer dialled inside it, which
cannot be held without ending it: they are hung up, not held or transferred. A
simulated call (channels.voice.simulated) changes its own state instead.
"""

from __future__ import annotations

import logging

import aiohttp

from channels._twilio_rest import TwilioClients, TwilioError
from channels.voice import inbound, simulated, waiting
from router import agents
from router.config import Tenant
from router.errors import ContactRouterError
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
    """Put the agent's call on hold (on) or take it off hold."""
    if simulated.is_simulated(sid):
        await _simulated(store, tenant, agent, sid, "hold" if on else "resume")
        return
    caller = await _callers_leg(store, tenant, agent, conversation, ("connected",) if on else (waiting.HELD,))
    await inbound.update_call(store, tenant.id, caller, state=waiting.HELD if on else "connected")
    try:
        await _to_wait_loop(twilio, settings, tenant, caller)
    except DeskError:
        await inbound.update_call(store, tenant.id, caller, state="connected" if on else waiting.HELD)
        raise
    log.info("agent %s of %s %s call %s", agent, tenant.id, "holds" if on else "resumes", caller)


async def hang_up_held(store: Store, twilio: TwilioClients, tenant: Tenant, agent: str, conversation: str) -> None:
    """End a caller's call the agent holds (with Twilio, the agent's leg ended when it was
    put on hold, so the page's own hang-up has nothing left to end)."""
    caller = await _callers_leg(store, tenant, agent, conversation, (waiting.HELD,))
    if tenant.twilio is not None:
        try:
            await twilio.client(tenant).calls(caller).update_async(status="completed")
        except TwilioError as exc:
            raise DeskError(f"Twilio refused to end the call: {exc}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeskError(f"Twilio did not answer: {type(exc).__name__}") from None
    await inbound.update_call(store, tenant.id, caller, state="closed", hung_up_by="agent")
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
    caller = await _callers_leg(store, tenant, agent, conversation, ("connected", waiting.HELD))
    outcome = await agents.transfer(store, tenant, agent, conversation, to_agent=to_agent, to_queue=to_queue, note=note)
    await inbound.update_call(store, tenant.id, caller, state="queued", agent="")
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


async def _callers_leg(store: Store, tenant: Tenant, agent: str, conversation: str, states: tuple[str, ...]) -> str:
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
