"""Recording agent calls: dual-channel (the customer on one channel, the agent's side
on the other) at Twilio, per tenant and queue (`[tenants.voice] recording`: off,
inbound, all), announced to the caller before they are put through, paused and
resumed from the desk (while a card number is read out), heard in the conversation
behind the login, and deleted at Twilio and here after the retention period.

- A caller's call (inbound): when the agent takes it at the whisper (bridge), the
  router asks Twilio's REST API to record the caller's call (Call Recordings,
  RecordingChannels=dual), before the caller is put through: the caller first hears
  the tenant's consent words (`consent`), then joins the conference.
- A call the router places for an agent (a callback, the agent's own call), with
  "all": its TwiML dials the customer with record="record-from-answer-dual"
  (outbound.agent_first_twiml), which records from the customer's answer.

Either way Twilio reports the recording to RECORDING_PATH (signed, its URL names the
tenant and the conversation): in-progress gives the RecordingSid of a Dial's
recording, completed its media URL and length, absent or failed that there is
nothing to hear. Each recording is a hash (Keys.recording), listed per conversation
and in the tenant's set by start time (what `delete_expired` walks).

Pause and resume (`pause`) are the REST update of the recording (Status paused, with
the paused part skipped, then in-progress). Playback is router/app/inbox/recordings.py:
fetched with the tenant's account, the same way as voicemail, and each play is audited.

In the sandbox (no Twilio account) a recording is a marker on the simulated call
(its id starts with SIM): it shows as on, paused, resumed and deleted like a real
one, but has no sound.
"""

from __future__ import annotations

import hashlib
import logging
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from twilio.twiml.voice_response import VoiceResponse

from channels._twilio_auth import tenant_form
from channels._twilio_rest import TwilioClients, TwilioError
from router import events
from router.appkeys import STORE
from router.config import Tenant
from router.errors import ContactRouterError
from router.keys import Keys
from router.store import Store, text

log = logging.getLogger(__name__)

RECORDING_PATH = "/twilio/{tenant}/voice/call-recording"
STATUS_EVENTS = ["in-progress", "completed", "absent"]
DIAL_RECORD = "record-from-answer-dual"  # a Dial's record: from the customer's answer, two channels
DAY_MS = 86_400_000
SIMULATED = "SIMRE"  # a sandbox recording's id prefix (simulated calls' ids start with SIM)
TOMBSTONE_S = 30 * 86_400  # longer than Twilio retries a report
STATES = ("in-progress", "paused", "completed", "absent", "failed", "deleted")


class RecordingError(ContactRouterError, ValueError):
    """A recording cannot be paused or resumed (none running, or Twilio refused); says why."""


def setup(app: web.Application) -> None:
    app.router.add_post(RECORDING_PATH, status_callback)


# --- what is recorded ---------------------------------------------------------------


def applies(tenant: Tenant, queue: str, *, placed: bool) -> bool:
    """Whether a call in this queue is recorded: a caller's call when the queue's mode is
    inbound or all, a call the router placed for an agent (placed) only with all."""
    mode = tenant.voice.recording_mode(queue)
    return mode == "all" or (mode == "inbound" and not placed)


def consent(response: VoiceResponse, tenant: Tenant) -> None:
    """The announcement a recorded caller hears before being put through."""
    response.say(tenant.voice.recording_consent, language=tenant.voice.language)


def retention_days(tenant: Tenant) -> int:
    """Days a recording is kept (0: for ever): the voice section's, else the tenant's."""
    days = tenant.voice.recording_retention_days
    return tenant.retention_days if days is None else days


def callback_url(base: str, tenant: str, conversation: str) -> str:
    """Where Twilio reports a recording of the conversation's call (the URL is signed)."""
    return base + RECORDING_PATH.format(tenant=tenant) + "?" + urlencode({"conversation": conversation})


# --- the record ---------------------------------------------------------------------


