"""Voicemail: recorded after hours or from the queue, it reaches an agent with the
recording attached and, when Twilio has transcribed it, the text."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from channels.voice import inbound, voicemail, waiting
from router import conversations
from tests.channels.voice_phone import CALLER, Phone, new_sid, serve

RECORDING = "/twilio/acme/voice/recording"
TRANSCRIPTION = "/twilio/acme/voice/transcription"
RECORDING_URL = "https://api.twilio.com/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Recordings/RE1"


@pytest.fixture
async def phone() -> AsyncIterator[Phone]:
    async for value in serve():
        yield value


async def after_hours(phone: Phone) -> None:
    await phone.answer(inbound.PATH)
    assert "Record" in (await phone.answer(f"{inbound.MENU_PATH}?attempt=1", Digits="3")).verbs


def recorded(phone: Phone, recording_sid: str, **extra: str) -> dict:
    """A recording status callback: no numbers, only the call and the recording."""
    values = {
        "AccountSid": phone.params()["AccountSid"],
        "CallSid": phone.sid,
        "RecordingSid": recording_sid,
        "RecordingUrl": RECORDING_URL,
        "RecordingStatus": "completed",
        "RecordingDuration": "14",
        "RecordingChannels": "1",
        "RecordingSource": "RecordVerb",
    }
    return {**values, **extra}


def transcribed(phone: Phone, recording_sid: str, text: str, **extra: str) -> dict:
    values = {
        **phone.params(),
        "RecordingSid": recording_sid,
        "RecordingUrl": RECORDING_URL,
        "TranscriptionSid": new_sid("TR"),
        "TranscriptionText": text,
        "TranscriptionStatus": "completed",
        "TranscriptionUrl": "https://api.twilio.com/2010-04-01/Accounts/AC/Transcriptions/TR1",
    }
    return {**values, **extra}


async def ok(response) -> None:
    assert response.status == 200, await response.text()


async def test_a_recording_becomes_a_voicemail_contact_with_the_audio_attached_once(phone):
    await after_hours(phone)
    done = await phone.answer(voicemail.DONE_PATH)
    assert done.verbs == ["Say", "Hangup"]
    recording_sid = new_sid("RE")
    for _ in range(2):  # Twilio retries
        await ok(await phone.post(RECORDING, recorded(phone, recording_sid)))
    [contact] = await phone.inbound()
    assert (contact.channel, contact.kind, contact.address, contact.queue) == ("voice", "voicemail", CALLER, "night")
    assert contact.provider_id == recording_sid
    [audio] = contact.attachments
    assert (audio.url, audio.content_type) == (RECORDING_URL + ".mp3", "audio/mpeg")
    assert contact.original_at == int((await phone.call_record())["started_at"])
    assert contact.metadata["duration_s"] == "14"


async def test_a_transcription_that_comes_later_follows_the_voicemail_into_its_conversation(phone):
    await after_hours(phone)
    recording_sid = new_sid("RE")
    await ok(await phone.post(RECORDING, recorded(phone, recording_sid)))
    await phone.route()
    params = transcribed(phone, recording_sid, "Hi, my meter is broken, please call me.")
    for _ in range(2):
        await ok(await phone.post(TRANSCRIPTION, params))
    [voicemail_contact, text] = await phone.inbound()
    assert (text.kind, text.body, text.provider_id) == (
        "voicemail",
        params["TranscriptionText"],
        params["TranscriptionSid"],
    )
    assert text.metadata["transcription_of"] == voicemail_contact.id
    await phone.route()
    [(_conversation, history)] = await conversations.customer_history(
        phone.world.store, "acme", (await phone.world.events())[0].customer
    )
    assert [(e.contact_kind, e.body, len(e.attachments)) for e in history] == [
        ("voicemail", "", 1),
        ("voicemail", "Hi, my meter is broken, please call me.", 0),
    ]


async def test_a_transcription_that_comes_first_is_carried_by_the_voicemail(phone):
    await after_hours(phone)
    recording_sid = new_sid("RE")
    await ok(await phone.post(TRANSCRIPTION, transcribed(phone, recording_sid, "Please call back.")))
    assert await phone.inbound() == []
    await ok(await phone.post(RECORDING, recorded(phone, recording_sid)))
    [contact] = await phone.inbound()
    assert (contact.body, len(contact.attachments)) == ("Please call back.", 1)


async def test_a_failed_transcription_or_an_absent_recording_adds_nothing(phone):
    await after_hours(phone)
    recording_sid = new_sid("RE")
    await ok(await phone.post(RECORDING, recorded(phone, recording_sid, RecordingStatus="absent")))
    failed = transcribed(phone, recording_sid, "", TranscriptionStatus="failed")
    await ok(await phone.post(TRANSCRIPTION, failed))
    assert await phone.inbound() == []


async def test_a_waiting_caller_may_leave_a_voicemail_instead(phone):
    await phone.answer(inbound.PATH)
    await phone.answer(f"{inbound.MENU_PATH}?attempt=1", Digits="1")
    await phone.route()
    call_conversation = await inbound.conversation_of(phone.world.store, "acme", phone.sid, await phone.call_record())
    answer = await phone.answer(waiting.CHOICE_PATH, Digits="2")
    assert answer.verbs == ["Say", "Record"]
    record = await phone.world.conversation(call_conversation)
    assert (record["state"], record["disposition"]) == ("closed", "voicemail")
    await ok(await phone.post(RECORDING, recorded(phone, new_sid("RE"))))
    voicemail_contact = (await phone.inbound())[-1]
    assert (voicemail_contact.kind, voicemail_contact.queue) == ("voicemail", "support")
    await phone.route()
    [waiting_now] = await phone.world.waiting("support")  # the voicemail, in the call's place
    assert (await phone.world.conversation(waiting_now))["kind"] == "voicemail"


@pytest.mark.parametrize("path", [RECORDING, TRANSCRIPTION])
async def test_forged_recording_callbacks_are_refused_and_nothing_is_stored(phone, path):
    await after_hours(phone)
    before = await phone.snapshot()
    recording_sid = new_sid("RE")
    params = recorded(phone, recording_sid) if path == RECORDING else transcribed(phone, recording_sid, "x")
    response = await phone.post(path, params, phone.signature(path, params, token="not-the-auth-token"))
    assert response.status == 403
    assert await phone.snapshot() == before


async def test_a_recording_callback_for_an_unknown_tenant_is_404(phone):
    params = recorded(phone, new_sid("RE"))
    assert (await phone.post("/twilio/initech/voice/recording", params)).status == 404


async def test_a_recording_callback_without_its_recording_is_400(phone):
    params = {k: v for k, v in recorded(phone, new_sid("RE")).items() if k != "RecordingUrl"}
    response = await phone.post(RECORDING, params)
    assert response.status == 400
    assert "missing parameters: RecordingUrl" in await response.text()
