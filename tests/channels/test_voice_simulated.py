"""Simulated calls: for a tenant without a Twilio account, the agent's softphone rings
where Twilio would ring their Client, the server moves each call on (ringing,
in-progress, then completed, busy, no-answer or canceled) and records it as a real
call, and what follows is what a real call's reports set off."""

from __future__ import annotations

import pytest

from channels._twilio_rest import TwilioClients
from channels.sandbox import outbox
from channels.voice import bridge, inbound, monitor, recording, simulated, transfer
from channels.voice.outbound import VoiceSender
from router import agents, events
from router.keys import Keys
from router.settings import Settings
from tests.channels.test_voice_callbacks import Voice
from tests.factories import World, world

CALLER = "+12015550123"
SANDBOX = """
[[tenants]]
id = "acme"
entry = { default = "support" }
voice = { numbers = ["+15550100001"], callback = { attempts = 2, spacing_s = 60 } }
[[tenants.queues]]
id = "support"
[[tenants.agents]]
id = "zoe"
[[tenants.agents]]
id = "amy"
phone = "+15557000001"
"""


@pytest.fixture
async def w() -> World:
    return await world(SANDBOX)


async def accepted_call(w: World, agent: str = "zoe", **fields) -> tuple[str, str]:
    """A caller's call is offered to the agent, who accepts; (conversation, the simulated call's id)."""
    await w.available(agent)
    conversation = await w.arrive(channel="voice", kind="call", address=CALLER, body="", **fields)
    await w.accept_offer(agent)
    calls = await simulated.calls_of(w.store, "acme", agent)
    return conversation, calls[0]["sid"] if calls else ""


async def call_of(w: World, sid: str) -> dict[str, str]:
    return await simulated.record(w.store, "acme", sid)


async def test_an_accepted_call_rings_the_softphone_of_an_agent_without_a_phone(w):
    conversation, sid = await accepted_call(w)
    call = await call_of(w, sid)
    assert sid.startswith("SIM") and simulated.is_simulated(sid)
    assert (call["status"], call["kind"], call["direction"]) == ("ringing", "call", "in")
    assert (call["conversation"], call["from"], call["to"], call["simulated"]) == (
        conversation,
        CALLER,
        "client:zoe",
        "1",
    )
    [listed] = await simulated.calls_of(w.store, "acme", "zoe")
    assert (listed["sid"], listed["customer"], listed["status"]) == (sid, CALLER, "ringing")


async def test_a_repeated_accept_rings_one_call(w):
    await w.available("zoe")
    await w.arrive(channel="voice", kind="call", address=CALLER, body="")
    [offer] = await w.offers("zoe")
    for _ in range(2):  # a retried click finds the offer accepted and runs the hook again
        await agents.ON_ACCEPT["call"](w.store, w.tenant, "zoe", offer["reservation"])
    assert len(await simulated.calls_of(w.store, "acme", "zoe")) == 1


async def test_an_agent_with_a_phone_and_a_message_contact_ring_nothing(w):
    await accepted_call(w, "amy")
    assert await simulated.calls_of(w.store, "acme", "amy") == []  # their phone rings (the sandbox: nothing)
    await w.available("zoe")
    await w.arrive(address="+12015550199", body="a text")
    await w.accept_offer("zoe")
    assert await simulated.calls_of(w.store, "acme", "zoe") == []


async def test_an_answered_call_hung_up_by_the_agent_is_recorded_with_its_duration(w):
    conversation, sid = await accepted_call(w)
    assert await simulated.act(w.store, w.tenant, "zoe", sid, "answer") == "in-progress"
    assert await simulated.act(w.store, w.tenant, "zoe", sid, "digits", value="12") == "in-progress"
    assert await simulated.act(w.store, w.tenant, "zoe", sid, "hold") == "in-progress"
    assert (await call_of(w, sid))["held"] == "1"
    assert await simulated.act(w.store, w.tenant, "zoe", sid, "hangup") == "completed"
    call = await call_of(w, sid)
    assert (call["hung_up_by"], call["digits"], call["held"]) == ("agent", "12", "0")
    assert int(call["started_at"]) <= int(call["answered_at"]) <= int(call["ended_at"])
    assert int(call["duration_s"]) == round((int(call["ended_at"]) - int(call["answered_at"])) / 1000)
    assert (await w.conversation(conversation))["state"] == "assigned"  # the agent closes it with a disposition


