"""Transferring a caller's call from the conversation page: warm (the caller held, the
colleague called into the conference, then the agent hands over and leaves) and cold, to
a colleague or an outside number the tenant allows, the conversation going along. Each
step is a change of conference participants (or of the call) on the fake Twilio REST
server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from channels.voice import transfer
from router import conversations, events
from tests.channels.test_voice_callbacks import Voice
from tests.channels.test_voice_softphone import ENV, WITH_KEY, Desk, desk_of
from tests.channels.voice_phone import ACME_NUMBER, ACME_SID, AMY_PHONE

ROOM = "CF" + "3" * 32  # the conference Desk.call_with reports
OUTSIDE = "+15550199999"
TENANTS = WITH_KEY.replace(
    "expected_handle_seconds = 240", f'expected_handle_seconds = 240\ntransfer_numbers = ["{OUTSIDE}"]', 1
)
PARTICIPANTS = f"/2010-04-01/Accounts/{ACME_SID}/Conferences/{ROOM}/Participants"


@pytest.fixture
async def desk() -> AsyncIterator[Desk]:
    async for value in desk_of(TENANTS, ENV):
        yield value


async def on_call(desk: Desk) -> tuple[str, str, object, str]:
    """zoe holds a caller's call; amy is available. The conversation, zoe's leg, zoe's
    browser and its CSRF token."""
    conversation = await desk.call_with("zoe")
    await desk.world.available("amy")
    client, token = await desk.agent("zoe")
    return conversation, (await desk.phone.call_record())["agent_leg"], client, token


async def act(client, token: str, conversation: str, action: str, target: str = "") -> int:
    form = {"action": action, "target": target, "csrf": token}
    response = await client.post(f"/inbox/t/acme/c/{conversation}/call/transfer", data=form, allow_redirects=False)
    return response.status


def requests(desk: Desk) -> list:
    return desk.api.requests[desk.since :]


async def test_a_warm_transfer_holds_the_caller_consults_then_hands_over_and_the_agent_leaves(desk):
    conversation, zoe_leg, zoe, token = await on_call(desk)
    caller = desk.phone.sid
    async with zoe:
        assert await act(zoe, token, conversation, "consult", "agent:amy") == 303
        hold, add = requests(desk)
        assert (hold.path, hold["Hold"]) == (f"{PARTICIPANTS}/{caller}.json", "true")
        assert (add.path, add["To"], add["From"], add["Label"]) == (
            f"{PARTICIPANTS}.json",
            AMY_PHONE,
            ACME_NUMBER,
            "colleague",
        )
        assert add["EndConferenceOnExit"] == "true"  # once handed over, amy's hang-up ends the call
        [colleague] = desk.api.participant_sids
        page = await (await zoe.get(f"/inbox/t/acme/c/{conversation}")).text()
        assert "Consulting <strong>amy</strong>" in page
        before = len(requests(desk))
        assert await act(zoe, token, conversation, "handover") == 303
    unhold, stays, leaves = requests(desk)[before:]
    assert (unhold.path, unhold["Hold"]) == (f"{PARTICIPANTS}/{caller}.json", "false")
    assert (stays.path, stays["EndConferenceOnExit"]) == (f"{PARTICIPANTS}/{zoe_leg}.json", "false")
    assert (leaves.method, leaves.path) == ("DELETE", f"{PARTICIPANTS}/{zoe_leg}.json")
    # the conversation went along: to amy, who is on the call already, accepted for her
    [moved] = await desk.world.events(events.Transferred)
    assert (moved.agent, moved.to_agent) == ("zoe", "amy")
    [accepted] = [e for e in await desk.world.events(events.Accepted) if e.agent == "amy"]
    call = await desk.phone.call_record()
    assert (call["agent"], call["agent_leg"], call["state"]) == ("amy", colleague, "connected")
    voice = Voice(desk.world, desk.api, desk.phone.client, desk.sender)
    assert await voice.dispatch() == 0  # her accept placed no second leg
    record = await desk.world.conversation(conversation)
    assert (record["state"], record["agent"], record["reservation"]) == ("assigned", "amy", accepted.reservation)
    assert await transfer.consultation(desk.world.store, "acme", conversation) == {}


async def test_going_back_to_the_customer_ends_the_consultation(desk):
    conversation, _leg, zoe, token = await on_call(desk)
    async with zoe:
        assert await act(zoe, token, conversation, "consult", f"number:{OUTSIDE}") == 303
        [colleague] = desk.api.participant_sids
        assert await act(zoe, token, conversation, "cancel") == 303
        assert await act(zoe, token, conversation, "handover") == 409  # nothing to hand over now
    _hold, add, remove, unhold = requests(desk)
    assert add["To"] == OUTSIDE
    assert (remove.method, remove.path) == ("DELETE", f"{PARTICIPANTS}/{colleague}.json")
    assert unhold["Hold"] == "false"
    record = await desk.world.conversation(conversation)
    assert (record["state"], record["agent"]) == ("assigned", "zoe")


async def test_a_warm_transfer_to_an_outside_number_closes_the_conversation_as_transferred(desk):
    conversation, zoe_leg, zoe, token = await on_call(desk)
    async with zoe:
        assert await act(zoe, token, conversation, "consult", f"number:{OUTSIDE}") == 303
        assert await act(zoe, token, conversation, "handover") == 303
    assert requests(desk)[-1].path == f"{PARTICIPANTS}/{zoe_leg}.json"
    record = await desk.world.conversation(conversation)
    assert (record["state"], record["disposition"]) == ("closed", transfer.TRANSFERRED)
    notes = [e.body for e in await conversations.history(desk.world.store, "acme", conversation) if e.kind == "note"]
    assert notes == [f"Call transferred to {OUTSIDE}"]


async def test_a_cold_transfer_to_an_allowed_number_sends_the_caller_on(desk):
    conversation, _leg, zoe, token = await on_call(desk)
    async with zoe:
        assert await act(zoe, token, conversation, "cold", "number:+15550100666") == 409  # not allowed
        assert requests(desk) == []
        assert await act(zoe, token, conversation, "cold", f"number:{OUTSIDE}") == 303
    [redirect] = requests(desk)
    assert redirect.path == f"/2010-04-01/Accounts/{ACME_SID}/Calls/{desk.phone.sid}.json"
    assert f'<Dial callerId="{ACME_NUMBER}">{OUTSIDE}</Dial>' in redirect["Twiml"]
    record = await desk.world.conversation(conversation)
    assert (record["state"], record["disposition"]) == ("closed", transfer.TRANSFERRED)


async def test_only_the_agent_holding_the_call_transfers_it(desk):
    conversation, _leg, zoe, _token = await on_call(desk)
    amy, amy_token = await desk.agent("amy")
    async with zoe, amy:
        assert await act(amy, amy_token, conversation, "consult", "agent:bill") == 409
    assert requests(desk) == []
