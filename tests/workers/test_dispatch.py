"""Dispatch: outbound messages reach their provider at most once, retried with backoff."""

import pytest

from channels.sandbox import SandboxSender, outbox
from channels.transport import PermanentFailure, TemporaryFailure
from router import agents, bus, events
from router.errors import UnknownTenant
from router.keys import DISPATCH_GROUP, Keys
from router.settings import Settings
from tests.factories import outbound, world
from workers.dispatch import BACKOFF_S, MAX_ATTEMPTS, Dispatcher

KEYS = Keys("acme")


class Crash(BaseException):
    """The dispatcher process dies (here: at a chosen point inside a send). A
    BaseException, as a kill is: nothing in the dispatcher may catch it."""


class ScriptedSender:
    """A sender that fails as told, then hands the message to the sandbox outbox."""

    def __init__(self, store, *failures, after_send=None, reconciled=None):
        self.sandbox = SandboxSender(store, "sms")
        self.channel = "sms"
        self.failures = list(failures)
        self.after_send = after_send
        self.reconciled = reconciled
        self.calls = 0

    async def send(self, message):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        provider_id = await self.sandbox.send(message)
        if self.after_send:
            raise self.after_send
        return provider_id

    async def reconcile(self, message):
        if self.reconciled:
            return self.reconciled
        return await self.sandbox.reconcile(message)


async def queued_entry(store, message) -> bus.Entry:
    entry_id = await bus.publish(store, KEYS.outbound, message)
    return bus.Entry(KEYS.outbound, entry_id, events.encode(message))


async def delivery(store, message) -> dict[str, str]:
    record = await store.redis.hgetall(KEYS.delivery(message.id))
    return {k.decode(): v.decode() for k, v in record.items() if k != b"payload"}


async def statuses(store, message) -> list[tuple[str, int]]:
    rows = await store.redis.xrange(KEYS.events)
    found = [events.decode_state(fields[b"e"]) for _id, fields in rows]
    return [(e.status, e.attempt) for e in found if isinstance(e, events.DeliveryStatus) and e.message == message.id]


async def make_due(store, message) -> None:
    await store.redis.zadd(KEYS.retries, {message.id: 0})


async def test_an_agents_reply_is_delivered_to_the_sandbox_outbox():
    w = await world()
    await w.available("amy")
    conversation = await w.arrive(address="+15551230000")
    await w.accept_offer("amy")
    reply = await agents.reply(w.store, w.tenant, "amy", conversation, "On it!")
    dispatcher = Dispatcher(w.store)
    consumer = bus.Consumer(w.store, DISPATCH_GROUP, "d1", [KEYS.outbound], dispatcher.handle, block_ms=1)
    await consumer.ensure_groups()
    assert await consumer.read() == 1
    [(_entry_id, provider_id, sent)] = await outbox(w.store, "acme")
    assert sent == reply
    assert provider_id == f"sandbox-{reply.id}"
    record = await delivery(w.store, reply)
    assert (record["status"], record["attempts"], record["provider_id"]) == ("sent", "1", provider_id)
    assert await statuses(w.store, reply) == [("sent", 1)]
    assert (await w.store.redis.xpending(KEYS.outbound, DISPATCH_GROUP))["pending"] == 0


async def test_a_redelivered_message_is_not_sent_again():
    w = await world()
    message = outbound(body="only once")
    entry = await queued_entry(w.store, message)
    dispatcher = Dispatcher(w.store)
    assert await dispatcher.handle([entry]) == {entry}
    assert await dispatcher.handle([entry]) == {entry}  # e.g. the ack was lost
    assert len(await outbox(w.store, "acme")) == 1
    assert await statuses(w.store, message) == [("sent", 1)]