async def test_a_call_over_is_over_for_every_request_after(w):
    _conversation, sid = await accepted_call(w)
    await simulated.act(w.store, w.tenant, "zoe", sid, "answer")
    await simulated.act(w.store, w.tenant, "zoe", sid, "hangup", by="customer")
    for action in ("answer", "hangup", "hold", "digits", "decline"):
        assert await simulated.act(w.store, w.tenant, "zoe", sid, action, value="1") == "completed"
    call = await call_of(w, sid)
    assert (call["hung_up_by"], call.get("digits", "")) == ("customer", "")


async def test_only_the_agent_whose_softphone_rings_can_touch_the_call(w):
    _conversation, sid = await accepted_call(w)
    with pytest.raises(simulated.NotYourCall):
        await simulated.act(w.store, w.tenant, "amy", sid, "answer")
    with pytest.raises(simulated.NotYourCall):
        await simulated.act(w.store, w.tenant, "zoe", "CA" + "0" * 32, "answer")
    assert (await call_of(w, sid))["status"] == "ringing"


async def test_a_declined_call_goes_back_to_the_queue_and_the_agent_is_set_away(w):
    conversation, sid = await accepted_call(w)
    assert await simulated.act(w.store, w.tenant, "zoe", sid, "decline") == "busy"
    record = await w.conversation(conversation)
    assert (record["state"], record["queue"]) == ("queued", "support")
    status = await w.agent("zoe")
    assert (status["presence"], status["reason"]) == ("away", "missed call")


async def test_a_call_that_rings_out_is_no_answer_once_anyone_looks(w):
    conversation, sid = await accepted_call(w)
    await simulated.expire_due(w.store, w.tenant, "zoe")
    assert (await call_of(w, sid))["status"] == "ringing"  # not yet due
    await w.store.redis.hset(Keys("acme").call(sid), "ring_until", str(events.now_ms() - 1))
    await simulated.expire_due(w.store, w.tenant, "zoe")
    assert (await call_of(w, sid))["status"] == "no-answer"
    assert (await w.conversation(conversation))["state"] == "queued"
    # the agent's answer, late, changes nothing
    assert await simulated.act(w.store, w.tenant, "zoe", sid, "answer") == "no-answer"


async def test_a_caller_who_hangs_up_while_it_rings_abandoned_and_is_counted_once(w):
    # the caller came through the IVR: their own call's record is the one an abandon counts on
    sid_in = "CA" + "1" * 32
    await inbound.update_call(
        w.store, "acme", sid_in, state="queued", started_at=str(events.now_ms()), **{"from": CALLER}
    )
    conversation, sid = await accepted_call(w, metadata={"call_sid": sid_in})
    assert (await call_of(w, sid))["linked"] == sid_in
    assert await simulated.act(w.store, w.tenant, "zoe", sid, "hangup", by="customer") == "canceled"
    assert await simulated.act(w.store, w.tenant, "zoe", sid, "hangup", by="customer") == "canceled"
    record = await w.conversation(conversation)
    assert (record["state"], record["disposition"]) == ("closed", "abandoned")
    [abandoned] = await w.events(events.Abandoned)
    assert (abandoned.provider_id, abandoned.conversation) == (sid_in, conversation)


async def test_the_callers_own_call_is_recorded_over_when_the_simulated_call_ends(w):
    sid_in = "CA" + "2" * 32
    await inbound.update_call(w.store, "acme", sid_in, state="connected", agent="zoe")
    _conversation, sid = await accepted_call(w, metadata={"call_sid": sid_in})
    await simulated.act(w.store, w.tenant, "zoe", sid, "answer")
    await simulated.act(w.store, w.tenant, "zoe", sid, "hangup")
    caller = await inbound.get_call(w.store, "acme", sid_in)
    assert (caller["status"], caller["hung_up_by"], caller["state"]) == ("completed", "agent", "closed")
    assert caller["duration_s"] == (await call_of(w, sid))["duration_s"]


# --- callbacks in the sandbox: the agent's leg rings the simulated softphone ---


@pytest.fixture
async def voice(w):
    sender = VoiceSender(w.store, w.deployment, Settings(), timeout_s=0.5)
    yield Voice(w, None, None, sender)
    await sender.close()


