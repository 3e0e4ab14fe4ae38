"""Recording agent calls: a recorded queue's caller hears the consent words before being
put through and their call is recorded dual-channel by Twilio's REST API; the desk pauses
and resumes it; Twilio's signed report gives its media, heard in the conversation behind
the login, each play audited and refused in another tenant; after the tenant's retention
it is deleted at Twilio and here. The real twilio client against the fake REST server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from unittest.mock import ANY
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp.test_utils import TestClient, TestServer
from twilio.request_validator import RequestValidator

from channels.voice import recording
from channels.voice.outbound import VoiceSender
from router import audit, events
from router.app import web
from router.config.voice import CONSENT
from router.settings import Settings
from tests.channels import test_voice_callbacks as callbacks_test
from tests.channels.test_voice_softphone import ENV, WAIT, WITH_KEY, Desk, desk_of
from tests.channels.twilio_api import TwilioApi
from tests.channels.voice_phone import ACME_SID
from tests.factories import world

RECORDED = WITH_KEY.replace(
    "expected_handle_seconds = 240",
    'expected_handle_seconds = 240\nrecording = "inbound"\nrecording_queues = { billing = "off" }\n'
    "recording_retention_days = 30",
    1,
)
DAY_MS = 86_400_000


@pytest.fixture
async def desk() -> AsyncIterator[Desk]:
    async for value in desk_of(RECORDED, ENV):
        yield value


def recorded_url(sid: str) -> str:
    return f"https://api.twilio.com/2010-04-01/Accounts/{ACME_SID}/Recordings/{sid}"


async def report(desk: Desk, conversation: str, sid: str, status: str, **extra: str) -> int:
    """Twilio's signed recordingStatusCallback."""
    path = recording.RECORDING_PATH.format(tenant="acme") + f"?conversation={conversation}"
    form = {"AccountSid": ACME_SID, "CallSid": desk.phone.sid, "RecordingSid": sid, "RecordingStatus": status,
            "RecordingChannels": "2", **extra}  # fmt: skip
    return (await desk.phone.post(path, form)).status


async def completed(desk: Desk) -> tuple[str, str]:
    """A recorded call, over: its conversation and RecordingSid, its media on the fake API."""
    conversation = await desk.call_with("zoe")
    [sid] = desk.api.recording_sids
    done = {"RecordingUrl": recorded_url(sid), "RecordingDuration": "61"}
    assert await report(desk, conversation, sid, "completed", **done) == 200
    path = urlsplit(recorded_url(sid)).path + ".mp3"
    desk.api.media[path] = ("audio/mpeg", b"ID3 the call")
    return conversation, sid


async def test_a_recorded_call_is_announced_and_recorded_dual_channel_from_the_take(desk):
    conversation = await desk.call_with("zoe")
    [start] = [r for r in desk.api.requests if r.path.endswith("/Recordings.json")]
    assert start.path == f"/2010-04-01/Accounts/{ACME_SID}/Calls/{desk.phone.sid}/Recordings.json"
    assert (start["RecordingChannels"], start["RecordingTrack"]) == ("dual", "both")
    callback = urlsplit(start["RecordingStatusCallback"])
    assert callback.path == recording.RECORDING_PATH.format(tenant="acme")
    assert parse_qs(callback.query) == {"conversation": [conversation]}
    assert start.form.getall("RecordingStatusCallbackEvent") == ["in-progress", "completed", "absent"]
    # before the caller's leg is moved, so the consent is in the recording
    moved = next(i for i, r in enumerate(desk.api.requests) if r.path.endswith(f"/Calls/{desk.phone.sid}.json"))
    assert desk.api.requests.index(start) < moved
    joined = await desk.phone.answer(WAIT)
    assert joined.verbs == ["Say", "Dial", "Hangup"]
    assert joined.said() == CONSENT
    assert joined.one("Say").get("language") == "en-GB"
    [found] = await recording.of_conversation(desk.world.store, "acme", conversation)
    assert (found["state"], found["call"]) == ("in-progress", desk.phone.sid)


async def test_a_queue_with_recording_off_is_neither_announced_nor_recorded(desk):
    tenant = desk.world.tenant
    assert recording.applies(tenant, "support", placed=False)
    assert not recording.applies(tenant, "support", placed=True)  # inbound: not the calls we place
    assert not recording.applies(tenant, "billing", placed=False)


