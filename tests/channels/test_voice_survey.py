"""The keypad survey after a call: when the agent hangs up (their participant ends the
conference), the caller's Dial comes to its action with the caller still on the line, and a
tenant whose survey lists voice asks for a rating 1-5 in a Gather; the key is recorded as
every channel's rating is, once, and shows in `contactrouter report`. Signed webhooks as
Twilio sends them, every TwiML answer checked, the real twilio client against the fake
Twilio REST server."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest

from channels.voice import inbound, status, survey, waiting
from ops import cli, satisfaction
from router import agents, events, surveys
from router.keys import Keys
from tests.channels.test_voice_softphone import ENV, WITH_KEY, Desk, desk_of
from tests.channels.voice_phone import CALLER, Answer, twiml

ASKING = WITH_KEY.replace(
    '\n[[tenants]]\nid = "globex"',
    '\n[tenants.survey]\nchannels = ["voice", "sms"]\nlow_rating = 2\n\n[[tenants]]\nid = "globex"',
    1,
)
assert ASKING != WITH_KEY


@pytest.fixture
async def desk() -> AsyncIterator[Desk]:
    async for value in desk_of(ASKING, ENV):
        yield value


async def agent_hangs_up(desk: Desk, **fields: str) -> Answer:
    """The agent's participant left, which ended the conference: Twilio asks the caller's
    Dial action what the caller's call does next."""
    return await desk.phone.answer(waiting.DIALED_PATH, DialCallStatus="completed", **fields)


def local(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def press(desk: Desk, asked: Answer, digits: str) -> Answer:
    """The caller presses a key at the survey's Gather: Twilio posts it to the action."""
    return await desk.phone.answer(local(asked.one("Gather").get("action")), Digits=digits)


async def figures(desk: Desk) -> satisfaction.Satisfaction:
    day = dt.datetime.now(ZoneInfo(desk.world.tenant.timezone)).date()
    return await satisfaction.period(desk.world.store, desk.world.tenant, day, day + dt.timedelta(days=1))


async def test_the_caller_rates_the_call_on_the_keypad_after_the_agent_hangs_up(desk, capsys):
    conversation = await desk.call_with("amy")
    asked = await agent_hangs_up(desk)
    assert asked.verbs == ["Gather", "Hangup"]  # no key: the call ends, nothing recorded
    gather = asked.one("Gather")
    assert (gather.get("input"), gather.get("numDigits"), gather.get("actionOnEmptyResult")) == ("dtmf", "1", None)
    assert urlsplit(gather.get("action")).path == survey.PATH
    assert parse_qs(urlsplit(gather.get("action")).query) == {"conversation": [conversation]}
    say = gather.find("Say")
    assert say.get("language") == "en-GB"
    assert "please rate this call on your keypad, from 1 for poor to 5 for excellent" in say.text
    record = await desk.world.conversation(conversation)
    assert (record["survey"], record["survey_channel"]) == ("sent", "voice")
    assert (await desk.phone.call_record())["state"] == survey.STATE

    thanked = await press(desk, asked, "4")
    assert thanked.verbs == ["Say", "Hangup"]
    assert thanked.said() == "Thank you for your rating. Goodbye."
    record = await desk.world.conversation(conversation)
    assert (record["survey"], record["survey_rating"]) == ("rated", "4")
    [result] = await desk.world.events(events.SurveyResult)
    assert (result.conversation, result.channel, result.rating, result.agent, result.low) == (
        conversation,
        "voice",
        4,
        "amy",
        False,
    )
    [sent] = await desk.world.events(events.SurveySent)
    assert (sent.channel, sent.outcome) == ("voice", "sent")
    # the question goes on no outbound stream: the call's own TwiML asked it
    assert [m for m in await desk.world.outgoing() if m.metadata.get("survey")] == []

    # a second post of the Gather (Twilio retrying, another key) changes nothing
    again = await press(desk, asked, "1")
    assert again.verbs == ["Hangup"]
    assert (await desk.world.conversation(conversation))["survey_rating"] == "4"

    total = (await figures(desk)).total
    assert (total.sent, total.answered, total.good, total.sum) == (1, 1, 1, 4)
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["report", "--tenant", "acme"])  # as `contactrouter report` reads its options
    await cli._report(desk.world.store, desk.world.deployment, args)
    printed = capsys.readouterr().out
    assert "support            1        1   100.0%  100.0%    4.00        0" in printed


async def test_a_low_keypad_rating_opens_a_follow_up(desk):
    conversation = await desk.call_with("amy")
    await press(desk, await agent_hangs_up(desk), "1")
    [followup] = await surveys.followups(desk.world.store, "acme")
    assert (followup["conversation"], followup["rating"], followup["agent"]) == (conversation, "1", "amy")


