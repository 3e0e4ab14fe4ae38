"""Bridging a caller to the agent who took the call: the agent's leg is called with
answering-machine detection and screened (a whisper, then 1 to take it); the key bridges
both legs into the conversation's conference at once, through Twilio's REST API, without
waiting for a round of the wait loop; a machine, no key or no answer is a missed offer
and the call goes on to the next agent. Signed webhooks as Twilio sends them, the real
twilio client against the fake Twilio REST server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import pytest

from channels.voice import bridge, inbound, status, waiting
from router import events
from router.keys import Keys
from tests.channels.test_voice_callbacks import Voice
from tests.channels.test_voice_softphone import ENV, WITH_KEY, Desk, desk_of
from tests.channels.voice_phone import ACME_NUMBER, ACME_SID, AMY_PHONE, Answer, twiml

WAIT = f"{waiting.WAIT_PATH}?n=0"


@pytest.fixture
async def desk() -> AsyncIterator[Desk]:
    async for value in desk_of(WITH_KEY, ENV):
        yield value


@pytest.fixture
def voice(desk: Desk) -> Voice:
    return Voice(desk.world, desk.api, desk.phone.client, desk.sender)


def local(url: str) -> str:
    """The path and query of a URL we gave Twilio."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def taken_by(desk: Desk, voice: Voice, agent: str = "amy") -> tuple[str, str]:
    """A caller waits in support; the agent accepts; the dispatcher calls the agent's leg.
    Returns the conversation and the agent leg's CallSid."""
    await desk.phone.answer(inbound.PATH)
    await desk.phone.answer(f"{inbound.MENU_PATH}?attempt=1", Digits="1")
    await desk.phone.route()
    await desk.world.available(agent)
    conversation = await desk.world.accept_offer(agent)
    assert await voice.dispatch() == 1
    return conversation, desk.api.call_sids[-1]


async def agent_leg(desk: Desk, url: str, leg: str, **fields: str) -> Answer:
    """Twilio asks the URL we gave for the agent's leg (signed as Twilio signs it)."""
    params = {"CallSid": leg, "AccountSid": ACME_SID, "From": ACME_NUMBER, "To": AMY_PHONE,
              "Direction": "outbound-api", "CallStatus": "in-progress", **fields}  # fmt: skip
    return await twiml(await desk.phone.post(local(url), params))


async def test_accepting_calls_the_agents_phone_with_machine_detection_and_the_caller_keeps_waiting(desk, voice):
    conversation, _leg = await taken_by(desk, voice)
    [call] = voice.calls
    assert (call["To"], call["From"], call["MachineDetection"], call["Timeout"]) == (
        AMY_PHONE,
        ACME_NUMBER,
        "Enable",
        "30",
    )
    query = parse_qs(urlsplit(call["Url"]).query)
    assert urlsplit(call["Url"]).path == bridge.SCREEN_PATH.format(tenant="acme")
    assert (query["conversation"], query["call"], query["agent"]) == ([conversation], [desk.phone.sid], ["amy"])
    assert urlsplit(call["StatusCallback"]).path == bridge.AGENT_STATUS_PATH.format(tenant="acme")
    # until amy takes it, the caller hears hold music and their figures, keys still working
    answer = await desk.phone.answer(WAIT)
    assert answer.verbs == ["Gather", "Redirect"]
    assert "An agent will be with you shortly." in answer.said()
    assert (await desk.phone.call_record())["state"] == "queued"


