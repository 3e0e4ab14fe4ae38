"""Dispatch delivers a batch concurrently, within its limit, keeping each conversation's order."""

import asyncio
from collections.abc import Callable

import pytest

from channels.sandbox import SandboxSender, outbox
from router import bus, events
from router.keys import DISPATCH_GROUP, Keys
from router.settings import Settings
from router.store import Store
from tests.factories import outbound, world
from workers import dispatch
from workers.dispatch import Dispatcher, sequences

KEYS = Keys("acme")


class Crash(BaseException):
    """The dispatcher process dies."""


class Provider:
    """The sandbox behind a test's hand: sends of the bodies in `hold` wait until
    released; `log` says when each send started and ended."""

    def __init__(self, store: Store, *, hold: tuple[str, ...] = (), crash: str = "", barrier: int = 0) -> None:
        self.sandbox = SandboxSender(store, "sms")
        self.channel = "sms"
        self.holds = {body: asyncio.Event() for body in hold}
        self.crash = crash
        self.barrier, self.arrived, self.all_arrived = barrier, 0, asyncio.Event()
        self.log: list[tuple[str, str]] = []
        self.in_flight = self.peak = 0

    @property
    def started(self) -> list[str]:
        return [body for what, body in self.log if what == "start"]

    @property
    def ended(self) -> list[str]:
        return [body for what, body in self.log if what == "end"]

    def release(self, *bodies: str) -> None:
        for body in bodies or tuple(self.holds):
            self.holds[body].set()

    async def send(self, message: events.OutboundMessage) -> str:
        self.log.append(("start", message.body))
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if message.body == self.crash:
                raise Crash
            if message.body in self.holds:
                await self.holds[message.body].wait()
            provider_id = await self.sandbox.send(message)
            if self.barrier:  # every send answers at the same moment
                self.arrived += 1
                if self.arrived == self.barrier:
                    self.all_arrived.set()
                await self.all_arrived.wait()
            return provider_id
        finally:
            self.in_flight -= 1
            self.log.append(("end", message.body))

    async def reconcile(self, message: events.OutboundMessage):
        return await self.sandbox.reconcile(message)