async def test_a_message_the_provider_got_before_the_dispatcher_died_is_reconciled_not_resent():
    w = await world()
    message = outbound(body="are you there?")
    entry = await queued_entry(w.store, message)
    dying = Dispatcher(w.store, {"sms": ScriptedSender(w.store, after_send=Crash())})
    with pytest.raises(Crash):
        await dying.deliver(message, entry.payload)
    assert (await delivery(w.store, message))["status"] == "sending"
    survivor = Dispatcher(w.store, lease_ms=0)  # the dead one's lease has run out
    await survivor.handle([entry])  # the entry was never acknowledged: it comes again
    assert len(await outbox(w.store, "acme")) == 1
    record = await delivery(w.store, message)
    assert (record["status"], record["provider_id"], record["attempts"]) == ("sent", f"sandbox-{message.id}", "1")


async def test_a_message_the_provider_never_got_before_the_dispatcher_died_is_sent_once():
    w = await world()
    message = outbound()
    entry = await queued_entry(w.store, message)
    dying = Dispatcher(w.store, {"sms": ScriptedSender(w.store, Crash())})
    with pytest.raises(Crash):
        await dying.deliver(message, entry.payload)
    await Dispatcher(w.store, lease_ms=0).handle([entry])
    assert len(await outbox(w.store, "acme")) == 1
    record = await delivery(w.store, message)
    assert (record["status"], record["attempts"]) == ("sent", "2")


async def test_when_the_provider_cannot_say_whether_it_got_the_message_it_is_not_resent():
    w = await world()
    message = outbound()
    entry = await queued_entry(w.store, message)
    sender = ScriptedSender(w.store, Crash(), reconciled=("unknown", ""))
    with pytest.raises(Crash):
        await Dispatcher(w.store, {"sms": sender}).deliver(message, entry.payload)
    await Dispatcher(w.store, {"sms": sender}, lease_ms=0).handle([entry])
    assert sender.calls == 1
    assert (await delivery(w.store, message))["status"] == "unknown"
    assert await statuses(w.store, message) == [("unknown", 1)]


async def test_a_temporary_failure_is_retried_after_a_backoff_and_then_succeeds():
    w = await world()
    message = outbound(body="rate limited")
    sender = ScriptedSender(w.store, TemporaryFailure("429 too many requests"))
    dispatcher = Dispatcher(w.store, {"sms": sender})
    before = events.now_ms()
    await dispatcher.handle([await queued_entry(w.store, message)])
    after = events.now_ms()
    record = await delivery(w.store, message)
    assert (record["status"], record["error"]) == ("retry", "429 too many requests")
    due = int(await w.store.redis.zscore(KEYS.retries, message.id))
    assert before + BACKOFF_S[0] * 1000 <= due <= after + BACKOFF_S[0] * 1000 + 1
    assert await dispatcher.run_retries("acme") == 0  # not due yet
    assert await outbox(w.store, "acme") == []
    await make_due(w.store, message)
    assert await dispatcher.run_retries("acme") == 1
    assert len(await outbox(w.store, "acme")) == 1
    record = await delivery(w.store, message)
    assert (record["status"], record["attempts"]) == ("sent", "2")
    assert await statuses(w.store, message) == [("retry", 1), ("sent", 2)]
    assert await w.store.redis.zcard(KEYS.retries) == 0


async def test_the_backoff_grows_with_each_attempt():
    w = await world()
    message = outbound()
    sender = ScriptedSender(w.store, TemporaryFailure("busy"), TemporaryFailure("still busy"))
    dispatcher = Dispatcher(w.store, {"sms": sender})
    await dispatcher.handle([await queued_entry(w.store, message)])
    await make_due(w.store, message)
    before = events.now_ms()
    await dispatcher.run_retries("acme")
    due = int(await w.store.redis.zscore(KEYS.retries, message.id))
    assert due >= before + BACKOFF_S[1] * 1000
    assert BACKOFF_S[1] > BACKOFF_S[0]