async def test_the_agent_hears_the_queue_and_the_customer_and_1_bridges_at_once(desk, voice):
    conversation, leg = await taken_by(desk, voice)
    await desk.world.store.redis.hset(
        Keys("acme").customer((await desk.world.conversation(conversation))["customer"]), "name", "Jane Doe"
    )
    screen = await agent_leg(desk, voice.calls[0]["Url"], leg, AnsweredBy="human")
    gather = screen.one("Gather")
    assert (gather.get("numDigits"), gather.get("input"), gather.get("actionOnEmptyResult")) == ("1", "dtmf", "true")
    assert screen.said() == "A call from the support queue: Jane Doe. To take it, press 1."
    assert urlsplit(gather.get("action")).path == bridge.SCREEN_ANSWER_PATH.format(tenant="acme")
    before = len(desk.updates)

    taken = await agent_leg(desk, gather.get("action"), leg, Digits="1")
    assert taken.verbs == ["Dial", "Hangup"]
    room = taken.one("Conference")
    assert room.text == bridge.conference_name(conversation)
    assert (room.get("startConferenceOnEnter"), room.get("endConferenceOnExit")) == ("true", "true")
    assert room.get("participantLabel") == "agent"
    # the caller's leg was moved by REST while the key was answered: no round of the loop waited for
    [move] = desk.updates[before:]
    assert move.path == f"/2010-04-01/Accounts/{ACME_SID}/Calls/{desk.phone.sid}.json"
    assert (local(move["Url"]), move["Method"]) == (WAIT, "POST")
    call = await desk.phone.call_record()
    assert (call["state"], call["agent"], call["agent_leg"]) == ("connected", "amy", leg)

    joined = await desk.phone.answer(WAIT)  # what Twilio fetches for the moved leg
    assert joined.verbs == ["Dial", "Hangup"]
    room = joined.one("Conference")
    assert room.text == bridge.conference_name(conversation)
    assert (room.get("startConferenceOnEnter"), room.get("endConferenceOnExit")) == ("false", "true")
    assert urlsplit(room.get("waitUrl")).path == bridge.HOLD_PATH.format(tenant="acme")
    assert urlsplit(joined.one("Dial").get("action")).path == waiting.DIALED_PATH

    # a repeated key moves nothing twice
    assert (await agent_leg(desk, gather.get("action"), leg, Digits="1")).verbs == ["Dial", "Hangup"]
    assert len(desk.updates) == before + 1


async def test_the_conference_records_its_sid_and_participants(desk, voice):
    conversation, leg = await taken_by(desk, voice)
    await bridge.take(desk.world.store, desk.world.tenant, conversation, desk.phone.sid, "amy", leg)
    url = bridge.CONFERENCE_PATH.format(tenant="acme") + f"?conversation={conversation}&role=customer"
    room_sid = "CF" + "1" * 32
    for event in ("participant-join", "participant-hold"):
        form = {"AccountSid": ACME_SID, "ConferenceSid": room_sid, "FriendlyName": bridge.conference_name(conversation),
                "StatusCallbackEvent": event, "CallSid": desk.phone.sid}  # fmt: skip
        assert (await desk.phone.post(url, form)).status == 200
    room = await bridge.conference(desk.world.store, "acme", conversation)
    assert (room["sid"], room[f"p:{desk.phone.sid}"], room[f"p:{leg}"]) == (
        room_sid,
        "customer:held",
        "agent:amy:joining",
    )
    forged = await desk.phone.post(url, form, signature="bad")
    assert forged.status == 403


async def test_a_machine_answering_the_agents_phone_is_a_missed_offer_and_the_offer_goes_on(desk, voice):
    conversation, leg = await taken_by(desk, voice)
    await desk.world.available("zoe")
    screen = await agent_leg(desk, voice.calls[0]["Url"], leg, AnsweredBy="machine_end_beep")
    assert screen.verbs == ["Hangup"]
    assert (await desk.world.agent("amy"))["presence"] == "away"
    assert await desk.world.offered("zoe") == [conversation]  # the next agent is offered the call
    assert (await desk.phone.call_record())["state"] == "queued"  # the caller never left the queue
    assert (await desk.phone.answer(WAIT)).verbs == ["Gather", "Redirect"]
    # the leg's status report after it changes nothing more
    form = {"CallStatus": "completed", "AnsweredBy": "machine_end_beep"}
    response = await desk.phone.post(
        local(voice.calls[0]["StatusCallback"]),
        {"CallSid": leg, "AccountSid": ACME_SID, "From": ACME_NUMBER, "To": AMY_PHONE, **form},
    )
    assert response.status == 200
    assert await desk.world.offered("zoe") == [conversation]
    assert len(await desk.world.events(events.Transferred)) == 1