async def test_a_callback_rings_the_softphone_and_answering_connects_the_customer(voice):
    w = voice.w
    conversation = await voice.callback_accepted("zoe")
    assert await voice.dispatch() == 1
    [message] = await voice.queued()
    [call] = await simulated.calls_of(w.store, "acme", "zoe")
    assert (call["kind"], call["direction"], call["customer"], call["conversation"]) == (
        "callback",
        "out",
        "+15551230000",
        conversation,
    )
    assert (await voice.delivery(message.id))["provider_id"] == call["sid"]  # recorded as a real dial is
    assert await outbox(w.store, "acme") == []  # a call, not a message kept in the outbox
    await simulated.act(w.store, w.tenant, "zoe", call["sid"], "answer")
    assert (await w.conversation(conversation))["callback_outcome"] == "connected"
    assert (await voice.delivery(message.id))["status"] == "connected"


async def test_a_callback_the_agent_does_not_take_is_dialled_again_then_given_up(voice):
    w = voice.w
    conversation = await voice.callback_accepted("zoe")
    await voice.dispatch()
    [message] = await voice.queued()
    [first] = await simulated.calls_of(w.store, "acme", "zoe")
    await simulated.act(w.store, w.tenant, "zoe", first["sid"], "decline")
    assert (await voice.delivery(message.id))["status"] == "retry"
    assert await voice.dial_again() == 1  # the dispatcher's retry rings again: a new call
    second = [c for c in await simulated.calls_of(w.store, "acme", "zoe") if c["sid"] != first["sid"]]
    assert [c["status"] for c in second] == ["ringing"]
    await w.store.redis.hset(Keys("acme").call(second[0]["sid"]), "ring_until", "0")
    await simulated.expire_due(w.store, w.tenant, "zoe")
    record = await w.conversation(conversation)
    assert (record["callback_outcome"], record["callback_attempts"]) == ("no-answer", "2")
    assert (record["state"], record["agent"]) == ("assigned", "zoe")  # the agent may still call now, or close


async def test_a_callback_for_an_agent_with_a_phone_still_goes_to_the_sandbox_outbox(voice):
    await voice.callback_accepted("amy")
    await voice.dispatch()
    [(_entry, _provider, kept)] = await outbox(voice.w.store, "acme")
    assert kept.metadata["agent_phone"] == "+15557000001"
    assert await simulated.calls_of(voice.w.store, "acme", "amy") == []


# --- a caller's call in the sandbox: screened as with Twilio ---


async def caller_waiting(w: World, sid_in: str) -> None:
    """A caller came through the IVR and waits in the queue (their own call's record)."""
    await inbound.update_call(w.store, "acme", sid_in, state="queued", started_at=str(events.now_ms()),
                              **{"from": CALLER})  # fmt: skip


async def test_a_screened_call_rings_with_the_whisper_and_1_bridges_the_callers_call(w):
    sid_in = "CA" + "3" * 32
    await caller_waiting(w, sid_in)
    conversation, sid = await accepted_call(w, metadata={"call_sid": sid_in})
    [listed] = await simulated.calls_of(w.store, "acme", "zoe")
    assert listed["whisper"] == "A call from the support queue: a caller we have no name for. To take it, press 1."
    assert listed["linked_state"] == "queued"
    await simulated.act(w.store, w.tenant, "zoe", sid, "answer")
    assert (await inbound.get_call(w.store, "acme", sid_in))["state"] == "queued"  # not taken yet: the whisper
    await simulated.act(w.store, w.tenant, "zoe", sid, "digits", value="1")
    caller = await inbound.get_call(w.store, "acme", sid_in)
    assert (caller["state"], caller["agent"], caller["conference"]) == (
        "connected",
        "zoe",
        bridge.conference_name(conversation),
    )
    [listed] = await simulated.calls_of(w.store, "acme", "zoe")
    assert listed["linked_state"] == "connected"


async def test_a_screened_call_hung_up_before_1_is_a_missed_offer(w):
    sid_in = "CA" + "4" * 32
    await caller_waiting(w, sid_in)
    conversation, sid = await accepted_call(w, metadata={"call_sid": sid_in})
    await simulated.act(w.store, w.tenant, "zoe", sid, "answer")
    await simulated.act(w.store, w.tenant, "zoe", sid, "digits", value="2")  # not the key that takes it
    await simulated.act(w.store, w.tenant, "zoe", sid, "hangup")
    record = await w.conversation(conversation)
    assert (record["state"], record["queue"]) == ("queued", "support")
    assert (await w.agent("zoe"))["presence"] == "away"
    assert (await inbound.get_call(w.store, "acme", sid_in))["state"] == "queued"  # still waiting, in their place


