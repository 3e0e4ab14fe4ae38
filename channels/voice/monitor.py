"""Supervisors on a live call: listen (muted), whisper (coach: only the agent hears
them) and barge (heard by both), from the floor.

A caller's call runs in its conversation's conference (channels.voice.bridge). The
supervisor joins it as one more participant, added by Twilio's REST API (Conference
Participants, create): their phone, else their softphone's Client, as the agent seat
they hold in the tenant; never a number of their choosing. Listen is muted=true,
whisper coaching=true with callSidToCoach the agent's leg, barge neither. A supervisor
already on the call changes mode by updating their participant, and leaves by being
removed from the conference; none of them ends it (endConferenceOnExit=false).

The conference record (Keys.conference) keeps each supervisor as a participant,
`p:<CallSid>` -> `supervisor:<login>:<mode>:<state>`, and `sup:<login>` -> CallSid;
the conference's statusCallback (bridge.conference_events) moves its state on, and
`listeners` is what the agent is shown (the conversation page and the softphone
panel). In the sandbox the same record is kept without Twilio, so the page shows it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable
from typing import Literal, TypeVar

import aiohttp

from channels._twilio_rest import TwilioClients, TwilioError
from channels.voice import bridge, inbound, softphone
from router.config import Tenant
from router.errors import ContactRouterError
from router.keys import Keys
from router.store import Store, text

log = logging.getLogger(__name__)

T = TypeVar("T")
Mode = Literal["listen", "whisper", "barge"]
MODES: tuple[Mode, ...] = ("listen", "whisper", "barge")
RING_S = 30
SUPERVISOR = "supervisor"


class MonitorError(ContactRouterError, ValueError):
    """The supervisor cannot join or change this call (none live, no phone, Twilio refused)."""


def endpoint(tenant: Tenant, seat: str) -> str:
    """Where a supervisor's leg rings: their seat's phone, else its softphone Client."""
    if not seat:
        raise MonitorError("you need an agent seat in this tenant, with a phone or the softphone, to join a call")
    phone = softphone.phone_of(tenant, seat)
    if phone:
        return phone
    if softphone.mode(tenant) == "unavailable":
        raise MonitorError("your seat has neither a phone nor the softphone to join the call from")
    return softphone.CLIENT + softphone.client_identity(seat)


def _settings(mode: Mode, agent_leg: str) -> dict[str, object]:
    if mode == "listen":
        return {"muted": True, "coaching": False}
    if mode == "whisper":
        return {"muted": False, "coaching": True, "call_sid_to_coach": agent_leg}
    return {"muted": False, "coaching": False}


async def _live(store: Store, tenant: Tenant, conversation: str) -> tuple[dict[str, str], str]:
    """The conversation's conference while its call is bridged, and the agent's leg."""
    room = await bridge.conference(store, tenant.id, conversation)
    caller = room.get("caller", "")
    call = await inbound.get_call(store, tenant.id, caller) if caller else {}
    if not room or room.get("ended_at") or call.get("state") != "connected" or not call.get("agent_leg"):
        raise MonitorError("there is no call in progress on this conversation")
    if tenant.twilio is not None and not room.get("sid"):
        raise MonitorError("the call is not in its conference yet: try again in a moment")
    return room, call["agent_leg"]


async def join(
    store: Store,
    twilio: TwilioClients,
    base: str,
    tenant: Tenant,
    conversation: str,
    *,
    login: str,
    seat: str,
    mode: Mode,
) -> str:
    """Put the supervisor on the call in `mode`, or switch them to it; their CallSid."""
    if mode not in MODES:
        raise MonitorError(f"mode: one of {', '.join(MODES)}")
    room, agent_leg = await _live(store, tenant, conversation)
    key = Keys(tenant.id).conference(conversation)
    sid = room.get(f"sup:{login}", "")
    state = room.get(f"p:{sid}", "").rsplit(":", 1)[-1] if sid else ""
    options = _settings(mode, agent_leg)
    if sid and state != "left":
        if tenant.twilio is not None:
            await _rest(twilio.client(tenant).conferences(room["sid"]).participants(sid).update_async(**options))
        await store.redis.hset(key, f"p:{sid}", f"{SUPERVISOR}:{login}:{mode}:{state or 'joining'}")
        log.info("supervisor %s of %s now %s on %s", login, tenant.id, mode, conversation)
        return sid
    to = endpoint(tenant, seat)
    if tenant.twilio is None:
        sid = "SIM" + hashlib.sha256(f"{tenant.id}:{conversation}:{login}".encode()).hexdigest()[:32]
        state = "in"  # nothing rings in the sandbox: shown as on the call
    else:
        caller_id = next(iter(tenant.voice.numbers), "")
        made = await _rest(
            twilio.client(tenant)
            .conferences(room["sid"])
            .participants.create_async(
                from_=caller_id,
                to=to,
                label=f"{SUPERVISOR}-{login}",
                beep="false",
                early_media=False,
                timeout=RING_S,
                start_conference_on_enter=False,
                end_conference_on_exit=False,
                conference_status_callback=bridge.conference_events_url(base, tenant.id, conversation, SUPERVISOR),
                conference_status_callback_event=bridge.CONFERENCE_EVENTS.split(),
                **options,
            )
        )
        sid, state = made.call_sid, "joining"
    await store.redis.hset(key, mapping={f"p:{sid}": f"{SUPERVISOR}:{login}:{mode}:{state}", f"sup:{login}": sid})
    log.info("supervisor %s of %s joins %s (%s) from %s", login, tenant.id, conversation, mode, to)
    return sid


async def leave(store: Store, twilio: TwilioClients, tenant: Tenant, conversation: str, *, login: str) -> None:
    """Take the supervisor off the call (removed from the conference, which goes on)."""
    room = await bridge.conference(store, tenant.id, conversation)
    sid = room.get(f"sup:{login}", "")
    if not sid:
        raise MonitorError("you are not on this call")
    who = room.get(f"p:{sid}", "").rsplit(":", 1)[0]
    if tenant.twilio is not None and room.get("sid") and not room.get("ended_at"):
        try:
            await twilio.client(tenant).conferences(room["sid"]).participants(sid).delete_async()
        except TwilioError as exc:
            if getattr(exc, "status", 0) != 404:  # already gone is as good as removed
                raise MonitorError(f"Twilio refused: {exc}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise MonitorError(f"Twilio did not answer: {type(exc).__name__}") from None
    await store.redis.hset(Keys(tenant.id).conference(conversation), f"p:{sid}", f"{who}:left")
    log.info("supervisor %s of %s leaves %s", login, tenant.id, conversation)


async def live_call(store: Store, tenant: str, conversation: str) -> bool:
    """Whether the conversation's call is bridged and going on (what the floor offers to join)."""
    ended, caller = await store.redis.hmget(Keys(tenant).conference(conversation), "ended_at", "caller")
    if ended is not None or caller is None:
        return False
    return (await inbound.get_call(store, tenant, text(caller))).get("state") == "connected"


async def listeners(store: Store, tenant: str, conversation: str) -> list[dict[str, str]]:
    """The supervisors on the conversation's call now: login, mode and state."""
    raw = await store.redis.hgetall(Keys(tenant).conference(conversation))
    found = []
    for field, value in raw.items():
        name, value_ = text(field), text(value)
        if name.startswith("p:") and value_.startswith(SUPERVISOR + ":"):
            _, login, mode, state = value_.split(":", 3)
            if state != "left":
                found.append({"login": login, "mode": mode, "state": state})
    return sorted(found, key=lambda f: f["login"])


async def _rest(request: Awaitable[T]) -> T:
    """Await a REST request of the twilio client; Twilio's refusal as a MonitorError."""
    try:
        return await request
    except TwilioError as exc:
        raise MonitorError(f"Twilio refused: {exc}") from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise MonitorError(f"Twilio did not answer: {type(exc).__name__}") from None
