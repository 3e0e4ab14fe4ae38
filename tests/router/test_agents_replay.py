"""The store's client sends a script again when its answer was lost. The repeat of a
close or a transfer that did happen answers "already_closed" or "not_assigned": the
agent must hear that their action succeeded, and what follows it must still be done."""

import pytest

from router import agents, conversations, events, queues
from router.agents import AgentError
from router.store import Store
from tests.factories import PROMISE, World, deployment, world
from tests.router.test_agents import CENTRE, assigned_to_amy
from tests.router.test_store_retries import lose_one_answer


def run_twice(monkeypatch: pytest.MonkeyPatch, store, name: str, first_args=None) -> None:
    """The script runs, its answer is lost, the client runs it again: the caller hears
    the second answer. `first_args` makes the first run another caller's (a race)."""
    script = store.scripts._scripts[name]

    async def replayed(keys, args, client=None):
        await script(keys=keys, args=first_args(args) if first_args else args)
        return await script(keys=keys, args=args)

    monkeypatch.setitem(store.scripts._scripts, name, replayed)


async def kinds(w, kind: type) -> list:
    return [e for e in await w.events() if isinstance(e, kind)]


async def test_a_close_whose_answer_was_lost_is_reported_closed():
    w = await world(CENTRE)
    conversation = await assigned_to_amy(w)
    with pytest.MonkeyPatch.context() as patch:
        run_twice(patch, w.store, "close")
        await agents.close(w.store, w.tenant, "amy", conversation, "promise_to_pay", **PROMISE)
    record = await conversations.get(w.store, "acme", conversation)
    assert (record["state"], record["agent"], record["disposition"]) == ("closed", "amy", "promise_to_pay")
    assert len(await kinds(w, events.Closed)) == 1


async def test_a_close_that_lost_a_race_to_another_disposition_is_refused():
    w = await world(CENTRE)
    conversation = await assigned_to_amy(w)
    with pytest.MonkeyPatch.context() as patch:
        # a supervisor closed it "resolved" between amy's check and her script
        run_twice(patch, w.store, "close", first_args=lambda args: [args[0], "", "resolved", args[3]])
        with pytest.raises(AgentError, match="already closed"):
            await agents.close(w.store, w.tenant, "amy", conversation, "promise_to_pay", **PROMISE)
    assert (await conversations.get(w.store, "acme", conversation))["disposition"] == "resolved"


async def test_a_transfer_to_a_colleague_whose_answer_was_lost_is_reported_offered():
    w = await world(CENTRE)
    conversation = await assigned_to_amy(w)
    await w.available("zoe")
    with pytest.MonkeyPatch.context() as patch:
        run_twice(patch, w.store, "transfer")
        outcome = await agents.transfer(w.store, w.tenant, "amy", conversation, to_agent="zoe", note="VIP")
    assert outcome == "offered"
    [offer] = await agents.offers(w.store, w.tenant, "zoe")
    assert offer["conv"] == conversation
    notes = [e.body for e in await conversations.history(w.store, "acme", conversation) if e.kind == "note"]
    assert notes == ["Transfer note: VIP"]  # the note travels once, though the script ran twice


async def test_a_transfer_to_a_queue_whose_answer_was_lost_is_queued_and_offered_on():
    w = await world(CENTRE)
    conversation = await assigned_to_amy(w)
    await w.available("bill")
    with pytest.MonkeyPatch.context() as patch:
        run_twice(patch, w.store, "transfer")
        outcome = await agents.transfer(w.store, w.tenant, "amy", conversation, to_queue="billing")
    assert outcome == "queued"
    [offer] = await agents.offers(w.store, w.tenant, "bill")  # the queue was routed after the move
    assert offer["conv"] == conversation
    assert len(await kinds(w, events.Transferred)) == 1


async def test_a_transfer_that_lost_a_race_to_another_queue_is_still_refused():
    w = await world(CENTRE)
    conversation = await assigned_to_amy(w)
    with pytest.MonkeyPatch.context() as patch:
        # a supervisor moved it to support first: amy's "not_assigned" is a real refusal
        run_twice(patch, w.store, "transfer", first_args=lambda args: [args[0], "", "", "support", *args[4:]])
        with pytest.raises(AgentError, match="not assigned"):
            await agents.transfer(w.store, w.tenant, "amy", conversation, to_queue="billing")
    assert (await conversations.get(w.store, "acme", conversation))["queue"] == "support"


async def test_on_a_real_redis_a_transfer_whose_answer_was_lost_is_queued_once(real_store: Store, monkeypatch):
    """The client's own retry, not a simulation of it: Redis ran the script, the answer
    never arrived, the client sent it again."""
    config = deployment(CENTRE)
    await queues.apply_tenant(real_store, config.tenants[0])
    w = World(real_store, config)
    conversation = await assigned_to_amy(w)
    lost = lose_one_answer(monkeypatch, lambda answer: answer == [b"queued", b"billing"])
    outcome = await agents.transfer(w.store, w.tenant, "amy", conversation, to_queue="billing", note="refund")
    monkeypatch.undo()
    assert lost and outcome == "queued"
    assert len(await kinds(w, events.Transferred)) == 1
    notes = [e.body for e in await conversations.history(w.store, "acme", conversation) if e.kind == "note"]
    assert notes == ["Transfer note: refund"]
