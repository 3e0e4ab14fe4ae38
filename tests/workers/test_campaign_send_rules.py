"""Every rule of a campaign holds at the moment its message leaves, not only when it was
queued: the dispatcher judges them all again in the step that takes the send's lease
(workers/campaigns/gate.py, router/lua/campaigns/begin_send.lua). Each case is one that
an audit found sent: a dispatch delayed past 21:00 local, a pause, a do-not-contact
entry, a dispute, a cancel after the message was queued."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from channels.sandbox import outbox
from router import events
from router.campaigns import registry
from router.keys import Keys
from router.scripts import run_pipelined
from router.store import text
from tests.factories import world
from tests.workers.campaigns import Clock, Outbound, create_campaign
from workers.campaigns import cli
from workers.campaigns.results import Results
from workers.campaigns.worker import CampaignWorker
from workers.dispatch import Dispatcher

KEYS = Keys("acme")
DEPLOYMENT = """
[[tenants]]
id = "acme"
entry = { default = "support" }
email = { addresses = ["help@acme.example"] }  # where campaign email leaves from, and its mailto: unsubscribe goes
dispositions = ["resolved", "promise_to_pay", "paid", "disputed"]

[[tenants.queues]]
id = "support"

[[tenants.queues]]
id = "collections"

[[tenants.agents]]
id = "amy"
"""
NEW_YORK = ZoneInfo("America/New_York")
JANE = "+12125550000"  # a New York number: her local time is New York's


def new_york(day: int, hour: int, minute: int = 0, second: float = 0) -> dt.datetime:
    """A local time in New York, June 2027 (1 June is a Tuesday)."""
    whole = int(second)
    local = dt.datetime(2027, 6, day, hour, minute, whole, int((second - whole) * 1e6), tzinfo=NEW_YORK)
    return local.astimezone(dt.UTC)


def definition(channel: str = "sms", kind: str = "collections") -> str:
    return f"""
id = "dues"
tenant = "acme"
kind = "{kind}"
channel = "{channel}"
queue = "collections"
window = {{ start = "08:00", end = "21:00" }}
pacing = {{ per_minute = 6000 }}
[templates.{channel}.en]
subject = "Account {{{{ account }}}}"
body = "Hi {{{{ name }}}}, {{{{ balance }}}} is due on account {{{{ account }}}}."
"""


AUDIENCE = f"phone,email,name,balance,account\n{JANE},jane@example.com,Jane,$120.00,A-1\n"


class Floor:
    """The world, a clock, the campaigns worker and the dispatcher (to the sandbox outbox)."""

    def __init__(self, w, clock: Clock) -> None:
        self.w, self.clock = w, clock
        self.worker = CampaignWorker(w.store, w.deployment)
        self.dispatcher = Dispatcher(w.store, deployment=w.deployment)
        self.outbound = Outbound(w, self.dispatcher)

    async def queue(self, channel: str = "sms", kind: str = "collections") -> None:
        """The campaign is launched and the worker queues Jane's message."""
        await create_campaign(self.w, definition(channel, kind), AUDIENCE)
        assert await self.worker.step() == 1
        assert [m.id for m in await self.w.outgoing()] == ["cmp-dues-1-1"]

    async def sent(self) -> list[str]:
        """The ids of what left (the sandbox outbox), oldest first."""
        return [m.id for _entry, _provider, m in reversed(await outbox(self.w.store, "acme"))]

    async def status(self) -> str:
        return text(await self.w.store.redis.hget(KEYS.campaign_status("dues"), "1"))

    async def delivery(self) -> dict[str, str]:
        """The dispatcher's record of the message: its status and error."""
        found = await self.w.store.redis.hmget(KEYS.delivery("cmp-dues-1-1"), "status", "error")
        return {"status": text(found[0] or b""), "error": text(found[1] or b"")}

    async def due(self) -> list[tuple[str, int]]:
        rows = await self.w.store.redis.zrange(KEYS.campaign_due("dues"), 0, -1, withscores=True)
        return [(text(seq), int(score)) for seq, score in rows]

    async def progress(self) -> registry.Progress:
        return await registry.progress(self.w.store, "acme", "dues")


@pytest.fixture
async def floor():
    with Clock(new_york(1, 12)) as clock:
        yield Floor(await world(DEPLOYMENT), clock)


def ms(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)