async def test_the_desk_pauses_and_resumes_the_recording_and_only_the_agent_on_the_call_may(desk):
    conversation = await desk.call_with("zoe")
    [sid] = desk.api.recording_sids
    zoe, token = await desk.agent("zoe")
    amy, amy_token = await desk.agent("amy")
    url = f"/inbox/t/acme/c/{conversation}/recording"
    async with zoe, amy:
        as_amy = {"X-CSRF-Token": amy_token, "Accept": "application/json"}
        refused = await amy.post(url, data={"paused": "1"}, headers=as_amy)
        assert refused.status == 409
        headers = {"X-CSRF-Token": token, "Accept": "application/json"}
        paused = await zoe.post(url, data={"paused": "1"}, headers=headers)
        assert (paused.status, await paused.json()) == (200, {"recording": "paused"})
        assert (await zoe.post(url, data={"paused": "1"}, headers=headers)).status == 200  # a repeated click
        resumed = await zoe.post(url, data={"paused": "0"}, headers=headers)
        assert (await resumed.json()) == {"recording": "in-progress"}
        # the page's form (no JSON asked for) goes back to the conversation
        again = await zoe.post(url, data={"paused": "1", "csrf": token}, allow_redirects=False)
        assert again.status == 303
    updates = [r for r in desk.api.requests if r.path.endswith(f"/Recordings/{sid}.json")]
    assert [(u["Status"], u.get("PauseBehavior")) for u in updates] == [
        ("paused", "skip"),
        ("in-progress", None),
        ("paused", "skip"),
    ]
    found = await recording.get(desk.world.store, "acme", sid)
    assert (found["state"], found["paused_by"]) == ("paused", "zoe")
    # Twilio's late in-progress report does not undo the pause
    assert await report(desk, conversation, sid, "in-progress") == 200
    assert (await recording.get(desk.world.store, "acme", sid))["state"] == "paused"


async def test_a_recording_is_played_behind_the_login_and_every_play_is_audited(desk):
    conversation, sid = await completed(desk)
    zoe, _token = await desk.agent("zoe")
    async with zoe:
        page = await (await zoe.get(f"/inbox/t/acme/c/{conversation}")).text()
        assert f"/inbox/t/acme/c/{conversation}/recordings/{sid}" in page
        played = await zoe.get(f"/inbox/t/acme/c/{conversation}/recordings/{sid}")
        assert (played.status, await played.read()) == (200, b"ID3 the call")
        assert played.headers["Content-Type"] == "audio/mpeg"
    fetched = [r for r in desk.api.requests if r.method == "GET" and sid in r.path]
    assert fetched[-1].auth == (ACME_SID, "acme-auth-token-0123456789abcdef")  # the tenant's account
    entries, _ = await audit.read(desk.world.store, tenant="acme", action="recording_opened")
    [(_id, entry)] = entries
    assert (entry.actor, entry.target) == ("zoe", f"conversation {conversation}, call recording {sid}")


async def test_a_recording_is_refused_to_another_tenant_and_another_conversation(desk):
    conversation, sid = await completed(desk)
    gus, _ = await desk.agent("gus", "globex")
    zoe, _ = await desk.agent("zoe")
    other = await desk.world.arrive(address="+12015550000", channel="sms", queue="support")
    async with gus, zoe:
        assert (await gus.get(f"/inbox/t/acme/c/{conversation}/recordings/{sid}")).status == 404
        assert (await gus.get(f"/inbox/t/globex/c/{conversation}/recordings/{sid}")).status == 404
        assert (await zoe.get(f"/inbox/t/acme/c/{other}/recordings/{sid}")).status == 404
    assert (await audit.read(desk.world.store, tenant="acme", action="recording_opened"))[0] == []
    assert not [r for r in desk.api.requests if r.method == "GET" and sid in r.path]


async def test_a_forged_recording_report_is_refused(desk):
    conversation = await desk.call_with("zoe")
    [sid] = desk.api.recording_sids
    path = recording.RECORDING_PATH.format(tenant="acme") + f"?conversation={conversation}"
    form = {"AccountSid": ACME_SID, "CallSid": desk.phone.sid, "RecordingSid": sid, "RecordingStatus": "completed",
            "RecordingUrl": "https://evil.example/x"}  # fmt: skip
    assert (await desk.phone.post(path, form, signature="forged")).status == 403
    assert (await recording.get(desk.world.store, "acme", sid))["state"] == "in-progress"