@pytest.mark.parametrize("digits", ["", "2"])
async def test_no_key_or_another_key_at_the_whisper_is_a_missed_offer(desk, voice, digits):
    conversation, leg = await taken_by(desk, voice)
    screen = await agent_leg(desk, voice.calls[0]["Url"], leg, AnsweredBy="human")
    answer = await agent_leg(desk, screen.one("Gather").get("action"), leg, Digits=digits)
    assert answer.verbs == ["Say", "Hangup"]
    record = await desk.world.conversation(conversation)
    assert (record["state"], record["queue"]) == ("queued", "support")
    assert (await desk.world.agent("amy"))["presence"] == "away"
    assert (await desk.phone.call_record())["state"] == "queued"
    assert len([u for u in desk.updates if u.path.endswith(f"/Calls/{desk.phone.sid}.json")]) == 0


@pytest.mark.parametrize("leg_status", ["no-answer", "busy", "failed"])
async def test_an_agent_leg_not_answered_is_a_missed_offer(desk, voice, leg_status):
    conversation, leg = await taken_by(desk, voice)
    form = {"CallSid": leg, "AccountSid": ACME_SID, "From": ACME_NUMBER, "To": AMY_PHONE, "CallStatus": leg_status}
    assert (await desk.phone.post(local(voice.calls[0]["StatusCallback"]), form)).status == 200
    assert (await desk.world.conversation(conversation))["state"] == "queued"
    assert (await desk.world.agent("amy"))["presence"] == "away"


async def test_after_the_bridge_the_agent_legs_end_is_not_a_missed_offer(desk, voice):
    conversation, leg = await taken_by(desk, voice)
    screen = await agent_leg(desk, voice.calls[0]["Url"], leg, AnsweredBy="human")
    await agent_leg(desk, screen.one("Gather").get("action"), leg, Digits="1")
    form = {"CallSid": leg, "AccountSid": ACME_SID, "From": ACME_NUMBER, "To": AMY_PHONE, "CallStatus": "completed"}
    assert (await desk.phone.post(local(voice.calls[0]["StatusCallback"]), form)).status == 200
    assert (await desk.world.conversation(conversation))["state"] == "assigned"
    assert (await desk.world.agent("amy"))["presence"] == "available"


async def test_the_caller_hanging_up_during_the_whisper_ends_the_offer(desk, voice):
    conversation, leg = await taken_by(desk, voice)
    screen = await agent_leg(desk, voice.calls[0]["Url"], leg, AnsweredBy="human")
    assert (await desk.phone.post(status.PATH, desk.phone.params(CallStatus="completed"))).status == 200
    answer = await agent_leg(desk, screen.one("Gather").get("action"), leg, Digits="1")
    assert answer.said() == "The caller is no longer waiting. Goodbye."
    record = await desk.world.conversation(conversation)
    assert (record["state"], record["disposition"]) == ("closed", "abandoned")
    assert (await desk.world.agent("amy"))["presence"] == "available"


async def test_a_forged_screen_request_is_refused(desk, voice):
    _conversation, leg = await taken_by(desk, voice)
    url = local(voice.calls[0]["Url"])
    params = {"CallSid": leg, "AccountSid": ACME_SID, "From": ACME_NUMBER, "To": AMY_PHONE, "AnsweredBy": "human"}
    assert (await desk.phone.post(url, params, signature="forged")).status == 403
    # our URL names the offer, and Twilio signs it: another agent in it breaks the signature
    signed = desk.phone.signature(url, params)
    assert (await desk.phone.post(url.replace("agent=amy", "agent=zoe"), params, signature=signed)).status == 403
    assert (await desk.world.conversation(_conversation))["state"] == "assigned"


async def test_a_softphone_agent_is_called_as_their_client_and_the_page_is_told_the_whisper(desk, voice):
    conversation, leg = await taken_by(desk, voice, "zoe")
    [call] = voice.calls
    assert call["To"] == "client:zoe" and "MachineDetection" not in call.form
    client, token = await desk.agent("zoe")
    async with client:
        response = await client.post("/inbox/t/acme/softphone/placed", json={"call": leg},
                                     headers={"X-CSRF-Token": token})  # fmt: skip
        body = await response.json()
    assert (body["conversation"], body["kind"], body["customer"]) == (conversation, "call", "+12015551230")
    assert body["whisper"].endswith("To take it, press 1.")