async def test_temporary_failures_give_up_after_the_last_attempt():
    w = await world()
    message = outbound()
    sender = ScriptedSender(w.store, *[TemporaryFailure("provider down")] * MAX_ATTEMPTS)
    dispatcher = Dispatcher(w.store, {"sms": sender})
    await dispatcher.handle([await queued_entry(w.store, message)])
    for _ in range(MAX_ATTEMPTS - 1):
        await make_due(w.store, message)
        await dispatcher.run_retries("acme")
    assert sender.calls == MAX_ATTEMPTS
    record = await delivery(w.store, message)
    assert record["status"] == "failed"
    assert record["error"].startswith("gave up")
    assert await w.store.redis.zcard(KEYS.retries) == 0
    assert (await statuses(w.store, message))[-1] == ("failed", MAX_ATTEMPTS)


async def test_a_permanent_failure_is_recorded_and_never_retried():
    w = await world()
    message = outbound()
    entry = await queued_entry(w.store, message)
    sender = ScriptedSender(w.store, PermanentFailure("21211 invalid 'To' number"))
    dispatcher = Dispatcher(w.store, {"sms": sender})
    await dispatcher.handle([entry])
    await dispatcher.handle([entry])
    await dispatcher.run_retries("acme")
    assert sender.calls == 1
    record = await delivery(w.store, message)
    assert (record["status"], record["error"]) == ("failed", "21211 invalid 'To' number")
    assert await w.store.redis.zcard(KEYS.retries) == 0
    assert await statuses(w.store, message) == [("failed", 1)]


async def test_a_message_of_a_tenant_no_longer_deployed_is_failed_and_never_retried():
    w = await world()
    message = outbound()
    entry = await queued_entry(w.store, message)
    sender = ScriptedSender(w.store, UnknownTenant("acme", ["globex"]))  # the sender looked the tenant up
    dispatcher = Dispatcher(w.store, {"sms": sender})
    await dispatcher.handle([entry])
    await dispatcher.run_retries("acme")
    assert sender.calls == 1
    record = await delivery(w.store, message)
    assert (record["status"], record["error"]) == ("failed", "unknown tenant 'acme'")
    assert await statuses(w.store, message) == [("failed", 1)]


async def test_a_sent_message_left_in_the_retry_schedule_by_a_crash_is_dropped_from_it_unsent():
    w = await world()
    message = outbound()
    entry = await queued_entry(w.store, message)
    dispatcher = Dispatcher(w.store)
    await dispatcher.handle([entry])
    # A dispatcher died between scheduling a retry and recording that the provider had it after all.
    await make_due(w.store, message)
    await dispatcher.run_retries("acme")
    assert len(await outbox(w.store, "acme")) == 1
    assert await w.store.redis.zcard(KEYS.retries) == 0


async def test_each_tenants_messages_are_kept_apart():
    w = await world()
    dispatcher = Dispatcher(w.store)
    acme, globex = outbound("acme"), outbound("globex")
    await dispatcher.deliver(acme, events.encode(acme))
    await dispatcher.deliver(globex, events.encode(globex))
    assert [m.id for _e, _p, m in await outbox(w.store, "acme")] == [acme.id]
    assert [m.id for _e, _p, m in await outbox(w.store, "globex")] == [globex.id]


async def test_a_send_still_in_flight_is_not_sent_again_by_another_dispatcher():
    w = await world()
    message = outbound(body="slow provider")
    entry = await queued_entry(w.store, message)
    first = Dispatcher(w.store, {"sms": ScriptedSender(w.store, Crash())})
    with pytest.raises(Crash):  # stands for a provider call that has not returned yet
        await first.deliver(message, entry.payload)
    other = ScriptedSender(w.store)
    assert await Dispatcher(w.store, {"sms": other}).deliver(message, entry.payload) == "in_flight"
    assert other.calls == 0
    # and the retry pass of every dispatcher leaves it alone while the lease holds
    assert await Dispatcher(w.store, {"sms": other}).run_retries("acme") == 0
    assert other.calls == 0