async def test_in_the_sandbox_an_agent_with_a_phone_gets_the_screened_offer_in_the_outbox(voice):
    w = voice.w
    sid_in = "CA" + "5" * 32
    await caller_waiting(w, sid_in)
    conversation, _sid = await accepted_call(w, "amy", metadata={"call_sid": sid_in})
    assert await voice.dispatch() == 1
    [(_entry, _provider, kept)] = await outbox(w.store, "acme")
    assert (kept.to, kept.conversation, kept.metadata["action"]) == ("+15557000001", conversation, bridge.OFFER)
    assert kept.body.endswith("To take it, press 1.")
    assert kept.metadata["call_sid"] == sid_in


RECORDED = SANDBOX.replace(
    'voice = { numbers = ["+15550100001"],',
    'voice = { numbers = ["+15550100001"], recording = "inbound", transfer_numbers = ["+15550199999"],',
)


NO_TWILIO = TwilioClients(Settings())  # the sandbox never asks it anything


async def bridged(w: World, sid_in: str) -> tuple[str, str]:
    """zoe took a caller's call at the whisper: (conversation, her simulated call)."""
    await caller_waiting(w, sid_in)
    conversation, sid = await accepted_call(w, metadata={"call_sid": sid_in})
    await simulated.act(w.store, w.tenant, "zoe", sid, "answer")
    await simulated.act(w.store, w.tenant, "zoe", sid, "digits", value="1")
    return conversation, sid


async def test_in_the_sandbox_a_recorded_call_shows_its_marker_paused_resumed_and_completed():
    w = await world(RECORDED)
    conversation, sid = await bridged(w, "CA" + "5" * 32)
    [listed] = await simulated.calls_of(w.store, "acme", "zoe")
    assert listed["recording"] == "in-progress"
    await recording.pause(w.store, NO_TWILIO, w.tenant, conversation, paused=True, by="zoe")
    [listed] = await simulated.calls_of(w.store, "acme", "zoe")
    assert listed["recording"] == "paused"
    await recording.pause(w.store, NO_TWILIO, w.tenant, conversation, paused=False, by="zoe")
    await simulated.act(w.store, w.tenant, "zoe", sid, "hangup")
    [found] = await recording.of_conversation(w.store, "acme", conversation)
    assert (found["state"], found["simulated"]) == ("completed", "1")  # a marker: no sound to play


async def test_in_the_sandbox_a_supervisor_shows_on_the_call_without_twilio():
    w = await world(RECORDED)
    conversation, _sid = await bridged(w, "CA" + "6" * 32)
    assert await monitor.live_call(w.store, "acme", conversation)
    await monitor.join(w.store, NO_TWILIO, "", w.tenant, conversation, login="sue", seat="amy", mode="whisper")
    assert await monitor.listeners(w.store, "acme", conversation) == [
        {"login": "sue", "mode": "whisper", "state": "in"}
    ]
    await monitor.leave(w.store, NO_TWILIO, w.tenant, conversation, login="sue")
    assert await monitor.listeners(w.store, "acme", conversation) == []


async def test_in_the_sandbox_a_warm_transfer_holds_the_call_then_hands_it_to_the_colleague():
    w = await world(RECORDED)
    conversation, sid = await bridged(w, "CA" + "8" * 32)
    await w.available("amy")
    settings = Settings()
    await transfer.consult(w.store, NO_TWILIO, settings, w.tenant, "zoe", conversation, sid, "agent:amy")
    assert (await call_of(w, sid))["held"] == "1"
    assert (await transfer.consultation(w.store, "acme", conversation))["target"] == "agent:amy"
    outcome = await transfer.hand_over(w.store, NO_TWILIO, settings, w.tenant, "zoe", conversation)
    assert outcome == "offered"
    assert await w.offered("amy") == [conversation]
    call = await call_of(w, sid)
    assert (call["status"], call["hung_up_by"]) == ("completed", "transfer")
    assert await transfer.consultation(w.store, "acme", conversation) == {}