async def test_hold_holds_the_callers_participant_and_the_agent_stays(desk, voice):
    conversation, leg = await taken_by(desk, voice, "zoe")
    await bridge.take(desk.world.store, desk.world.tenant, conversation, desk.phone.sid, "zoe", leg)
    room_sid = "CF" + "2" * 32
    await desk.world.store.redis.hset(Keys("acme").conference(conversation), "sid", room_sid)
    client, token = await desk.agent("zoe")
    async with client:
        body = {"conversation": conversation, "call": leg, "on": True}
        response = await client.post("/inbox/t/acme/softphone/hold", json=body, headers={"X-CSRF-Token": token})
        assert response.status == 200, await response.text()
        body["on"] = False
        response = await client.post("/inbox/t/acme/softphone/hold", json=body, headers={"X-CSRF-Token": token})
        assert response.status == 200
    held, resumed = [u for u in desk.api.requests if "/Participants/" in u.path]
    assert held.path == f"/2010-04-01/Accounts/{ACME_SID}/Conferences/{room_sid}/Participants/{desk.phone.sid}.json"
    assert (held["Hold"], resumed["Hold"]) == ("true", "false")
    assert urlsplit(held["HoldUrl"]).path == bridge.HOLD_PATH.format(tenant="acme")
    call = await desk.phone.call_record()
    assert (call["state"], call["held"]) == ("connected", "0")


async def test_an_agent_leg_twilio_refuses_to_place_is_a_missed_offer(desk, voice):
    await desk.phone.answer(inbound.PATH)
    await desk.phone.answer(f"{inbound.MENU_PATH}?attempt=1", Digits="1")
    await desk.phone.route()
    await desk.world.available("amy")
    conversation = await desk.world.accept_offer("amy")
    desk.api.answer(400, 21211, "The 'To' number is not a valid phone number.")
    await voice.dispatch()
    assert desk.api.call_sids == []  # nothing was placed
    record = await desk.world.conversation(conversation)
    assert (record["state"], record["queue"]) == ("queued", "support")
    assert (await desk.world.agent("amy"))["presence"] == "away"
    assert (await desk.phone.call_record())["state"] == "queued"


async def test_an_agent_leg_twilio_never_reports_on_times_out_as_a_missed_offer(desk, voice):
    conversation, _leg = await taken_by(desk, voice)
    await desk.world.available("zoe")
    reservation = (await desk.world.conversation(conversation))["reservation"]
    [member] = await desk.world.timers(bridge.OFFER_TIMER)
    assert member == f"{bridge.OFFER_TIMER}:{conversation}|{desk.phone.sid}|amy|{reservation}"
    await desk.world.fire(bridge.OFFER_TIMER)  # no status callback ever came
    assert (await desk.world.agent("amy"))["presence"] == "away"
    assert await desk.world.offered("zoe") == [conversation]
    assert (await desk.phone.call_record())["state"] == "queued"  # the caller keeps their place
    assert await desk.world.timers(bridge.OFFER_TIMER) == {}
    [missed] = await desk.world.events(events.Transferred)
    assert missed.note == "agent phone no report from Twilio on the agent's leg"
    [timed_out] = await desk.world.events(events.TimedOut)  # the reports' missed column counts it
    assert (timed_out.agent, timed_out.reservation, timed_out.queue) == ("amy", reservation, "support")


async def test_the_offer_timer_of_a_call_taken_in_time_changes_nothing(desk, voice):
    conversation, leg = await taken_by(desk, voice)
    screen = await agent_leg(desk, voice.calls[0]["Url"], leg, AnsweredBy="human")
    await agent_leg(desk, screen.one("Gather").get("action"), leg, Digits="1")
    await desk.world.fire(bridge.OFFER_TIMER)
    assert (await desk.world.conversation(conversation))["state"] == "assigned"
    assert (await desk.world.agent("amy"))["presence"] == "available"
    assert await desk.world.events(events.Transferred) == []
