"""Voice campaigns with agents on the line (`voice.dial_mode`): the campaigns worker calls
as many recipients as the campaign's agents can take, the dispatcher places the calls
through the real twilio client against the fake Twilio API, and once answering-machine
detection has decided, a person goes straight to the free agent (the campaign's queue,
then the conversation's conference), or hears the tenant's abandon message and counts as
an abandon; a machine gets the message only where the campaign allows one."""

from __future__ import annotations

import datetime as dt

import pytest

from channels.voice import bridge
from channels.voice.campaign import agents as campaign_agents
from router import agents, events
from router.campaigns import dial_state, registry
from router.campaigns.model import CampaignError, parse_campaign
from tests.channels.test_voice_campaign import (
    ACME_NUMBER,
    KEYS,
    NOON_NY,
    Campaigns,
    _campaigns,
    campaign_toml,
    path,
)
from tests.workers.campaigns import Clock, create_campaign

AUDIENCE = (
    "phone,name,balance,account\n"
    "+12125550000,Jane,$120.00,A-1\n"
    "+12125550001,John,$80.00,A-2\n"
    "+12125550002,Jill,$45.00,A-3\n"
)
MACHINE = 'machine_message = "Hello {{ name }}, please call Acme about account {{ account }}."'


def agent_campaign(mode: str = "progressive", machine: str = MACHINE) -> str:
    return campaign_toml(voice=f'dial_mode = "{mode}"\n{machine}')


@pytest.fixture
async def dialler():
    with Clock(NOON_NY, ticking=True) as clock:
        async for made in _campaigns(clock):
            yield made


async def launch(c: Campaigns, mode: str = "progressive", machine: str = MACHINE) -> int:
    await create_campaign(c.w, agent_campaign(mode, machine), AUDIENCE)
    return await c.worker.step()


async def figures(c: Campaigns) -> dict[str, int]:
    return await dial_state.figures(c.w.store, "acme", "dues")


async def test_progressive_calls_nobody_while_no_agent_is_free(dialler):
    assert await launch(dialler) == 0
    assert await dialler.queued() == []


async def test_progressive_places_one_call_per_free_agent_and_no_more_while_it_rings(dialler):
    await agents.set_presence(dialler.w.store, dialler.w.tenant, "amy", "available")
    assert await launch(dialler) == 1
    assert await dialler.worker.step() == 0  # amy's call is in flight: nothing more for her
    assert await dialler.dispatch() == 1
    [call] = dialler.calls
    assert call["MachineDetection"] == "DetectMessageEnd"  # AMD decides before any agent hears it
    assert await dialler.w.store.redis.zrange(KEYS.campaign_ringing("dues"), 0, -1) == [b"cmp-dues-1-1"]


async def test_a_person_who_answers_goes_straight_to_the_free_agent_in_the_conversations_conference(dialler):
    w = dialler.w
    await agents.set_presence(w.store, w.tenant, "amy", "available")
    await launch(dialler)
    await dialler.dispatch()
    answer = await dialler.answered_by("human")
    # no message read out, no "press 1": the agent speaks first
    assert [(e.tag, path(e.text)) for e in answer] == [("Redirect", "/twilio/voice/wait?n=0")]
    [contact] = [events.decode_inbound(f[b"e"]) for _id, f in await w.store.redis.xrange(KEYS.inbound)]
    assert (contact.queue, contact.metadata["campaign_message"]) == ("collections", "cmp-dues-1-1")
    await dialler.route()
    assert await w.accept_offer("amy") == "cmp-dues-1"
    [offer] = [m for m in await w.outgoing() if m.metadata.get("action") == bridge.OFFER]
    await bridge.take(w.store, w.tenant, "cmp-dues-1", offer.metadata["call_sid"], "amy", "CA" + "7" * 32)
    connected = await dialler.twiml("/twilio/voice/wait?n=1")
    assert [n.text for n in connected.iter("Conference")] == [bridge.conference_name("cmp-dues-1")]
    counted = await figures(dialler)
    assert (counted["outcomes"], counted["answered"], counted["connects"], counted.get("abandoned", 0)) == (1, 1, 1, 0)
    assert await w.store.redis.zcard(KEYS.campaign_ringing("dues")) == 0


async def test_a_person_who_answers_when_no_agent_is_free_hears_the_abandon_message_and_is_counted(dialler):
    w = dialler.w
    await agents.set_presence(w.store, w.tenant, "amy", "available")
    await launch(dialler)
    await dialler.dispatch()
    await agents.set_presence(w.store, w.tenant, "amy", "away")  # she left before the answer
    answer = await dialler.answered_by("human")
    digits = " ".join(ACME_NUMBER.lstrip("+"))
    said = (
        "This is acme calling. Sorry, nobody is free to take your call just now. "
        f"Please call us back on {digits}. Goodbye."
    )
    assert [(e.tag, e.text) for e in answer] == [("Say", said), ("Hangup", None)]
    assert answer.find("Say").get("language") == "en-GB"
    assert await w.store.redis.xlen(KEYS.inbound) == 0  # nobody waits for an agent
    record = await dialler.delivery()
    assert (record["status"], record["error"]) == ("delivered", "abandoned: no agent was free")
    await dialler.answered_by("human")  # Twilio retrying the webhook counts nothing more
    counted = await figures(dialler)
    assert (counted["answered"], counted["abandoned"], counted.get("connects", 0)) == (1, 1, 0)
    measured = await dial_state.measures(w.store, "acme", "dues", 180.0, NOON_NY.date())
    assert (measured.answered_30d, measured.abandoned_30d) == (1, 1)