async def test_one_undecodable_entry_holds_back_no_other_message():
    w = await world()
    good = [outbound(body=f"reply {i}") for i in range(3)]
    entries = [await queued_entry(w.store, m) for m in good]
    bad_id = await w.store.redis.xadd(KEYS.outbound, {"e": b"\x93not an event"})
    bad = bus.Entry(KEYS.outbound, bad_id.decode(), b"\x93not an event")
    dead: list[str] = []

    async def dead_letter(entry, reason):
        dead.append(entry.id)

    dispatcher = Dispatcher(w.store, dead_letter=dead_letter)
    done = await dispatcher.handle([entries[0], bad, entries[1], entries[2]])
    assert done == {*entries, bad}
    assert dead == [bad.id]
    assert len(await outbox(w.store, "acme")) == 3


async def test_a_retry_whose_dispatcher_crashed_is_reconciled_later_not_stranded():
    w = await world()
    message = outbound(body="second try dies")
    entry = await queued_entry(w.store, message)
    sender = ScriptedSender(w.store, TemporaryFailure("429"), Crash())
    dispatcher = Dispatcher(w.store, {"sms": sender}, lease_ms=0)
    assert await dispatcher.deliver(message, entry.payload) == "retry"
    await make_due(w.store, message)
    with pytest.raises(Crash):
        await dispatcher.deliver(message, entry.payload)
    assert (await delivery(w.store, message))["status"] == "sending"
    # still in the schedule (as a lease), so a later pass finds it, reconciles, and sends once
    assert await dispatcher.run_retries("acme") == 1
    assert (await delivery(w.store, message))["status"] == "sent"
    assert len(await outbox(w.store, "acme")) == 1


async def test_nothing_is_sent_to_a_caller_who_withheld_their_number():
    w = await world()
    message = outbound(channel="voice", to="anonymous:CA0123456789abcdef0123456789abcdef")
    entry = await queued_entry(w.store, message)
    assert await Dispatcher(w.store).handle([entry]) == {entry}
    assert await outbox(w.store, "acme") == []
    assert (await delivery(w.store, message))["status"] == "refused"


class Broken(Exception):
    """Neither a transport exception nor a crash: a sender's bug, a library's own error."""


async def test_an_unexpected_error_before_the_provider_is_retried_with_backoff():
    w = await world()
    message = outbound()
    sender = ScriptedSender(w.store, Broken("template variable missing"))
    dispatcher = Dispatcher(w.store, {"sms": sender})
    entry = await queued_entry(w.store, message)
    before = events.now_ms()
    assert await dispatcher.handle([entry]) == {entry}  # settled for now: the retry schedule has it
    record = await delivery(w.store, message)
    assert (record["status"], record["error"]) == ("retry", "Broken: template variable missing")
    assert int(await w.store.redis.zscore(KEYS.retries, message.id)) >= before + BACKOFF_S[0] * 1000
    await make_due(w.store, message)
    await dispatcher.run_retries("acme")
    assert (await delivery(w.store, message))["status"] == "sent"
    assert await statuses(w.store, message) == [("retry", 1), ("sent", 2)]
    assert len(await outbox(w.store, "acme")) == 1


async def test_unexpected_errors_give_up_after_max_deliveries_attempts():
    w = await world()
    message = outbound()
    sender = ScriptedSender(w.store, *[Broken(f"bug {i}") for i in range(10)])
    dispatcher = Dispatcher(w.store, {"sms": sender}, max_deliveries=3)
    entry = await queued_entry(w.store, message)
    assert await dispatcher.handle([entry]) == {entry}
    for _ in range(5):  # more passes than attempts allowed
        await make_due(w.store, message)
        await dispatcher.run_retries("acme")
    assert sender.calls == 3
    record = await delivery(w.store, message)
    assert (record["status"], record["attempts"]) == ("failed", "3")
    assert record["error"] == "gave up after 3 attempts: Broken: bug 2"
    assert await statuses(w.store, message) == [("retry", 1), ("retry", 2), ("failed", 3)]
    assert await w.store.redis.zcard(KEYS.retries) == 0
    assert await outbox(w.store, "acme") == []


