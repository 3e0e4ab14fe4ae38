"""The sandbox transport: a message is kept in the tenant's outbox once, in one round
trip, even when the client sends the command again after losing its answer."""

from redis.asyncio.connection import Connection

from channels.sandbox import SandboxSender, outbox
from router.keys import Keys
from router.store import Store
from tests.factories import outbound, world

KEYS = Keys("acme")


async def test_a_send_is_one_round_trip(real_store: Store, monkeypatch):
    sender = SandboxSender(real_store, "sms")
    await sender.send(outbound(body="first"))  # loads the script
    original = Connection.send_packed_command
    sent: list[object] = []

    async def counted(self, command, *args, **kwargs):
        sent.append(command)
        return await original(self, command, *args, **kwargs)

    monkeypatch.setattr(Connection, "send_packed_command", counted)
    message = outbound(body="second")
    assert await sender.send(message) == f"sandbox-{message.id}"
    monkeypatch.undo()
    assert len(sent) == 1
    assert [m.body for _id, _pid, m in await outbox(real_store, "acme")] == ["second", "first"]


async def test_a_send_run_again_adds_nothing_and_reconciles_as_sent():
    w = await world()
    sender = SandboxSender(w.store, "sms")
    message = outbound(body="once")
    assert await sender.reconcile(message) == ("not_sent", "")
    assert await sender.send(message) == await sender.send(message) == f"sandbox-{message.id}"
    [(_entry, provider_id, kept)] = await outbox(w.store, "acme")
    assert (provider_id, kept) == (f"sandbox-{message.id}", message)
    assert await sender.reconcile(message) == ("sent", f"sandbox-{message.id}")