async def test_after_the_retention_a_recording_is_deleted_at_twilio_and_here(desk):
    conversation, sid = await completed(desk)
    store, tenant = desk.world.store, desk.world.tenant
    twilio = desk.sender.twilio
    assert await recording.delete_expired(store, twilio, tenant, now_ms=events.now_ms() + 29 * DAY_MS) == 0
    desk.api.answer(500, 20500, "Internal Server Error")  # Twilio fails once: kept for the next pass
    later = events.now_ms() + 31 * DAY_MS
    assert await recording.delete_expired(store, twilio, tenant, now_ms=later) == 0
    assert await recording.get(store, "acme", sid)
    assert await recording.delete_expired(store, twilio, tenant, now_ms=later) == 1
    deletes = [r for r in desk.api.requests if r.method == "DELETE"]
    assert [d.path for d in deletes] == [f"/2010-04-01/Accounts/{ACME_SID}/Recordings/{sid}.json"] * 2
    assert await recording.get(store, "acme", sid) == {"state": "deleted", "deleted_at": ANY}
    assert await recording.of_conversation(store, "acme", conversation) == []
    assert await store.redis.zcard(desk.world.keys.recordings) == 0
    zoe, _ = await desk.agent("zoe")
    async with zoe:
        assert (await zoe.get(f"/inbox/t/acme/c/{conversation}/recordings/{sid}")).status == 404
    # Twilio's late report of it brings nothing back
    assert await report(desk, conversation, sid, "completed", RecordingUrl=recorded_url(sid)) == 200
    assert "url" not in await recording.get(store, "acme", sid)


async def test_a_recording_twilio_no_longer_has_is_deleted_here_too(desk):
    _conversation, sid = await completed(desk)
    desk.api.answer(404, 20404, "The requested resource was not found")
    later = events.now_ms() + 31 * DAY_MS
    assert await recording.delete_expired(desk.world.store, desk.sender.twilio, desk.world.tenant, now_ms=later) == 1
    assert (await recording.get(desk.world.store, "acme", sid))["state"] == "deleted"


async def test_with_all_a_callback_is_recorded_from_the_customers_answer_and_can_be_paused():
    text = callbacks_test.TENANTS.replace("[tenants.voice]\n", '[tenants.voice]\nrecording = "all"\n', 1)
    w = await world(text, {"ACME_TWILIO_TOKEN": callbacks_test.TOKEN})
    async with TwilioApi() as api:
        settings = Settings(twilio_api_base=api.url, public_url=callbacks_test.PUBLIC)
        sender = VoiceSender(w.store, w.deployment, settings, timeout_s=0.5)
        async with TestClient(TestServer(web.application(w.store, w.deployment, settings))) as client:
            voice = callbacks_test.Voice(w, api, client, sender)
            conversation = await voice.callback_accepted()
            assert await voice.dispatch() == 1
            [call] = voice.calls
            dial = callbacks_test.twiml(call).find("./Dial")
            assert (dial.get("record"), dial.get("recordingStatusCallbackEvent")) == (
                "record-from-answer-dual",
                "in-progress completed absent",
            )
            callback = dial.get("recordingStatusCallback")
            assert callback == f"{callbacks_test.PUBLIC}/twilio/acme/voice/call-recording?conversation={conversation}"
            # Twilio reports the Dial's recording on the agent's leg (the call it placed)
            [placed] = api.call_sids
            sid = "RE" + "9" * 32
            form = {"AccountSid": callbacks_test.ACCOUNT, "CallSid": placed, "RecordingSid": sid,
                    "RecordingStatus": "in-progress"}  # fmt: skip
            signature = RequestValidator(callbacks_test.TOKEN).compute_signature(callback, form)
            reported = await client.post(
                callback.removeprefix(callbacks_test.PUBLIC), data=form, headers={"X-Twilio-Signature": signature}
            )
            assert reported.status == 200
            found = await recording.pause(w.store, sender.twilio, w.tenant, conversation, paused=True, by="amy")
            assert (found["sid"], found["call"], found["state"]) == (sid, placed, "paused")
        await sender.close()
    [pause] = [r for r in api.requests if "/Recordings/" in r.path]
    assert pause.path == f"/2010-04-01/Accounts/{callbacks_test.ACCOUNT}/Calls/{placed}/Recordings/{sid}.json"


async def test_inbound_only_leaves_a_callback_unrecorded():
    w = await world(callbacks_test.TENANTS.replace("[tenants.voice]\n", '[tenants.voice]\nrecording = "inbound"\n', 1),
                    {"ACME_TWILIO_TOKEN": callbacks_test.TOKEN})  # fmt: skip
    async with TwilioApi() as api:
        settings = Settings(twilio_api_base=api.url, public_url=callbacks_test.PUBLIC)
        sender = VoiceSender(w.store, w.deployment, settings, timeout_s=0.5)
        async with TestClient(TestServer(web.application(w.store, w.deployment, settings))) as client:
            voice = callbacks_test.Voice(w, api, client, sender)
            await voice.callback_accepted()
            assert await voice.dispatch() == 1
            assert callbacks_test.twiml(voice.calls[0]).find("./Dial").get("record") is None
        await sender.close()
