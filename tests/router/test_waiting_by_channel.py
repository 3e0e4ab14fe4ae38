"""A backlog on one channel never hides the conversations of another behind it."""

from __future__ import annotations

from router import assign
from tests.factories import world

VOICE_AND_EMAIL = """
[[tenants]]
id = "acme"
entry = { default = "support" }

[[tenants.queues]]
id = "support"

[[tenants.agents]]
id = "amy"
capacity = { voice = 1, email = 0, total = 1 }

[[tenants.agents]]
id = "zoe"
capacity = { voice = 0, email = 5, total = 5 }
"""


async def test_email_behind_a_long_voice_backlog_is_offered() -> None:
    w = await world(VOICE_AND_EMAIL)
    calls = [await w.arrive(channel="voice", address=f"+1555123{i:04d}", ago=60) for i in range(assign.LOOKAHEAD + 10)]
    email = await w.arrive(channel="email", address="jane@example.com")
    await w.available("zoe")  # only an email agent comes online
    assert await w.offered("zoe") == [email]
    assert (await w.waiting("support"))[: len(calls)] == calls


async def test_freed_voice_agent_takes_the_oldest_call_even_after_many_emails() -> None:
    w = await world(VOICE_AND_EMAIL)
    for i in range(assign.LOOKAHEAD + 10):
        await w.arrive(channel="email", address=f"c{i}@example.com", ago=120)
    call = await w.arrive(channel="voice", address="+15551230000")
    await w.available("amy")
    assert await w.offered("amy") == [call]
