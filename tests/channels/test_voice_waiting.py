"""The wait loop: position and expected wait, the agent put through, and the
callback that keeps the caller's place."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from channels.voice import estimate, inbound, waiting
from router import conversations
from tests.channels.voice_phone import CALLER, Phone, serve

WAIT = f"{waiting.WAIT_PATH}?n=0"


@pytest.fixture
async def phone() -> AsyncIterator[Phone]:
    async for value in serve():
        yield value


async def queued(phone: Phone, digit: str = "1", caller: str = CALLER) -> Phone:
    """A caller picks a menu option; their call is on the inbound stream."""
    await phone.answer(inbound.PATH, caller=caller)
    await phone.answer(f"{inbound.MENU_PATH}?attempt=1", Digits=digit, caller=caller)
    return phone


async def test_before_routing_opened_the_conversation_the_caller_is_asked_to_hold(phone):
    await queued(phone)
    answer = await phone.answer(WAIT)
    assert answer.verbs == ["Say", "Pause", "Redirect"]
    assert answer.said() == "Please hold."
    assert answer.path("Redirect", "text") == f"{waiting.WAIT_PATH}?n=1"


async def test_with_nobody_to_take_the_call_the_caller_hears_the_options_first_and_no_estimate(phone):
    callers = [await queued(phone.another(), caller=f"+1555123000{i}") for i in range(3)]
    await phone.route()
    for position, caller in enumerate(callers, start=1):
        answer = await caller.answer(WAIT, caller=f"+1555123000{position - 1}")
        assert answer.verbs == ["Gather", "Redirect"]
        gather = answer.one("Gather")
        assert gather.get("numDigits") == "1"
        assert answer.path("Gather") == waiting.CHOICE_PATH
        [options, announcement] = [say.text for say in gather.iter("Say")]
        assert options == "To be called back without losing your place, press 1. To leave a voicemail, press 2."
        assert announcement == (
            f"You are number {position} in the queue. "
            "We cannot estimate the wait right now, as no agent is available to take your call."
        )
        assert gather.find("Pause").get("length") == str(waiting.HOLD_S)
        assert answer.path("Redirect", "text") == f"{waiting.WAIT_PATH}?n=1"
    assert (await callers[0].call_record())["conversation"]


async def test_messages_waiting_in_the_same_queue_are_not_ahead_of_a_caller(phone):
    # the case: 4 SMS and 1 email wait in support, nobody is on
    for i in range(4):
        await phone.world.arrive(channel="sms", address=f"+1201555010{i}", body="hello", queue="support")
    await phone.world.arrive(channel="email", address="ann@example.com", body="hello", queue="support")
    await queued(phone)
    await phone.route()
    assert len(await phone.world.waiting("support")) == 6
    said = (await phone.answer(WAIT)).said()
    assert "You are number 1 in the queue." in said
    assert "We cannot estimate the wait right now" in said
    assert "minutes" not in said


async def test_the_expected_wait_uses_the_queues_measured_handle_time(phone):
    await phone.world.available("amy")
    await queued(phone.another(), caller="+15557770000")  # amy takes one call: 1 agent able
    await phone.route()
    await phone.world.accept_offer("amy")
    for talk_s in (60, 120, 180):  # three answered calls of support: 2 minutes on average
        await estimate.record_handled(phone.world.store, "acme", "support", talk_s * 1000)
    first, second = await queued(phone.another()), await queued(phone.another(), caller="+15551230009")
    await phone.route()
    assert "You are number 1 in the queue. The expected wait is about 2 minutes." in (await first.answer(WAIT)).said()
    said = (await second.answer(WAIT, caller="+15551230009")).said()
    assert "You are number 2 in the queue. The expected wait is about 4 minutes." in said


async def test_the_expected_wait_is_shared_among_the_queues_available_agents(phone):
    await phone.world.available("amy", "zoe")
    for i in range(2):  # both agents take a call: available, but with no room for another
        await queued(phone.another(), caller=f"+1555777000{i}")
        await phone.route()
        [agent] = [a for a in ("amy", "zoe") if await phone.world.offered(a)]
        await phone.world.accept_offer(agent)
    first, second = await queued(phone.another()), await queued(phone.another(), caller="+15551230009")
    await phone.route()
    assert (
        (await first.answer(WAIT))
        .said()
        .startswith("You are number 1 in the queue. The expected wait is about 2 minutes.")
    )
    assert (
        (await second.answer(WAIT, caller="+15551230009"))
        .said()
        .startswith("You are number 2 in the queue. The expected wait is about 4 minutes.")
    )


async def test_a_call_held_outside_a_conference_hears_hold_music_only(phone):
    # held before calls were bridged in conferences: the loop keeps them on hold, no options
    await queued(phone)
    await phone.route()
    await inbound.update_call(phone.world.store, "acme", phone.sid, state=waiting.HELD)
    answer = await phone.answer(f"{waiting.WAIT_PATH}?n=3")
    assert answer.verbs == ["Pause", "Redirect"]
    assert answer.path("Redirect", "text") == f"{waiting.WAIT_PATH}?n=4"


async def test_between_announcements_the_caller_hears_hold_music_and_may_still_press_a_key(phone):
    await queued(phone)
    await phone.route()
    answer = await phone.answer(f"{waiting.WAIT_PATH}?n=1")
    assert answer.verbs == ["Gather", "Redirect"]
    assert answer.said() == ""
    assert answer.path("Redirect", "text") == f"{waiting.WAIT_PATH}?n=2"


# --- callbacks ---------------------------------------------------------------------


async def test_a_callback_to_the_callers_own_number_replaces_the_call_and_keeps_its_place(phone):
    await queued(phone)
    later = await queued(phone.another(), caller="+15559870000")  # a caller after ours
    await phone.route()
    call_conversation = await inbound.conversation_of(phone.world.store, "acme", phone.sid, await phone.call_record())

    offer = await phone.answer(waiting.CHOICE_PATH, Digits="1")
    assert offer.verbs == ["Gather", "Redirect"]
    assert offer.path("Gather") == waiting.CALLBACK_PATH
    assert "We will call you back at 1 2 0 1 5 5 5 1 2 3 0. To confirm, press 1." in offer.said()

    confirmed = await phone.answer(waiting.CALLBACK_PATH, Digits="1")
    assert confirmed.verbs == ["Say", "Hangup"]
    assert "We will call you back at 1 2 0 1 5 5 5 1 2 3 0" in confirmed.said()

    record = await phone.world.conversation(call_conversation)
    assert (record["state"], record["disposition"]) == ("closed", "callback_requested")
    callback = (await phone.inbound())[-1]
    assert (callback.kind, callback.address, callback.provider_id) == ("callback", CALLER, f"callback:{phone.sid}")
    assert callback.original_at == int((await phone.call_record())["queued_at"])  # its place, from queue entry
    assert (callback.queue, callback.metadata["call_sid"]) == ("support", phone.sid)

    await phone.route()
    later_conversation = await inbound.conversation_of(phone.world.store, "acme", later.sid, await later.call_record())
    waiting_now = await phone.world.waiting("support")
    assert len(waiting_now) == 2 and waiting_now[1] == later_conversation
    callback_conversation = await phone.world.conversation(waiting_now[0])
    assert (callback_conversation["kind"], callback_conversation["address"]) == ("callback", CALLER)
    assert not [e for e in await phone.world.events() if type(e).__name__ == "Abandoned"]


async def test_a_callback_to_another_number(phone):
    await queued(phone)
    await phone.route()
    await phone.answer(waiting.CHOICE_PATH, Digits="1")
    other = await phone.answer(waiting.CALLBACK_PATH, Digits="2")
    gather = other.one("Gather")
    assert (gather.get("finishOnKey"), gather.get("numDigits")) == ("#", "16")
    assert other.path("Gather") == waiting.CALLBACK_NUMBER_PATH
    wrong = await phone.answer(waiting.CALLBACK_NUMBER_PATH, Digits="12#")
    assert wrong.said().startswith("Sorry, that is not a number we can call.")
    assert wrong.path("Gather") == waiting.CALLBACK_NUMBER_PATH
    done = await phone.answer(waiting.CALLBACK_NUMBER_PATH, Digits="12025550143")
    assert done.verbs == ["Say", "Hangup"]
    callback = (await phone.inbound())[-1]
    # still the caller's callback (their customer), dialling the number they gave
    assert (callback.address, callback.metadata["dial"]) == (CALLER, "+12025550143")
    assert (await phone.call_record())["callback_to"] == "+12025550143"
    await phone.route()
    call_conversation = await phone.world.conversation((await phone.call_record())["conversation"])
    [waiting_now] = await phone.world.waiting("support")
    callback_conversation = await phone.world.conversation(waiting_now)
    assert callback_conversation["kind"] == "callback"
    assert callback_conversation["customer"] == call_conversation["customer"]


async def test_a_callback_to_their_own_number_dials_it(phone):
    await queued(phone)
    await phone.route()
    await phone.answer(waiting.CALLBACK_PATH, Digits="1")
    callback = (await phone.inbound())[-1]
    assert (callback.address, callback.metadata["dial"]) == (CALLER, CALLER)


# --- toll fraud: what a callback may dial ---------------------------------------------


@pytest.mark.parametrize(
    "digits",
    [
        "882345678901",  # international networks (+882): no region of ours
        "447400123456",  # a UK mobile: another region
        "19005551234",  # US premium rate
        "15005550006",  # US personal number
        "15557654321",  # not an assigned number (phonenumbers: UNKNOWN)
    ],
)
async def test_a_callback_number_outside_the_regions_or_of_a_costly_type_is_asked_again(phone, digits):
    await queued(phone)
    await phone.route()
    answer = await phone.answer(waiting.CALLBACK_NUMBER_PATH, Digits=f"{digits}#")
    assert answer.said().startswith("Sorry, that is not a number we can call.")
    assert answer.path("Gather") == waiting.CALLBACK_NUMBER_PATH
    assert [c.kind for c in await phone.inbound()] == ["call"]
    assert (await phone.call_record())["state"] == "queued"


async def test_a_caller_whose_own_number_may_not_be_dialled_is_asked_for_another(phone):
    premium = "+19005551234"
    await queued(phone, caller=premium)
    await phone.route()
    offer = await phone.answer(waiting.CHOICE_PATH, Digits="1", caller=premium)
    assert "We will call you back at" not in offer.said()
    assert offer.path("Gather") == waiting.CALLBACK_NUMBER_PATH
    await phone.answer(waiting.CALLBACK_PATH, Digits="1", caller=premium)  # never offered: no callback
    assert [c.kind for c in await phone.inbound()] == ["call"]


async def test_the_tenants_callback_regions_widen_what_may_be_dialled():
    async for phone in serve():
        acme = phone.world.deployment.tenant("acme")
        assert waiting.callable_number(acme, "+12025550143")
        assert not waiting.callable_number(acme, "+447400123456")
        acme.voice.callback.regions = ["GB"]  # only the UK now
        assert waiting.callable_number(acme, "+447400123456")
        assert not waiting.callable_number(acme, "+12025550143")
        assert not waiting.callable_number(acme, "+448712345678")  # UK premium rate
        assert not waiting.callable_number(acme, f"anonymous:{phone.sid}")


async def test_a_retried_callback_confirmation_adds_one_callback(phone):
    await queued(phone)
    await phone.route()
    for _ in range(3):
        assert (await phone.answer(waiting.CALLBACK_PATH, Digits="1")).verbs == ["Say", "Hangup"]
    assert [c.kind for c in await phone.inbound()] == ["call", "callback"]


async def test_a_callback_is_not_taken_once_an_agent_has_the_call(phone):
    await queued(phone)
    await phone.route()
    await phone.world.available("amy")
    conversation = await phone.world.accept_offer("amy")
    answer = await phone.answer(waiting.CALLBACK_PATH, Digits="1")
    assert answer.verbs == ["Redirect"]  # back to the loop, which puts them through
    assert (await conversations.get(phone.world.store, "acme", conversation))["state"] == "assigned"
    assert [c.kind for c in await phone.inbound()] == ["call"]


async def test_an_unknown_key_goes_back_to_waiting(phone):
    await queued(phone)
    await phone.route()
    answer = await phone.answer(waiting.CHOICE_PATH, Digits="7")
    assert answer.verbs == ["Redirect"]
    assert (await phone.call_record())["state"] == "queued"


@pytest.mark.parametrize("regions, ok", [('["US", "CA"]', True), ('["us"]', False), ('["USA"]', False)])
def test_callback_regions_are_iso_region_codes(regions, ok):
    from router.config import parse_deployment
    from router.errors import ConfigError

    text = f"""
[[tenants]]
id = "acme"
[tenants.voice]
numbers = ["+15550100001"]
callback = {{ regions = {regions} }}
[[tenants.queues]]
id = "support"
"""
    if ok:
        assert parse_deployment(text).tenant("acme").voice.callback.regions == ["US", "CA"]
    else:
        with pytest.raises(ConfigError, match="regions"):
            parse_deployment(text)