async def test_a_machine_gets_the_message_only_where_the_campaign_allows_it(dialler):
    w = dialler.w
    await agents.set_presence(w.store, w.tenant, "amy", "available")
    await launch(dialler)
    await dialler.dispatch()
    answer = await dialler.answered_by("machine_end_beep")
    assert [(e.tag, e.text) for e in answer] == [
        ("Say", "Hello Jane, please call Acme about account A-1."),
        ("Hangup", None),
    ]
    assert await w.store.redis.xlen(KEYS.inbound) == 0  # no agent was involved
    assert (await figures(dialler))["machines"] == 1


async def test_without_a_machine_message_a_machine_is_hung_up_on(dialler):
    await agents.set_presence(dialler.w.store, dialler.w.tenant, "amy", "available")
    await launch(dialler, machine="machine_retry = false")
    await dialler.dispatch()
    assert dialler.calls[0]["MachineDetection"] == "Enable"
    answer = await dialler.answered_by("machine_start")
    assert [e.tag for e in answer] == ["Hangup"]


async def test_a_call_nobody_answers_leaves_the_ringing_calls_and_counts_for_the_answer_rate(dialler):
    w = dialler.w
    await agents.set_presence(w.store, w.tenant, "amy", "available")
    await launch(dialler)
    await dialler.dispatch()
    for _ in range(2):  # a retried report counts once
        await dialler.post(dialler.calls[0]["StatusCallback"], CallStatus="no-answer")
    assert await figures(dialler) == {"outcomes": 1}
    assert await dialler.worker.step() == 1  # amy is free and nothing rings: the next recipient


async def test_the_abandon_rate_counts_the_last_30_days_only(dialler):
    w = dialler.w
    today = NOON_NY.date()
    old, recent = (today - dt.timedelta(days=30)).isoformat(), (today - dt.timedelta(days=29)).isoformat()
    await w.store.redis.hset(
        KEYS.campaign_dial_figures("dues"),
        mapping={f"answered:{old}": 50, f"abandoned:{old}": 9, f"answered:{recent}": 100, f"abandoned:{recent}": 2},
    )
    measured = await dial_state.measures(w.store, "acme", "dues", 180.0, today)
    assert (measured.answered_30d, measured.abandoned_30d) == (100, 2)


async def test_predictive_learning_the_answer_rate_dials_as_progressive(dialler):
    await agents.set_presence(dialler.w.store, dialler.w.tenant, "amy", "available")
    assert await launch(dialler, "predictive") == 1


async def test_the_tenants_own_abandon_message_is_used_when_it_has_one(dialler):
    tenant = dialler.w.deployment.tenant("acme")
    tenant.voice.abandon_message = "Acme Collections called. Call 0800 123 456."
    assert campaign_agents.abandon_message(tenant) == "Acme Collections called. Call 0800 123 456."


def test_agents_on_the_line_are_for_voice_campaigns_only():
    sms = agent_campaign().replace('channel = "voice"', 'channel = "sms"').replace("templates.voice", "templates.sms")
    with pytest.raises(CampaignError, match="dial_mode"):
        parse_campaign(sms, "sms.toml")


async def dnc(c: Campaigns) -> None:
    await c.w.store.redis.sadd(KEYS.do_not_contact, "+12125550000")


async def dispute(c: Campaigns) -> None:
    await c.w.store.redis.sadd(KEYS.disputes, "debt:A-1")


async def pause(c: Campaigns) -> None:
    await registry.change(c.w.store, "acme", "dues", "pause")


async def nine_pm(c: Campaigns) -> None:
    c.clock.to(dt.datetime(2027, 6, 2, 1, 5, tzinfo=dt.UTC))  # 21:05 in New York


@pytest.mark.parametrize(
    ("after_queueing", "status"),
    [
        (dnc, "suppressed:refused_at_send:1:voice:do_not_contact"),
        (dispute, "suppressed:refused_at_send:1:voice:disputed"),
        (pause, "held:1:voice:paused"),
        (nine_pm, "held:1:voice:outside_window"),
    ],
)
async def test_a_dial_refused_at_its_moment_is_recorded_with_its_reason_and_no_longer_in_flight(
    dialler, after_queueing, status
):
    w = dialler.w
    await agents.set_presence(w.store, w.tenant, "amy", "available")
    await launch(dialler)
    await after_queueing(dialler)
    await dialler.dispatch()
    assert dialler.calls == []
    assert await dialler.status() == status
    assert await dial_state.in_flight(w.store, "acme", "dues", events.now_ms()) == 0  # its agent is free again


async def test_after_a_refused_dial_the_free_agent_gets_the_next_recipient(dialler):
    w = dialler.w
    await agents.set_presence(w.store, w.tenant, "amy", "available")
    await launch(dialler)
    await dnc(dialler)
    await dialler.dispatch()
    record = await dialler.delivery()
    assert (record["status"], record["error"]) == ("refused", "refused_at_send: do_not_contact")
    assert await dialler.worker.step() == 1  # nothing rings for amy: John is called next
    assert [m.to for m, _payload in await dialler.queued()] == ["+12125550000", "+12125550001"]