async def _keep(store: Store, tenant: str, conversation: str, sid: str, call: str, fields: dict[str, str]) -> None:
    """Create or update a recording's hash and list it (once) by when it began."""
    keys = Keys(tenant)
    now = events.now_ms()
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.hsetnx(keys.recording(sid), "started_at", str(now))
        pipe.hset(keys.recording(sid), mapping={"sid": sid, "conversation": conversation, "call": call, **fields})
        pipe.zadd(keys.recordings, {sid: now}, nx=True)
        pipe.zadd(keys.conversation_recordings(conversation), {sid: now}, nx=True)
        await pipe.execute()


async def get(store: Store, tenant: str, sid: str) -> dict[str, str]:
    raw = await store.redis.hgetall(Keys(tenant).recording(sid))
    return {text(k): text(v) for k, v in raw.items()}


async def of_conversation(store: Store, tenant: str, conversation: str) -> list[dict[str, str]]:
    """The conversation's recordings, oldest first (deleted ones are gone from the list)."""
    sids = await store.redis.zrange(Keys(tenant).conversation_recordings(conversation), 0, -1)
    found = [await get(store, tenant, text(sid)) for sid in sids]
    return [r for r in found if r.get("sid")]


async def running(store: Store, tenant: str, conversation: str) -> dict[str, str] | None:
    """The conversation's recording in progress or paused, the newest, if any."""
    for found in reversed(await of_conversation(store, tenant, conversation)):
        if found.get("state") in ("in-progress", "paused"):
            return found
    return None


# --- starting, pausing --------------------------------------------------------------


async def start(
    store: Store, twilio: TwilioClients | None, base: str, tenant: Tenant, conversation: str, call: str
) -> str | None:
    """Record a caller's call (dual-channel) through the REST API; the RecordingSid, or
    None if Twilio refused (logged: the call goes on unrecorded rather than not at all).
    In the sandbox the simulated call gets a marker instead."""
    if tenant.twilio is None or twilio is None:
        sid = SIMULATED + hashlib.sha256(f"{tenant.id}:{call}".encode()).hexdigest()[:32]
        await _keep(store, tenant.id, conversation, sid, call, {"state": "in-progress", "simulated": "1"})
        log.info("simulated call %s of %s recorded (a marker: no sound)", call, tenant.id)
        return sid
    try:
        made = await (
            twilio.client(tenant)
            .calls(call)
            .recordings.create_async(
                recording_channels="dual",
                recording_track="both",
                recording_status_callback=callback_url(base, tenant.id, conversation),
                recording_status_callback_event=STATUS_EVENTS,
                recording_status_callback_method="POST",
            )
        )
    except (TwilioError, aiohttp.ClientError, TimeoutError) as exc:
        log.error("call %s of %s not recorded: Twilio refused or did not answer (%s)", call, tenant.id, exc)
        return None
    await _keep(store, tenant.id, conversation, made.sid, call, {"state": "in-progress"})
    log.info("call %s of %s recorded as %s", call, tenant.id, made.sid)
    return made.sid


async def stop_simulated(store: Store, tenant: str, conversation: str) -> None:
    """A simulated call ended: its recording marker is complete (Twilio reports a real one)."""
    found = await running(store, tenant, conversation)
    if found is not None and found.get("simulated"):
        await store.redis.hset(
            Keys(tenant).recording(found["sid"]), mapping={"state": "completed", "ended_at": str(events.now_ms())}
        )


