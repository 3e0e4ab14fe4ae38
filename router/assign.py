"""The reservation decision: offer waiting conversations to agents.

Thin wrappers over the atomic scripts; every decision is one script call on
the shard, so routing workers can run in any number.
"""

from __future__ import annotations

from router import atomic
from router.keys import Keys
from router.store import Store, text

LOOKAHEAD = 50  # waiting conversations examined per queue and decision


def conversation_of(reservation: str) -> str:
    """A reservation's conversation: its id is the conversation's and a count (conv.N)."""
    return reservation.rpartition(".")[0]


async def assign_queue(store: Store, tenant: str, queue: str) -> list[str]:
    """Offer a queue's best waiting conversations to ready agents; returns the agents offered."""
    return await atomic.assign_queue(store, tenant, queue=queue, lookahead=LOOKAHEAD)


async def assign_agent(store: Store, tenant: str, agent: str) -> int:
    """Offer an agent with free capacity the best waiting conversations of their queues."""
    return await atomic.assign_agent(store, tenant, agent=agent, lookahead=LOOKAHEAD)


async def respond(
    store: Store, tenant: str, reservation: str, action: str, agent: str, max_missed: int
) -> tuple[str, str, str, str]:
    """Accept, reject or time out a reservation; returns (state, queue, agent, the
    conversation's kind: message, call, callback, voicemail).

    The state is the reservation's state after the call: a second answer to the
    same offer gets the first answer's state back and changes nothing.
    """
    keys = Keys(tenant)
    state, queue, holder, kind = await atomic.respond(
        store, tenant, reservation=reservation, action=action, by=agent, max_missed=max_missed
    )
    if state in ("rejected", "timed_out") and action != "accept":
        if action == "timeout" and await store.redis.hget(keys.agent(holder), "presence") == b"away":
            # Set away for missed offers: hand back the offers they still hold
            # now, rather than letting each of those customers wait out its timer.
            for other in await pending_offers(store, tenant, holder):
                await respond(store, tenant, other, "reject", holder, max_missed)
        # The conversation is waiting again and the agent may have room.
        await assign_queue(store, tenant, queue)
        await assign_agent(store, tenant, holder)
    return state, queue, holder, kind


async def pending_offers(store: Store, tenant: str, agent: str) -> list[str]:
    """The reservations an agent holds and has not answered."""
    keys = Keys(tenant)
    found = []
    for conversation in await store.redis.smembers(keys.agent_work(agent)):
        state, holder, reservation = await store.redis.hmget(
            keys.conversation(text(conversation)), "state", "agent", "reservation"
        )
        if state == b"reserved" and holder == agent.encode() and reservation:
            found.append(text(reservation))
    return found
