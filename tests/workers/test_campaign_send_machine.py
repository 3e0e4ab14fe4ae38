"""Campaign sending as a state machine: Hypothesis drives random schedules of what happens
around two collections campaigns (texts and calls to the same debtors) through the code
the processes run: the campaigns worker queues, the clock moves (to just either side of
a window's edge too), the dispatcher runs late, or takes its lease a moment after judging
the rules, supervisors pause, resume and cancel, debtors go on do-not-contact, opt out,
dispute the debt or talk to an agent. Whatever the order, nothing leaves that the rules
refuse at the moment it leaves (the send's lease), judged here from what the test did,
not from the engine's own answers:

- the campaign was running;
- the number was on no do-not-contact or opt-out list of its channel, and the debt was
  not disputed;
- it was inside the campaign's window in the debtor's own zone (read with zoneinfo);
- the debt had no text in the 7 days before (the texts' cap of 1), and no conversation
  about it within the quiet period (2 days for texts, 7 for calls).

And every recipient is counted once: done (sent, refused for good, suppressed) plus
queued (waiting, or held back for later) is the audience.

The rules that change the world pick a debtor with a message waiting for the dispatcher
when there is one, and the dispatcher may reach a message just before its window closes
and lease it late: the races at stake come up in most runs, not by chance now and then
(`--hypothesis-show-statistics` lists the refusals the schedules reached).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from channels.sandbox import outbox
from router import events
from router.campaigns import registry
from router.keys import Keys
from tests.factories import World, world
from tests.workers.campaigns import Clock, Outbound, create_campaign
from tests.workers.test_campaign_send_rules import DEPLOYMENT
from workers.campaigns.gate import SendGate
from workers.campaigns.results import Results
from workers.campaigns.worker import CampaignWorker
from workers.dispatch import Dispatcher

KEYS = Keys("acme")
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Debtor:
    phone: str
    zone: str  # where they are: what the oracle reads their local time in
    column: str  # the file's timezone column ("": the number's region decides)
    account: str


DEBTORS = (
    Debtor("+12125550001", "America/New_York", "America/New_York", "A-1"),
    Debtor("+13105550002", "America/Los_Angeles", "", "A-2"),  # a Los Angeles number, no zone given
    Debtor("+12125550003", "Europe/London", "Europe/London", "A-3"),
    Debtor("+12125550004", "Asia/Kathmandu", "Asia/Kathmandu", "A-1"),  # +05:45; the first one's debt
)
AUDIENCE = "phone,timezone,name,balance,account\n" + "".join(
    f"{d.phone},{d.column},Debtor {n},${n}0.00,{d.account}\n" for n, d in enumerate(DEBTORS, 1)
)


@dataclass(frozen=True)
class Rules:
    channel: str
    window: tuple[int, int]  # local hours
    cap: int  # messages per debt in 7 days
    quiet_days: int  # none after a conversation about the debt


CAMPAIGNS = {
    "texts": Rules("sms", (8, 21), 1, 2),
    "calls": Rules("voice", (9, 20), 7, 7),  # Regulation F's 7 calls in 7 days, 7 quiet days
}


def definition(campaign_id: str) -> str:
    rules = CAMPAIGNS[campaign_id]
    caps = (
        f'[[caps]]\nchannel = "sms"\nmax = {rules.cap}\ndays = 7\nquiet_days = {rules.quiet_days}\n'
        if rules.channel == "sms"
        else ""
    )
    return f"""