async def pause(
    store: Store, twilio: TwilioClients, tenant: Tenant, conversation: str, *, paused: bool, by: str
) -> dict[str, str]:
    """Pause (the paused part is skipped, not silent) or resume the conversation's running
    recording; returns it as it is now. A repeated click changes nothing."""
    found = await running(store, tenant.id, conversation)
    if found is None:
        raise RecordingError("no recording is running on this call")
    wanted = "paused" if paused else "in-progress"
    if found["state"] == wanted:
        return found
    if not found.get("simulated"):
        try:
            resource = twilio.client(tenant).calls(found["call"]).recordings(found["sid"])
            if paused:
                await resource.update_async(status="paused", pause_behavior="skip")
            else:
                await resource.update_async(status="in-progress")
        except TwilioError as exc:
            raise RecordingError(f"Twilio refused to {'pause' if paused else 'resume'} the recording: {exc}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RecordingError(f"Twilio did not answer: {type(exc).__name__}") from None
    now = str(events.now_ms())
    await store.redis.hset(
        Keys(tenant.id).recording(found["sid"]),
        mapping={"state": wanted, "paused_by" if paused else "resumed_by": by, f"{wanted}_at": now},
    )
    log.info("recording %s of %s %s by %s", found["sid"], tenant.id, "paused" if paused else "resumed", by)
    return await get(store, tenant.id, found["sid"])


# --- Twilio's reports ---------------------------------------------------------------


async def status_callback(request: web.Request) -> web.Response:
    """A recording's statusCallback: in-progress, completed (its media), absent or failed."""
    store = request.app[STORE]
    tenant, form = await tenant_form(request, ("CallSid", "RecordingSid", "RecordingStatus"))
    conversation = request.query.get("conversation", "")
    if not conversation:
        raise web.HTTPBadRequest(text="conversation is required")
    sid, status = form["RecordingSid"], form["RecordingStatus"]
    if status not in STATES:
        raise web.HTTPBadRequest(text=f"unknown RecordingStatus {status!r}")
    known = await get(store, tenant.id, sid)
    if known.get("state") == "deleted" or (known and known.get("conversation") != conversation):
        return web.Response(text="")  # a late report of one deleted, or not this conversation's
    fields = {"channels": form.get("RecordingChannels", "2")}
    if status == "in-progress":
        if known.get("state") != "paused":  # a report overtaken by a pause says nothing new
            fields["state"] = status
    else:
        fields["state"] = status
    if status == "completed":
        fields |= {"url": form.get("RecordingUrl", ""), "duration_s": form.get("RecordingDuration", "")}
        fields["ended_at"] = str(events.now_ms())
    await _keep(store, tenant.id, conversation, sid, form["CallSid"], fields)
    log.info("recording %s of call %s (%s): %s", sid, form["CallSid"], tenant.id, status)
    return web.Response(text="")


def media_url(found: dict[str, str]) -> str:
    """Twilio serves a recording as WAV at its URL, and as MP3 with ".mp3" appended."""
    url = found.get("url", "")
    return url if not url or url.endswith((".mp3", ".wav")) else url + ".mp3"


# --- retention ----------------------------------------------------------------------


async def delete_expired(store: Store, twilio: TwilioClients, tenant: Tenant, *, now_ms: int | None = None) -> int:
    """Delete the tenant's recordings older than its retention, at Twilio first (REST
    delete; one Twilio no longer has counts as deleted) and then here. One Twilio fails
    to delete stays for the next pass. Returns how many were deleted. Called by the
    timers worker's upkeep (workers/timers.py)."""
    days = retention_days(tenant)
    if days <= 0:
        return 0
    keys = Keys(tenant.id)
    before = (now_ms if now_ms is not None else events.now_ms()) - days * DAY_MS
    deleted = 0
    for raw in await store.redis.zrangebyscore(keys.recordings, "-inf", f"({before}", start=0, num=500):
        sid = text(raw)
        found = await get(store, tenant.id, sid)
        if found.get("state") in ("in-progress", "paused"):
            continue  # still being made (a call longer than the retention?): next pass
        if found and not found.get("simulated") and tenant.twilio is not None:
            try:
                await twilio.client(tenant).recordings(sid).delete_async()
            except TwilioError as exc:
                if getattr(exc, "status", 0) != 404:
                    log.error("recording %s of %s not deleted at Twilio (%s): next pass", sid, tenant.id, exc)
                    continue
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.error("recording %s of %s not deleted: Twilio did not answer (%s)", sid, tenant.id, exc)
                continue
        async with store.redis.pipeline(transaction=True) as pipe:
            # a tombstone, so that a late report of it from Twilio brings nothing back
            pipe.delete(keys.recording(sid))
            pipe.hset(keys.recording(sid), mapping={"state": "deleted", "deleted_at": str(events.now_ms())})
            pipe.expire(keys.recording(sid), TOMBSTONE_S)
            pipe.zrem(keys.recordings, sid)
            if found.get("conversation"):
                pipe.zrem(keys.conversation_recordings(found["conversation"]), sid)
            await pipe.execute()
        deleted += 1
    if deleted:
        log.info("deleted %d recordings of %s kept past %d days", deleted, tenant.id, days)
    return deleted