async def test_the_worker_takes_the_limit_from_its_settings():
    w = await world()
    message = outbound()
    sender = ScriptedSender(w.store, Broken("once"))
    dispatcher = Dispatcher(w.store, {"sms": sender}, max_deliveries=Settings.from_env({}).max_deliveries)
    await dispatcher.deliver(message, events.encode(message))
    assert dispatcher.max_deliveries == 5
    one = Dispatcher(w.store, {"sms": ScriptedSender(w.store, Broken("at once"))}, max_deliveries=1)
    other = outbound()
    assert await one.deliver(other, events.encode(other)) == "failed"
    assert (await delivery(w.store, other))["error"] == "gave up after 1 attempts: Broken: at once"


async def test_an_unexpected_error_after_the_provider_got_the_message_records_it_sent_not_resent():
    w = await world()
    message = outbound()
    sender = ScriptedSender(w.store, after_send=Broken("answer parsing failed"))
    dispatcher = Dispatcher(w.store, {"sms": sender})
    assert await dispatcher.deliver(message, events.encode(message)) == "sent"
    await make_due(w.store, message)
    await dispatcher.run_retries("acme")
    assert sender.calls == 1
    record = await delivery(w.store, message)
    assert (record["status"], record["provider_id"]) == ("sent", f"sandbox-{message.id}")


async def test_an_unexpected_error_while_the_provider_may_have_the_message_is_never_resent():
    w = await world()
    message = outbound()
    sender = ScriptedSender(w.store, Broken("connection reset"), reconciled=("unknown", ""))
    dispatcher = Dispatcher(w.store, {"sms": sender})
    assert await dispatcher.deliver(message, events.encode(message)) == "unknown"
    await make_due(w.store, message)
    await dispatcher.run_retries("acme")
    assert sender.calls == 1
    assert (await delivery(w.store, message))["error"] == "Broken: connection reset; provider outcome unknown"


async def test_an_unexpected_errors_text_keeps_no_url_or_secret_and_stays_short(caplog):
    w = await world()
    message = outbound()
    token = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
    noisy = Broken(
        f"401 Unauthorized for url 'https://api.telegram.org/bot{token}/sendMessage' "
        f"password=hunter2 api_key: sk_live_abc {'x' * 500}\nTraceback body: {token}"
    )
    sender = ScriptedSender(w.store, noisy, noisy)
    dispatcher = Dispatcher(w.store, {"sms": sender}, max_deliveries=2)
    await dispatcher.deliver(message, events.encode(message))
    await make_due(w.store, message)
    await dispatcher.run_retries("acme")
    record = await delivery(w.store, message)
    assert record["status"] == "failed"
    rows = await w.store.redis.xrange(KEYS.events)
    recorded = [record["error"], *(e.error for e in map(events.decode_state, (f[b"e"] for _i, f in rows)))]
    for text in [*recorded, caplog.text]:
        for secret in ("api.telegram.org", "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", "hunter2", "sk_live_abc", "Traceback"):
            assert secret not in text
    assert record["error"].startswith("gave up after 2 attempts: Broken: 401 Unauthorized for url '<url>")
    assert len(record["error"]) < 250


async def test_a_message_whose_dispatcher_dies_every_time_is_failed_after_max_deliveries():
    w = await world()
    message = outbound()
    entry = await queued_entry(w.store, message)
    sender = ScriptedSender(w.store, Crash(), Crash(), Crash(), Crash())  # it kills its dispatcher (say, out of memory)
    with pytest.raises(Crash):
        await Dispatcher(w.store, {"sms": sender}).deliver(message, entry.payload)
    survivor = Dispatcher(w.store, {"sms": sender}, lease_ms=0, max_deliveries=3)
    for _ in range(2):  # reconciled (never sent), so tried again: and it dies again
        await make_due(w.store, message)
        with pytest.raises(Crash):
            await survivor.run_retries("acme")
    await make_due(w.store, message)
    await survivor.run_retries("acme")
    assert sender.calls == 3
    record = await delivery(w.store, message)
    assert (record["status"], record["error"]) == ("failed", "gave up after 3 attempts: the dispatcher died mid-send")
    assert await statuses(w.store, message) == [("retry", 1), ("retry", 2), ("failed", 3)]
    assert await w.store.redis.zcard(KEYS.retries) == 0