id = "{campaign_id}"
tenant = "acme"
kind = "collections"
channel = "{rules.channel}"
queue = "collections"
window = {{ start = "{rules.window[0]:02d}:00", end = "{rules.window[1]:02d}:00" }}
pacing = {{ per_minute = 6000 }}
retry = {{ attempts = 1 }}
{caps}
[templates.{rules.channel}.en]
body = "Hello {{{{ name }}}}, {{{{ balance }}}} is due on account {{{{ account }}}}."
"""


START = dt.datetime(2027, 6, 1, 13, 30, tzinfo=dt.UTC)  # 09:30 in New York, 06:30 in Los Angeles
T = TypeVar("T")
who = st.integers(min_value=0, max_value=len(DEBTORS) - 1)
campaign_ids = st.sampled_from(sorted(CAMPAIGNS))
DELAYS = st.sampled_from([0.0, 0.4, 1.5, 30.0, 90.0])  # between judging the rules and taking the lease (s)


class LateLease(SendGate):
    """The dispatcher's judgement of the rules, with the lease taken `delay` seconds later
    (a slow pipeline, a paused process): the race ordered explicitly."""

    def __init__(self, w: World, clock: Clock) -> None:
        super().__init__(w.store, w.deployment)
        self.test_clock = clock
        self.delay = 0.0

    async def lease_call(self, message, payload, lease_ms):
        call = await super().lease_call(message, payload, lease_ms)
        self.test_clock.forward(self.delay)
        return call


@dataclass
class Sent:
    campaign: str
    debtor: Debtor
    at_ms: int  # when its send's lease was taken


class SendingMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = Clock(START)
        self.world: World = self.run(world(DEPLOYMENT))
        for campaign_id in CAMPAIGNS:
            self.run(create_campaign(self.world, definition(campaign_id), AUDIENCE))
        self.worker = CampaignWorker(self.world.store, self.world.deployment)
        self.dispatcher = Dispatcher(self.world.store, deployment=self.world.deployment, concurrency=1)
        self.gate = self.dispatcher.campaign_gate = LateLease(self.world, self.clock)
        self.outbound = Outbound(self.world, self.dispatcher)
        # what the test did, for the oracle
        self.state = dict.fromkeys(CAMPAIGNS, "running")
        self.dnc: set[str] = set()
        self.opted_out: dict[str, set[str]] = {"sms": set(), "voice": set()}
        self.disputed: set[str] = set()
        self.talked: dict[str, int] = {}  # account -> the last conversation about it (ms)
        self.sent: dict[str, Sent] = {}  # message id -> what left, when

    def run(self, awaitable: Awaitable[T]) -> T:
        with self.clock:  # the test's time for everything, only while its code runs
            return self.loop.run_until_complete(awaitable)

    def teardown(self) -> None:
        self.run(self.world.store.close())
        self.loop.close()

    @property
    def now_ms(self) -> int:
        return int(self.clock.now * 1000)

    # --- what happens ---

    @initialize()
    def launched(self) -> None:
        """The campaigns start: the worker's first round queues whoever's window is open."""
        self.work()

    @rule()
    def work(self) -> None:
        """The campaigns worker's round: due recipients judged and queued."""
        self.run(self.worker.step())

    @rule(count=st.integers(1, 3), delay=DELAYS)
    def dispatch(self, count: int, delay: float) -> None:
        """The dispatcher delivers the first `count` messages waiting (it keeps up, or lags);
        each lease is taken `delay` after the rules were judged."""
        self.gate.delay = delay
        before = self.run(self._refusals())
        self.run(self.outbound.dispatch(count))
        self.run(self.dispatcher.run_retries("acme"))
        self.run(self._record_sends())
        for reason in self.run(self._refusals()) - before:  # what the schedules reach (--hypothesis-show-statistics)
            event(f"refused at send: {reason}")

    @rule(
        seconds=st.one_of(st.integers(1, 120), st.integers(120, 6 * 3600), st.integers(6 * 3600, 3 * 86_400)),
        edge=st.none() | st.tuples(st.integers(0, 50), st.sampled_from(["opens", "closes"]), st.integers(-90, 90)),
        then=st.sampled_from(["", "work", "dispatch", "work and dispatch"]),
        delay=DELAYS,
    )
    def time_passes(self, seconds: int, edge: tuple[int, str, int] | None, then: str, delay: float) -> None:
        """Some time, or up to just before or after the next time a campaign's window opens
        or closes for a debtor (one with a message waiting for the dispatcher, when there
        is one); then the worker, the dispatcher (its leases `delay` late), both or neither
        take a turn."""
        if edge is None:
            self.clock.forward(seconds)
        else:
            which, side, offset = edge
            waiting = self.run(self._waiting())
            campaign, n = waiting[which % len(waiting)] if waiting else (sorted(CAMPAIGNS)[which % 2], which % 4)
            hour = CAMPAIGNS[campaign].window[0 if side == "opens" else 1]
            zone = ZoneInfo(DEBTORS[n].zone)
            at = self.clock.utc.astimezone(zone).replace(hour=hour, minute=0, second=0, microsecond=0)
            target = at.astimezone(dt.UTC) + dt.timedelta(seconds=offset)
            while target <= self.clock.utc:
                at = (at.replace(tzinfo=None) + dt.timedelta(days=1)).replace(tzinfo=zone)
                target = at.astimezone(dt.UTC) + dt.timedelta(seconds=offset)
            self.clock.to(target)
        if "work" in then:
            self.work()
        if "dispatch" in then:
            self.dispatch(count=10, delay=delay)

    @rule(before=st.sampled_from([0.5, 1.0, 20.0, 59.0]), delay=DELAYS)
    def late_at_the_close(self, before: float, delay: float) -> None:
        """The dispatcher reaches the oldest waiting message `before` seconds before its
        window closes for the debtor, and takes the lease `delay` after judging it."""
        waiting = self.run(self._waiting())
        if not waiting:
            return
        campaign, n = waiting[0]
        zone = ZoneInfo(DEBTORS[n].zone)
        close = self.clock.utc.astimezone(zone).replace(
            hour=CAMPAIGNS[campaign].window[1], minute=0, second=0, microsecond=0
        )
        while close.astimezone(dt.UTC) - dt.timedelta(seconds=before) <= self.clock.utc:
            close = (close.replace(tzinfo=None) + dt.timedelta(days=1)).replace(tzinfo=zone)
        self.clock.to(close.astimezone(dt.UTC) - dt.timedelta(seconds=before))
        self.dispatch(count=1, delay=delay)

    @rule(campaign=campaign_ids, act=st.integers(0, 7))
    def supervisor(self, campaign: str, act: int) -> None:
        """A supervisor looks at a campaign: mostly leaves it be, else pauses it (running)
        or resumes it (paused), and once in a while cancels it, which ends it."""
        state = self.state[campaign]
        action, after = {"running": ("pause", "paused"), "paused": ("resume", "running")}.get(state, ("", ""))
        if act == 0 and state != "cancelled":
            action, after = "cancel", "cancelled"
        elif act > 3:
            action = ""
        if action:
            self.run(registry.change(self.world.store, "acme", campaign, action))
            self.state[campaign] = after

    @rule(which=st.integers(0, 50), how=st.sampled_from(["do_not_contact", "opts_out", "disputes", "relents"]))
    def objects(self, which: int, how: str) -> None:
        """A debtor goes on do-not-contact (`campaign dnc add`), opts out of a channel (STOP
        by text, 9 on a call), or disputes the debt (`campaign dispute add`); or all that is
        lifted again. One with a message waiting for the dispatcher, when there is one (and
        the opt-out of that message's channel): the case at stake."""
        waiting = self.run(self._waiting())
        campaign, n = waiting[which % len(waiting)] if waiting else (sorted(CAMPAIGNS)[which % 2], which % 4)
        debtor, channel = DEBTORS[n], CAMPAIGNS[campaign].channel
        entries = {
            "do_not_contact": (KEYS.do_not_contact, debtor.phone, self.dnc, debtor.phone),
            "opts_out": (KEYS.suppression(channel), debtor.phone, self.opted_out[channel], debtor.phone),
            "disputes": (KEYS.disputes, f"debt:{debtor.account}", self.disputed, debtor.account),
        }
        if how == "relents":
            for key, member, model, modelled in entries.values():
                self.run(self.world.store.redis.srem(key, member))
                model.discard(modelled)
            return
        key, member, model, modelled = entries[how]
        self.run(self.world.store.redis.sadd(key, member))
        model.add(modelled)

    @rule(which=st.integers(0, 50))
    def talk(self, which: int) -> None:
        """An agent closes a conversation with a debtor, one that a campaign's message began."""
        begun = [(c, n) for c in sorted(CAMPAIGNS) for n in range(len(DEBTORS)) if self._conversation(c, n)]
        if not begun:
            return
        campaign, n = begun[which % len(begun)]
        conversation = f"cmp-{campaign}-{n + 1}"
        closed = events.Closed(tenant="acme", occurred_at=self.now_ms, conversation=conversation, agent="amy")
        self.run(Results(self.world.store).apply("acme", closed))
        self.talked[DEBTORS[n].account] = self.now_ms

    async def _waiting(self) -> list[tuple[str, int]]:
        """(campaign, debtor index) of each message in the outbound stream the dispatcher
        has not read."""
        rows = await self.world.store.redis.xrange(KEYS.outbound, min=f"({self.outbound.last}")
        messages = [events.decode_outbound(fields[b"e"]) for _id, fields in rows]
        return [(m.campaign, int(m.metadata["campaign_recipient"]) - 1) for m in messages]

    def _conversation(self, campaign: str, n: int) -> bool:
        return bool(self.run(self.world.store.redis.exists(KEYS.conversation(f"cmp-{campaign}-{n + 1}"))))

    # --- the oracle, at every send ---

    async def _refusals(self) -> Counter:
        found: Counter = Counter()
        for campaign in CAMPAIGNS:
            found.update((await registry.progress(self.world.store, "acme", campaign)).refused_at_send)
        return found

    async def _record_sends(self) -> None:
        for _entry, _provider, message in await outbox(self.world.store, "acme", 100):
            if message.id in self.sent:
                continue
            lease = await self.world.store.redis.hget(KEYS.delivery(message.id), "sending_since")
            sent = Sent(message.campaign, DEBTORS[int(message.metadata["campaign_recipient"]) - 1], int(lease))
            assert message.to == sent.debtor.phone
            self._allowed(message.id, sent)
            self.sent[message.id] = sent
            event(f"sent: {sent.campaign}")

    def _allowed(self, message_id: str, sent: Sent) -> None:
        rules = CAMPAIGNS[sent.campaign]
        debtor = sent.debtor
        what = f"{message_id} to {debtor.phone} at {dt.datetime.fromtimestamp(sent.at_ms / 1000, dt.UTC)}"
        assert self.state[sent.campaign] == "running", f"{what}: the campaign is {self.state[sent.campaign]}"
        assert debtor.phone not in self.dnc, f"{what}: on do-not-contact"
        assert debtor.phone not in self.opted_out[rules.channel], f"{what}: opted out of {rules.channel}"
        assert debtor.account not in self.disputed, f"{what}: {debtor.account} is disputed"
        local = dt.datetime.fromtimestamp(sent.at_ms / 1000, ZoneInfo(debtor.zone))
        start, end = rules.window
        assert start <= local.hour < end, f"{what}: {local:%H:%M:%S} in {debtor.zone}"
        talked = self.talked.get(debtor.account)
        quiet = rules.quiet_days * DAY_MS
        assert talked is None or sent.at_ms >= talked + quiet, f"{what}: talked about {debtor.account} at {talked}"
        week = [
            s
            for s in self.sent.values()
            if CAMPAIGNS[s.campaign].channel == rules.channel
            and s.debtor.account == debtor.account
            and sent.at_ms - s.at_ms < 7 * DAY_MS
        ]
        assert len(week) < rules.cap, f"{what}: {len(week)} {rules.channel} messages about {debtor.account} this week"

    # --- what must hold after every step ---

    @invariant()
    def every_recipient_counted_once(self) -> None:
        for campaign in CAMPAIGNS:
            progress = self.run(registry.progress(self.world.store, "acme", campaign))
            assert progress.done + progress.queued == len(DEBTORS), (campaign, progress)

    @invariant()
    def nothing_left_twice(self) -> None:
        kept = self.run(outbox(self.world.store, "acme", 100))
        ids = [message.id for _entry, _provider, message in kept]
        assert len(ids) == len(set(ids)), ids


SendingMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    derandomize=True,  # the same schedules on every run: CI never meets a new one by chance
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
# As the routing machine: room for Hypothesis to shrink a failure to its few steps.
TestSendingMachine = pytest.mark.timeout(600)(SendingMachine.TestCase)
