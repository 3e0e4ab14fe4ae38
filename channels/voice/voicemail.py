"""Voicemail: a caller records a message (after hours, or from the queue), and it
reaches an agent as a contact with the recording attached.

The Record verb (ask) names three URLs: the action (/twilio/voice/voicemail/done,
thanks the caller and hangs up), the recording status callback
(/twilio/{tenant}/voice/recording) and the transcription callback
(/twilio/{tenant}/voice/transcription). Those two carry no numbers, so their
URLs name the tenant; the caller's number comes from the call's record.

The recording callback adds a contact of kind "voicemail" (the recording as an
audio/mpeg attachment), once per RecordingSid. Transcription usually arrives
later; it is not waited for (a transcription that never comes would hold the
voicemail back). When it arrives after the voicemail was added, it follows it
as a second contact (kind "voicemail", the text as its body, once per
TranscriptionSid) on the same inbound stream: stream order puts it after the
recording, so routing adds it to the same conversation whether or not that one
has been opened yet (an add_note now could find no conversation to add to).
When it arrives first, the voicemail contact carries the text itself. Both
callbacks write their half to the call's record before reading the other's, so
racing callbacks may both carry the text but never both drop it.
"""

from __future__ import annotations

import logging

from aiohttp import web
from twilio.twiml.voice_response import VoiceResponse

from channels._twilio_auth import tenant_form
from channels.voice import inbound
from channels.voice._webhook import call_form, twiml, url
from router import bus, events
from router.appkeys import STORE
from router.config import Tenant
from router.keys import Keys

log = logging.getLogger(__name__)

DONE_PATH = "/twilio/voice/voicemail/done"
RECORDING_PATH = "/twilio/{tenant}/voice/recording"
TRANSCRIPTION_PATH = "/twilio/{tenant}/voice/transcription"

MAX_LENGTH_S = 120  # Twilio transcribes recordings of at most two minutes


def setup(app: web.Application) -> None:
    app.router.add_post(DONE_PATH, done)
    app.router.add_post(RECORDING_PATH, recording)
    app.router.add_post(TRANSCRIPTION_PATH, transcription)


def ask(request: web.Request, response: VoiceResponse, tenant: Tenant) -> None:
    """Ask for a message and record it, transcribed."""
    response.say(
        "Please leave a message after the tone. Press the pound key when you are done.",
        language=tenant.voice.language,
    )
    response.record(
        max_length=MAX_LENGTH_S,
        finish_on_key="#",
        play_beep=True,
        action=url(request, DONE_PATH),
        transcribe=True,
        transcribe_callback=url(request, TRANSCRIPTION_PATH.format(tenant=tenant.id)),
        recording_status_callback=url(request, RECORDING_PATH.format(tenant=tenant.id)),
        recording_status_callback_event="completed",
    )


async def done(request: web.Request) -> web.Response:
    tenant, _form = await call_form(request)
    response = VoiceResponse()
    response.say("Thank you for your message. Goodbye.", language=tenant.voice.language)
    response.hangup()
    return twiml(response)


async def recording(request: web.Request) -> web.Response:
    store = request.app[STORE]
    tenant, form = await tenant_form(request, ("CallSid", "RecordingSid", "RecordingUrl", "RecordingStatus"))
    sid, recording_sid = form["CallSid"], form["RecordingSid"]
    if form["RecordingStatus"] != "completed":  # absent (too short, silent) or failed: nothing to hear
        log.info("recording %s of call %s (%s): %s", recording_sid, sid, tenant.id, form["RecordingStatus"])
        return web.Response(text="")
    call = await inbound.get_call(store, tenant.id, sid)
    if not call.get("from"):
        # Answered 200 all the same: Twilio retrying would not make the call ours.
        log.warning("recording %s of unknown call %s of %s ignored", recording_sid, sid, tenant.id)
        return web.Response(text="")
    contact_id = call.get("voicemail_contact") or events.new_id()
    await store.redis.hsetnx(Keys(tenant.id).call(sid), "voicemail_contact", contact_id)
    call = await inbound.get_call(store, tenant.id, sid)  # the first writer's id, and any transcription so far
    duration = form.get("RecordingDuration", "")
    try:
        contact = events.build(
            events.InboundContact,
            {
                "id": call["voicemail_contact"],
                "tenant": tenant.id,
                "channel": "voice",
                "kind": "voicemail",
                "address": call["from"],
                "to": call.get("to", ""),
                "provider_id": recording_sid,
                "occurred_at": events.now_ms(),
                "original_at": int(call.get("started_at") or events.now_ms()),
                "queue": call.get("queue", ""),
                "subject": "Voicemail",
                "body": call.get("transcription", ""),
                "attachments": [_attachment(form["RecordingUrl"], duration)],
                "metadata": {"call_sid": sid, "recording_sid": recording_sid, "duration_s": duration},
            },
        )
    except events.InvalidEvent as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    await inbound.update_call(store, tenant.id, sid, recording_sid=recording_sid, recording_url=form["RecordingUrl"])
    await bus.ingest(store, contact)
    return web.Response(text="")


def _attachment(recording_url: str, duration: str) -> dict[str, str]:
    # Twilio serves a recording's URL as WAV, and as MP3 with ".mp3" appended.
    if recording_url.endswith(".wav"):
        return {"url": recording_url, "content_type": "audio/wav", "filename": "voicemail.wav"}
    if not recording_url.endswith(".mp3"):
        recording_url += ".mp3"
    return {"url": recording_url, "content_type": "audio/mpeg", "filename": "voicemail.mp3"}


async def transcription(request: web.Request) -> web.Response:
    store = request.app[STORE]
    tenant, form = await tenant_form(request, ("CallSid", "RecordingSid", "TranscriptionSid", "TranscriptionStatus"))
    sid = form["CallSid"]
    text = form.get("TranscriptionText", "").strip()
    if form["TranscriptionStatus"] != "completed" or not text:
        log.info(
            "transcription of %s (call %s, %s): %s", form["RecordingSid"], sid, tenant.id, form["TranscriptionStatus"]
        )
        return web.Response(text="")
    call = await inbound.get_call(store, tenant.id, sid)
    if not call.get("from"):
        log.warning("transcription for unknown call %s of %s ignored", sid, tenant.id)
        return web.Response(text="")
    await inbound.update_call(store, tenant.id, sid, transcription=text)
    call = await inbound.get_call(store, tenant.id, sid)
    if not call.get("voicemail_contact"):
        return web.Response(text="")  # the voicemail contact, when added, carries the text
    contact = events.build(
        events.InboundContact,
        {
            "id": events.new_id(),
            "tenant": tenant.id,
            "channel": "voice",
            "kind": "voicemail",
            "address": call["from"],
            "to": call.get("to", ""),
            "provider_id": form["TranscriptionSid"],
            "occurred_at": events.now_ms(),
            "queue": call.get("queue", ""),
            "subject": "Voicemail transcription",
            "body": text,
            "metadata": {
                "call_sid": sid,
                "recording_sid": form["RecordingSid"],
                "transcription_of": call["voicemail_contact"],
            },
        },
    )
    await bus.ingest(store, contact)
    return web.Response(text="")