async def test_a_text_queued_at_2050_and_dispatched_at_2101_local_waits_for_8_am_then_goes_once(floor):
    floor.clock.to(new_york(1, 20, 50))
    await floor.queue()
    floor.clock.to(new_york(1, 21, 1))  # the dispatcher was slow
    assert await floor.outbound.dispatch() == 1
    assert await floor.sent() == []
    assert await floor.status() == "held:1:sms:outside_window"
    assert await floor.due() == [("1", ms(new_york(2, 8)))]  # the window's next opening, her time
    record = await floor.delivery()
    assert (record["status"], record["error"]) == ("held", "refused_at_send: outside_window")
    [report] = await floor.w.events(events.DeliveryStatus)
    assert (report.message, report.status, report.error) == ("cmp-dues-1-1", "held", "refused_at_send: outside_window")
    progress = await floor.progress()
    assert (progress.counts["sent"], progress.queued, progress.counts["refused_at_send"]) == (0, 1, 1)
    assert progress.refused_at_send == {"outside_window": 1}
    assert "refused at send 1 (outside_window 1)" in cli.bar(progress)

    floor.clock.to(new_york(2, 7, 59))
    assert await floor.worker.step() == 0  # not due yet
    floor.clock.to(new_york(2, 8))
    assert await floor.worker.step() == 1  # queued again, under the same id
    assert await floor.outbound.dispatch() == 1
    assert await floor.sent() == ["cmp-dues-1-1"]
    assert await floor.status() == "sent:1:sms"
    # one message in Jane's conversation, not one per time it was queued
    log = await floor.w.store.redis.lrange(KEYS.conversation_log("cmp-dues-1"), 0, -1)
    assert len(log) == 1
    progress = await floor.progress()
    assert (progress.counts["sent"], progress.queued, progress.share) == (1, 0, 1.0)


async def test_a_delay_between_judging_the_window_and_taking_the_lease_cannot_carry_a_text_past_21(floor):
    floor.clock.to(new_york(1, 20, 59, 59.5))
    await floor.queue()
    [message] = await floor.w.outgoing()
    payload = events.encode(message)
    lease = await floor.dispatcher.campaign_gate.lease_call(message, payload, 60_000)  # judged at 20:59:59.5
    floor.clock.forward(1.0)  # the lease is taken at 21:00:00.5
    [reply] = await run_pipelined(floor.w.store.redis, [lease])
    assert [text(part) if isinstance(part, bytes) else part for part in reply] == ["held", 0, "outside_window"]
    assert await floor.status() == "held:1:sms:outside_window"
    assert await floor.sent() == []


async def test_a_text_judged_and_leased_inside_the_window_goes(floor):
    floor.clock.to(new_york(1, 20, 59, 59))
    await floor.queue()
    assert await floor.outbound.dispatch() == 1
    assert await floor.sent() == ["cmp-dues-1-1"]
    assert (await floor.progress()).counts["refused_at_send"] == 0


async def test_a_text_queued_before_a_pause_is_held_until_the_campaign_resumes(floor):
    await floor.queue()
    await registry.change(floor.w.store, "acme", "dues", "pause")
    await floor.outbound.dispatch()
    assert await floor.sent() == []
    assert await floor.status() == "held:1:sms:paused"
    floor.clock.forward(3600)
    assert await floor.worker.step() == 0  # a paused campaign's recipients stay where they are
    assert await floor.outbound.dispatch() == 0
    await registry.change(floor.w.store, "acme", "dues", "resume")
    assert await floor.worker.step() == 1
    await floor.outbound.dispatch()
    assert await floor.sent() == ["cmp-dues-1-1"]
    progress = await floor.progress()
    assert (progress.counts["sent"], progress.refused_at_send, progress.share) == (1, {"paused": 1}, 1.0)


async def refused_for_good(floor, reason: str) -> None:
    """Jane's queued text was refused as it was to leave, with `reason`, and never will go."""
    await floor.outbound.dispatch()
    assert await floor.sent() == []
    assert await floor.status() == f"suppressed:refused_at_send:1:sms:{reason}"
    record = await floor.delivery()
    assert (record["status"], record["error"]) == ("refused", f"refused_at_send: {reason}")
    # no attempt for the frequency caps: the text never left
    assert await floor.w.store.redis.zcard(KEYS.contact_attempts("sms", "debt:A-1")) == 0
    progress = await floor.progress()
    c = progress.counts
    assert (c["sent"], c["suppressed"], c["refused_at_send"], progress.queued) == (0, 1, 1, 0)
    assert progress.refused_at_send == {reason: 1} and progress.share == 1.0
    # the results follower reading the refusal changes nothing more
    results = Results(floor.w.store)
    for event in await floor.w.events(events.DeliveryStatus):
        await results.apply("acme", event)
    assert (await floor.progress()).counts == c
    floor.clock.forward(86_400)
    assert await floor.worker.step() == 0
    assert await floor.outbound.dispatch() == 0