@pytest.mark.parametrize("digits", ["9", "0", "*", ""])
async def test_another_key_or_none_records_nothing_and_hangs_up(desk, digits):
    conversation = await desk.call_with("amy")
    answer = await press(desk, await agent_hangs_up(desk), digits)
    assert answer.verbs == ["Hangup"]
    record = await desk.world.conversation(conversation)
    assert (record["survey"], record.get("survey_rating")) == ("sent", None)
    assert (await figures(desk)).total.answered == 0


async def test_an_opted_out_caller_is_not_asked(desk):
    conversation = await desk.call_with("amy")
    await desk.world.store.redis.sadd(Keys("acme").do_not_contact, CALLER)
    assert (await agent_hangs_up(desk)).verbs == ["Hangup"]
    assert (await desk.world.conversation(conversation))["survey"] == "do_not_contact"
    assert (await figures(desk)).total.sent == 0


async def test_a_caller_who_hangs_up_first_is_not_asked(desk):
    conversation = await desk.call_with("amy")
    answer = await agent_hangs_up(desk, CallStatus="completed")  # the caller left: Twilio ignores the answer
    assert answer.verbs == ["Hangup"]
    assert "survey" not in await desk.world.conversation(conversation)


async def test_a_caller_handed_over_to_an_outside_number_is_not_asked(desk):
    conversation = await desk.call_with("amy")
    await inbound.update_call(desk.world.store, "acme", desk.phone.sid, transferred_to="+15558880000")
    assert (await agent_hangs_up(desk)).verbs == ["Hangup"]
    assert "survey" not in await desk.world.conversation(conversation)


async def test_a_call_is_asked_once_and_its_close_plans_no_second_survey(desk):
    conversation = await desk.call_with("amy")
    await press(desk, await agent_hangs_up(desk), "5")
    assert (await agent_hangs_up(desk)).verbs == ["Hangup"]  # a repeated action: not asked again
    await agents.close(desk.world.store, desk.world.tenant, "amy", conversation, "resolved")
    assert await desk.world.timers("survey:") == {}
    assert len(await desk.world.events(events.SurveySent)) == 1


async def test_a_tenant_whose_survey_leaves_voice_out_hangs_up(desk):
    async for other in desk_of(ASKING.replace('channels = ["voice", "sms"]', 'channels = ["sms"]'), ENV):
        conversation = await other.call_with("amy")
        assert (await agent_hangs_up(other)).verbs == ["Hangup"]
        assert "survey" not in await other.world.conversation(conversation)


async def test_a_forged_or_misdirected_rating_is_refused(desk):
    conversation = await desk.call_with("amy")
    asked = await agent_hangs_up(desk)
    path = local(asked.one("Gather").get("action"))
    before = await desk.phone.snapshot()
    forged = await desk.phone.post(path, desk.phone.params(Digits="1"), signature="bad")
    assert forged.status == 403
    unsigned = await desk.phone.post(path, desk.phone.params(Digits="1"), signature="")
    assert unsigned.status == 403
    assert await desk.phone.snapshot() == before
    # signed, but from another call than the one asked: nothing recorded
    other = desk.phone.another()
    assert (await twiml(await other.post(path, other.params(Digits="1")))).verbs == ["Hangup"]
    assert "survey_rating" not in await desk.world.conversation(conversation)


async def test_the_talk_time_ends_when_the_agent_hangs_up_not_after_the_survey(desk):
    await desk.call_with("amy")
    await press(desk, await agent_hangs_up(desk), "5")
    call = await desk.phone.call_record()
    await desk.world.store.redis.hset(Keys("acme").call(desk.phone.sid), "survey_at", int(call["bridged_at"]) + 90_000)
    assert (await desk.phone.post(status.PATH, desk.phone.params(CallStatus="completed"))).status == 200
    handled = await desk.world.store.redis.lrange(Keys("acme").voice_handled("support"), 0, -1)
    assert [int(v) for v in handled] == [90_000]
    assert (await inbound.get_call(desk.world.store, "acme", desk.phone.sid))["state"] == survey.STATE


async def test_the_voice_caps_count_per_caller():
    capped = ASKING.replace("low_rating = 2", 'low_rating = 2\ncaps = [{ channel = "voice", max = 1, days = 30 }]')
    async for desk in desk_of(capped, ENV):
        first = await desk.call_with("amy")
        assert (await agent_hangs_up(desk)).verbs == ["Gather", "Hangup"]
        await agents.close(desk.world.store, desk.world.tenant, "amy", first, "resolved")
        again = Desk(desk.phone.another(), desk.api, desk.sender)  # the same caller calls again
        second = await again.call_with("amy")
        assert second != first
        assert (await agent_hangs_up(again)).verbs == ["Hangup"]
        assert (await desk.world.conversation(second))["survey"] == "capped"
