"""Sticky routing holds a returning customer for their last agent, but never
longer than that agent can use it, and never in front of other customers."""

from __future__ import annotations

from router import agents
from tests.factories import World, world

STICKY = """
[[tenants]]
id = "acme"

[[tenants.queues]]
id = "support"
strategy = "sticky"
sticky_seconds = 600

[[tenants.agents]]
id = "amy"
capacity = { sms = 1 }

[[tenants.agents]]
id = "zoe"
capacity = { sms = 5 }
"""


async def _served_by_amy(w: World, address: str) -> None:
    await w.arrive(address=address)
    [offer] = await w.offers("amy")
    await agents.accept(w.store, w.tenant, "amy", offer["reservation"])
    await agents.close(w.store, w.tenant, "amy", offer["conv"], "resolved")


async def test_when_the_held_for_agent_rejects_another_agent_gets_it_at_once() -> None:
    w = await world(STICKY)
    await w.available("amy")
    await _served_by_amy(w, "+15551230000")
    again = await w.arrive(address="+15551230000", body="me again")
    [offer] = await w.offers("amy")
    await w.available("zoe")
    assert await w.offered("zoe") == []  # still held for amy while she is offered it
    await agents.reject(w.store, w.tenant, "amy", offer["reservation"])
    assert await w.offered("zoe") == [again]


async def test_contacts_held_for_a_busy_agent_do_not_hide_a_new_customer() -> None:
    w = await world(STICKY)
    await w.available("amy")
    returning = [f"+1555123{i:04d}" for i in range(55)]
    for address in returning:
        await _served_by_amy(w, address)
    await w.arrive(address="+15559990001")  # takes amy's one sms slot
    for address in returning:
        await w.arrive(address=address, body="back again")  # each held for amy
    newcomer = await w.arrive(address="+15559990002")
    await w.available("zoe")
    assert await w.offered("zoe") == [newcomer]