async def test_a_text_to_a_number_put_on_do_not_contact_after_queueing_is_refused_for_good(floor):
    await floor.queue()
    await floor.w.store.redis.sadd(KEYS.do_not_contact, JANE)  # `campaign dnc add`
    await refused_for_good(floor, "do_not_contact")


async def test_a_text_about_a_debt_disputed_after_queueing_is_refused_for_good(floor):
    await floor.queue()
    await floor.w.store.redis.sadd(KEYS.disputes, "debt:A-1")  # `campaign dispute add debt:A-1`
    await refused_for_good(floor, "disputed")


async def test_a_text_to_a_customer_who_disputed_after_queueing_is_refused_for_good(floor):
    await floor.queue()
    conversation = await floor.w.conversation("cmp-dues-1")
    await floor.w.store.redis.sadd(KEYS.disputes, conversation["customer"])  # an agent's "disputed" disposition
    await refused_for_good(floor, "disputed")


async def test_a_text_opted_out_of_after_queueing_is_refused_for_good(floor):
    await floor.queue()
    await floor.w.store.redis.sadd(KEYS.suppression("sms"), JANE)  # she texted STOP
    await refused_for_good(floor, "opted_out")


async def test_a_text_queued_before_a_cancel_is_refused_for_good(floor):
    await floor.queue()
    await registry.change(floor.w.store, "acme", "dues", "cancel")
    await refused_for_good(floor, "cancelled")


async def test_an_email_to_an_address_unsubscribed_after_queueing_is_refused(floor):
    await floor.queue(channel="email", kind="cross_sell")
    await floor.w.store.redis.sadd(KEYS.suppression("email"), "jane@example.com")  # one-click unsubscribe
    await floor.outbound.dispatch()
    assert await floor.sent() == []
    assert await floor.status() == "suppressed:refused_at_send:1:email:opted_out"


async def test_a_call_queued_before_a_conversation_about_the_debt_waits_out_the_quiet_period(floor):
    await floor.queue(channel="voice")
    talked = floor.clock.utc
    closed = events.Closed(tenant="acme", occurred_at=ms(talked), conversation="cmp-dues-1", agent="amy")
    await Results(floor.w.store).apply("acme", closed)  # an agent talked with Jane about A-1
    floor.clock.forward(60)
    await floor.outbound.dispatch()
    assert await floor.sent() == []
    assert await floor.status() == "held:1:voice:cap"
    assert await floor.w.store.redis.zcard(KEYS.contact_attempts("voice", "debt:A-1")) == 0
    assert await floor.worker.step() == 1  # the worker works out when the cap allows it: 7 days on
    assert await floor.due() == [("1", ms(talked + dt.timedelta(days=7)))]
    assert (await floor.progress()).refused_at_send == {"cap": 1}


async def test_a_late_report_of_a_held_text_does_not_let_the_campaign_finish_while_it_is_queued_again(floor):
    await floor.queue()
    await registry.change(floor.w.store, "acme", "dues", "pause")
    await floor.outbound.dispatch()  # held back: the campaign is paused
    await registry.change(floor.w.store, "acme", "dues", "resume")
    assert await floor.worker.step() == 1  # queued again, before the results follower read the report
    results = Results(floor.w.store)
    for event in await floor.w.events(events.DeliveryStatus):
        await results.apply("acme", event)
    assert await floor.worker.step() == 0
    assert (await floor.progress()).state == "running"  # its text is still with the dispatcher
    await floor.outbound.dispatch()
    assert await floor.sent() == ["cmp-dues-1-1"]


async def test_a_message_of_a_campaign_no_longer_there_is_refused(floor):
    message = events.OutboundMessage(
        id="cmp-gone-1-1",
        tenant="acme",
        channel="sms",
        to=JANE,
        occurred_at=ms(floor.clock.utc),
        conversation="cmp-gone-1",
        body="Hi",
        campaign="gone",
    )
    assert await floor.dispatcher.deliver(message, events.encode(message)) == "refused"
    assert await floor.sent() == []
    record = await floor.w.store.redis.hmget(KEYS.delivery("cmp-gone-1-1"), "status", "error")
    assert record == [b"refused", b"refused_at_send: cancelled"]


async def test_a_text_counts_against_the_caps_from_when_it_left_not_from_when_it_was_queued(floor):
    await floor.queue()
    floor.clock.forward(3 * 3600)  # the dispatcher was three hours late
    await floor.outbound.dispatch()
    attempts = await floor.w.store.redis.zrange(KEYS.contact_attempts("sms", "debt:A-1"), 0, -1, withscores=True)
    assert attempts == [(b"cmp-dues-1-1", float(ms(floor.clock.utc)))]