async def until(condition: Callable[[], bool]) -> None:
    """Let the event loop run until the condition holds (a bounded number of turns, no clock)."""
    for _ in range(20_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


async def entries_of(store: Store, messages: list[events.OutboundMessage]) -> list[bus.Entry]:
    found = []
    for message in messages:
        entry_id = await bus.publish(store, KEYS.outbound, message)
        found.append(bus.Entry(KEYS.outbound, entry_id, events.encode(message)))
    return found


async def status_of(store: Store, message: events.OutboundMessage) -> tuple[str, str]:
    status, attempts = await store.redis.hmget(KEYS.delivery(message.id), "status", "attempts")
    return status.decode(), attempts.decode()


async def test_a_batch_is_sent_concurrently_but_never_more_at_once_than_the_limit():
    w = await world()
    messages = [outbound(to=f"+1555123000{i}", body=f"m{i}") for i in range(10)]
    provider = Provider(w.store, hold=tuple(m.body for m in messages))
    dispatcher = Dispatcher(w.store, {"sms": provider}, concurrency=4)
    entries = await entries_of(w.store, messages)
    batch = asyncio.create_task(dispatcher.handle(entries))
    await until(lambda: provider.in_flight == 4)
    for _ in range(200):  # however long they take, no fifth send starts
        await asyncio.sleep(0)
    assert provider.started == ["m0", "m1", "m2", "m3"]
    provider.release()
    assert await batch == set(entries)
    assert provider.peak == 4
    assert sorted(provider.ended) == sorted(m.body for m in messages)
    assert len(await outbox(w.store, "acme")) == 10


async def test_messages_of_one_conversation_go_out_one_after_the_other_while_others_proceed():
    w = await world()
    a1, a2, a3 = (outbound(conversation="c-a", to="+15550000001", body=f"a{i}") for i in (1, 2, 3))
    b1, b2 = (outbound(conversation="c-b", to="+15550000002", body=f"b{i}") for i in (1, 2))
    provider = Provider(w.store, hold=("a1",))
    dispatcher = Dispatcher(w.store, {"sms": provider}, concurrency=8)
    entries = await entries_of(w.store, [a1, b1, a2, b2, a3])
    batch = asyncio.create_task(dispatcher.handle(entries))
    await until(lambda: provider.ended == ["b1", "b2"])  # the other conversation is not held up
    assert provider.started == ["a1", "b1", "b2"]  # a2 waits for a1
    provider.release("a1")
    assert await batch == set(entries)
    conversation_a = [f"{what} {body}" for what, body in provider.log if body.startswith("a")]
    assert conversation_a == ["start a1", "end a1", "start a2", "end a2", "start a3", "end a3"]
    sent = [m.body for _e, _p, m in reversed(await outbox(w.store, "acme"))]
    assert [b for b in sent if b.startswith("a")] == ["a1", "a2", "a3"]
    for message in (a1, a2, a3, b1, b2):
        assert await status_of(w.store, message) == ("sent", "1")


def test_messages_to_one_recipient_or_of_one_conversation_share_a_sequence():
    messages = [
        outbound(conversation="c1", to="+15550000001"),  # 0
        outbound(conversation="c2", to="+15550000002"),  # 1
        outbound(conversation="c1", to="reply.to@another.example", channel="email"),  # 2: c1's, another address
        outbound(to="+15550000002"),  # 3: no conversation, c2's recipient
        outbound(to="+15550000003"),  # 4
        outbound(to="+15550000003"),  # 5
        outbound(to="+15550000003", channel="voice"),  # 6: the same number on another channel
        outbound("globex", conversation="c1", to="+15550000001"),  # 7: another tenant's c1
        outbound(conversation="c3", to="reply.to@another.example", channel="email"),  # 8: joins c1 by address
    ]
    assert sequences(messages) == [[0, 2, 8], [1, 3], [4, 5], [6], [7]]
    assert sequences([]) == []


async def test_a_batchs_leases_and_outcomes_each_travel_in_one_round_trip(monkeypatch):
    w = await world()
    calls: list[list[str]] = []
    names = {id(w.store.scripts.begin_send): "begin_send", id(w.store.scripts.finish_send): "finish_send"}
    real = dispatch.scripts.run_pipelined

    async def counted(redis, batch):
        calls.append([names.get(id(script), "other") for script, _base, _args in batch])
        return await real(redis, batch)

    monkeypatch.setattr(dispatch.scripts, "run_pipelined", counted)
    messages = [outbound(to=f"+1555123000{i}", body=f"m{i}") for i in range(8)]
    provider = Provider(w.store, barrier=8)
    entries = await entries_of(w.store, messages)
    assert await Dispatcher(w.store, {"sms": provider}, concurrency=8).handle(entries) == set(entries)
    assert calls == [["begin_send"] * 8, ["finish_send"] * 8]
    for message in messages:
        assert await status_of(w.store, message) == ("sent", "1")


async def test_an_unexpected_error_in_one_message_holds_back_no_other_in_the_batch():
    w = await world()
    messages = [outbound(to=f"+1555123000{i}", body=f"m{i}") for i in range(3)]

    class Flaky(Provider):
        async def send(self, message):
            if message.body == "m1":
                raise KeyError("segments")
            return await super().send(message)

    entries = await entries_of(w.store, messages)
    assert await Dispatcher(w.store, {"sms": Flaky(w.store)}).handle(entries) == set(entries)
    assert [await status_of(w.store, m) for m in messages] == [("sent", "1"), ("retry", "1"), ("sent", "1")]
    error = await w.store.redis.hget(KEYS.delivery(messages[1].id), "error")
    assert error == b"KeyError: 'segments'"


async def test_a_dispatcher_dying_mid_batch_leaves_every_send_to_be_reconciled_and_sent_once():
    w = await world()
    messages = [outbound(to=f"+1555123000{i}", body=f"m{i}") for i in range(4)]
    provider = Provider(w.store, hold=("m0", "m2", "m3"), crash="m1")
    entries = await entries_of(w.store, messages)
    with pytest.raises(Crash):
        await Dispatcher(w.store, {"sms": provider}, concurrency=4).handle(entries)
    assert [await status_of(w.store, m) for m in messages] == [("sending", "1")] * 4
    assert await outbox(w.store, "acme") == []
    await w.store.redis.zadd(KEYS.retries, {m.id: 0 for m in messages})  # their leases ran out
    survivor = Dispatcher(w.store, lease_ms=0)
    assert await survivor.run_retries("acme") == 4
    assert sorted(m.body for _e, _p, m in await outbox(w.store, "acme")) == ["m0", "m1", "m2", "m3"]
    assert [await status_of(w.store, m) for m in messages] == [("sent", "2")] * 4


async def test_the_concurrency_comes_from_the_environment_and_must_be_positive():
    assert Settings.from_env({}).dispatch_concurrency == 16
    assert Settings.from_env({"CONTACTROUTER_DISPATCH_CONCURRENCY": "64"}).dispatch_concurrency == 64
    with pytest.raises(ValueError, match="at least 1"):
        Dispatcher((await world()).store, concurrency=0)


async def test_a_consumer_on_a_real_redis_delivers_every_conversation_in_order(real_store):
    messages = [outbound(conversation=f"c{i % 5}", to=f"+1555000000{i % 5}", body=f"{i % 5}:{i}") for i in range(40)]
    for message in messages:
        await bus.publish(real_store, KEYS.outbound, message)
    dispatcher = Dispatcher(real_store, concurrency=3)
    consumer = bus.Consumer(real_store, DISPATCH_GROUP, "d1", [KEYS.outbound], dispatcher.handle, batch=16, block_ms=1)
    await consumer.ensure_groups()
    while await consumer.read():
        pass
    await consumer.flush_acks()
    sent = [m.body for _e, _p, m in reversed(await outbox(real_store, "acme", count=100))]
    assert sorted(sent) == sorted(m.body for m in messages)
    for conversation in range(5):
        assert [b for b in sent if b.startswith(f"{conversation}:")] == [
            m.body for m in messages if m.body.startswith(f"{conversation}:")
        ]
    assert (await real_store.redis.xpending(KEYS.outbound, DISPATCH_GROUP))["pending"] == 0
