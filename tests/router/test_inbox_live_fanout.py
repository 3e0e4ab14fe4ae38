"""The inbox's live feed puts a notice only in the queues of the sockets it concerns: the
agents it names and the tenant's supervisors, so a tenant's other agents' sockets are not
woken for it (with hundreds of agents on one web process, that wake-up was most of the
process's work: `python -m ops.bench desk`)."""

from __future__ import annotations

import asyncio

from router import events
from router.app.inbox import live
from router.keys import Keys
from tests.factories import World, world


def offer_to(agent: str) -> events.Reserved:
    return events.Reserved(
        tenant="acme", occurred_at=1, reservation="c1.1", agent=agent, queue="support", conversation="c1"
    )


async def until_read(w: World, queue: asyncio.Queue, event: events.Reserved) -> None:
    """Add the event to acme's stream until `queue` gets it: the feed starts at the stream's end."""
    async with asyncio.timeout(5):
        while queue.empty():
            await w.store.redis.xadd(Keys("acme").events, {"e": events.encode(event)})
            await asyncio.sleep(0.05)


async def test_a_notice_reaches_the_queues_of_the_agent_it_names_and_of_the_supervisors_only():
    w = await world()
    hub = live.Hub(w.store)
    amy, zoe, supervisor = asyncio.Queue(), asyncio.Queue(), asyncio.Queue()
    hub.subscribe("acme", amy, "amy")
    hub.subscribe("acme", zoe, "zoe")
    hub.subscribe("acme", supervisor)  # no agent: every notice of the tenant
    try:
        await until_read(w, supervisor, offer_to("amy"))
    finally:
        await hub.close()
    # one notice is put in every queue it is for at once: amy's holds it now, and zoe's never will
    assert amy.get_nowait().payload["agent"] == "amy"
    assert zoe.empty()


async def test_a_socket_that_left_gets_nothing_more():
    w = await world()
    hub = live.Hub(w.store)
    left, supervisor = asyncio.Queue(), asyncio.Queue()
    hub.subscribe("acme", left, "amy")
    hub.subscribe("acme", supervisor)
    hub.unsubscribe("acme", left)
    try:
        await until_read(w, supervisor, offer_to("amy"))
    finally:
        await hub.close()
    assert left.empty()
