"""Call status callbacks: the call's record follows Twilio's reports, and a caller
who hangs up while waiting is counted as abandoned, once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from channels.voice import bridge, inbound, status
from router import events
from router.keys import Keys
from tests.channels.voice_phone import Phone, new_sid, serve


@pytest.fixture
async def phone() -> AsyncIterator[Phone]:
    async for value in serve():
        yield value


async def waiting_call(phone: Phone) -> str:
    await phone.answer(inbound.PATH)
    await phone.answer(f"{inbound.MENU_PATH}?attempt=1", Digits="1")
    await phone.route()
    return await inbound.conversation_of(phone.world.store, "acme", phone.sid, await phone.call_record())


async def report(phone: Phone, call_status: str, **extra: str) -> None:
    response = await phone.post(status.PATH, phone.params(CallStatus=call_status, **extra))
    assert response.status == 200, await response.text()


async def test_each_report_updates_the_calls_record(phone):
    await phone.answer(inbound.PATH)
    await report(phone, "ringing")
    assert (await phone.call_record())["status"] == "ringing"
    await report(phone, "in-progress")
    assert (await phone.call_record())["status"] == "in-progress"


async def test_a_caller_who_hangs_up_while_waiting_is_counted_as_abandoned_once(phone):
    conversation = await waiting_call(phone)
    for _ in range(3):  # Twilio repeats the callback
        await report(phone, "completed", CallDuration="42")
    await report(phone, "canceled")  # and even a second ending changes nothing
    record = await phone.world.conversation(conversation)
    assert (record["state"], record["disposition"]) == ("closed", "abandoned")
    [abandoned] = await phone.world.events(events.Abandoned)
    assert (abandoned.queue, abandoned.conversation, abandoned.provider_id) == ("support", conversation, phone.sid)
    started = int((await phone.call_record())["started_at"])
    assert 0 <= abandoned.waited_ms <= events.now_ms() - started
    assert await phone.world.waiting("support") == []
    call = await phone.call_record()
    assert (call["state"], call["status"], call["duration_s"]) == ("abandoned", "canceled", "42")


async def test_a_caller_who_hangs_up_while_offered_frees_the_agent_at_once(phone):
    conversation = await waiting_call(phone)
    await phone.world.available("amy")
    assert await phone.world.offered("amy") == [conversation]
    await report(phone, "completed")
    assert await phone.world.offered("amy") == []
    assert len(await phone.world.events(events.Abandoned)) == 1


async def test_a_caller_put_through_to_an_agent_did_not_abandon_and_their_talk_time_is_measured(phone):
    await waiting_call(phone)
    await phone.world.available("amy")
    conversation = await phone.world.accept_offer("amy")
    await bridge.take(phone.world.store, phone.world.tenant, conversation, phone.sid, "amy", new_sid())
    assert (await phone.answer("/twilio/voice/wait?n=0")).verbs == ["Dial", "Hangup"]  # the conference
    await report(phone, "completed")
    assert (await phone.world.conversation(conversation))["state"] == "assigned"
    assert await phone.world.events(events.Abandoned) == []
    [talk_ms] = await phone.world.store.redis.lrange(Keys("acme").voice_handled("support"), 0, -1)
    assert 0 <= int(talk_ms) < 60_000


async def test_a_caller_who_hangs_up_while_the_agent_is_screened_abandoned_and_the_agent_is_freed(phone):
    await waiting_call(phone)
    await phone.world.available("amy")
    conversation = await phone.world.accept_offer("amy")  # amy's leg rings, or hears the whisper
    await report(phone, "completed")
    record = await phone.world.conversation(conversation)
    assert (record["state"], record["disposition"]) == ("closed", "abandoned")
    assert len(await phone.world.events(events.Abandoned)) == 1
    assert (await phone.world.agent("amy"))["presence"] == "available"  # not the agent's fault


async def test_the_time_waited_counts_from_queue_entry_not_the_start_of_the_call(phone):
    await phone.answer(inbound.PATH)
    key = Keys("acme").call(phone.sid)
    started = int((await phone.call_record())["started_at"])
    await phone.world.store.redis.hset(key, "started_at", str(started - 8000))  # 8 s in the menu
    await phone.answer(f"{inbound.MENU_PATH}?attempt=1", Digits="1")
    await phone.route()
    await report(phone, "completed")
    [abandoned] = await phone.world.events(events.Abandoned)
    assert abandoned.waited_ms < 8000
    assert int((await phone.call_record())["ivr_ms"]) >= 8000


async def test_a_caller_who_asked_for_a_callback_did_not_abandon(phone):
    await waiting_call(phone)
    await phone.answer("/twilio/voice/callback", Digits="1")
    await report(phone, "completed")
    assert await phone.world.events(events.Abandoned) == []


async def test_a_hang_up_in_the_menu_is_no_abandon(phone):
    await phone.answer(inbound.PATH)
    await report(phone, "completed")
    assert await phone.world.events(events.Abandoned) == []


async def test_a_report_on_a_call_we_do_not_know_is_acknowledged_and_ignored(phone):
    await report(phone, "completed", sid=new_sid())
    assert await phone.world.events(events.Abandoned) == []


async def test_a_report_without_its_status_is_400(phone):
    params = {k: v for k, v in phone.params().items() if k != "CallStatus"}
    response = await phone.post(status.PATH, params)
    assert response.status == 400
    assert "missing parameters: CallStatus" in await response.text()


async def test_a_caller_who_hangs_up_before_routing_has_run_is_still_counted_abandoned(phone, monkeypatch):
    await phone.answer(inbound.PATH)
    await phone.answer(f"{inbound.MENU_PATH}?attempt=1", Digits="1")  # on the inbound stream, not routed yet
    looked = asyncio.Event()  # set when the report has looked for the call's conversation and found none
    find = inbound.conversation_of

    async def conversation_of(*args, **kwargs) -> str | None:
        found = await find(*args, **kwargs)
        if found is None:
            looked.set()
        return found

    monkeypatch.setattr(inbound, "conversation_of", conversation_of)
    # The report first: it finds no conversation and waits for routing; then routing runs.
    hang_up = asyncio.create_task(report(phone, "completed"))
    await asyncio.wait_for(looked.wait(), timeout=5)
    await phone.route()
    await asyncio.wait_for(hang_up, timeout=status.ROUTING_WAIT_ROUNDS * status.ROUTING_WAIT_S + 5)
    [abandoned] = await phone.world.events(events.Abandoned)
    record = await phone.world.conversation(abandoned.conversation)
    assert (record["state"], record["disposition"]) == ("closed", "abandoned")
    await phone.world.available("amy")
    assert await phone.world.offered("amy") == []  # nobody is offered a call with no caller


async def _another_calls_report(phone: Phone) -> None:
    other = phone.another()
    await other.answer(inbound.PATH, caller="+12025550143")
    await report(other, "ringing", caller="+12025550143")


async def _another_callers_wait_round(phone: Phone) -> None:
    other = phone.another()
    await other.answer(inbound.PATH, caller="+12025550143")
    await other.answer(f"{inbound.MENU_PATH}?attempt=1", Digits="1", caller="+12025550143")
    await other.answer("/twilio/voice/wait?n=0", caller="+12025550143")


async def _the_hang_up_repeated(phone: Phone) -> None:
    await report(phone, "completed")


async def _the_timers_workers_sweep(phone: Phone) -> None:
    from workers import timers

    await timers._sweep(phone.world.store, phone.world.deployment)


@pytest.mark.parametrize(
    "next_webhook",
    [_another_calls_report, _another_callers_wait_round, _the_hang_up_repeated, _the_timers_workers_sweep],
)
async def test_a_hang_up_reported_before_routing_is_counted_once_routing_opens_the_conversation(
    phone, monkeypatch, next_webhook
):
    monkeypatch.setattr(status, "ROUTING_WAIT_ROUNDS", 2)  # routing lags longer than the bounded wait
    await phone.answer(inbound.PATH)
    await phone.answer(f"{inbound.MENU_PATH}?attempt=1", Digits="1")
    await report(phone, "completed")
    assert (await phone.call_record())["abandon_pending"]
    assert await phone.world.events(events.Abandoned) == []

    await phone.world.available("amy")
    await phone.route()  # routing catches up and offers the dead call
    conversation = await inbound.conversation_of(phone.world.store, "acme", phone.sid, await phone.call_record())
    assert await phone.world.offered("amy") == [conversation]

    await next_webhook(phone)  # any later voice webhook of the tenant looks again
    assert conversation not in await phone.world.offered("amy")
    record = await phone.world.conversation(conversation)
    assert (record["state"], record["disposition"]) == ("closed", "abandoned")
    for again in ("completed", "canceled"):  # repeated and further reports count nothing more
        await report(phone, again)
    await next_webhook(phone)
    [abandoned] = await phone.world.events(events.Abandoned)
    assert (abandoned.conversation, abandoned.provider_id) == (conversation, phone.sid)
    assert "abandon_pending" not in await phone.call_record()
    assert await phone.world.store.redis.zcard(status.pending_key("acme")) == 0
