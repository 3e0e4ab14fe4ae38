"""Each agent's figures on a campaign, from the events the results follower reads:
connects (offers of the campaign's conversations accepted), right-party contacts (closed
with any disposition but a wrong number), promises to pay and their amounts, talk time
(from the accept to the close) and wrap-up time (from the close to the end of wrap-up).
Each event counts once (campaign_agent_figures.lua), so a follower reading it again, or
two followers, change nothing.
"""

from __future__ import annotations

import decimal

import msgspec

from router import atomic, events
from router.keys import Keys
from router.store import Store, text
from workers.campaigns.ids import parse_conversation_id

MARKER_MS = 8 * 86_400_000  # longer than the events stream keeps an unread entry pending
FIGURES = ("connects", "right_party", "promises", "promised_cents", "talk_ms", "wrap_ms")


class AgentFigures(msgspec.Struct, frozen=True, kw_only=True):
    agent: str
    connects: int = 0
    right_party: int = 0
    promises: int = 0
    promised_cents: int = 0
    talk_ms: int = 0
    wrap_ms: int = 0


async def apply(store: Store, tenant: str, event: events.StateEvent) -> None:
    """Count an accept, close or end of wrap-up of a campaign conversation for its agent."""
    if isinstance(event, events.Accepted):
        kind, agent = "accepted", event.agent
    elif isinstance(event, events.Closed) and event.agent:
        kind, agent = "closed", event.agent
    elif isinstance(event, events.WrappedUp):
        kind, agent = "wrapped_up", event.agent
    else:
        return
    parsed = parse_conversation_id(event.conversation)
    if parsed is None:
        return
    keys = Keys(tenant)
    disposition, cents = "", 0
    if kind == "closed":
        disposition = event.disposition
        if disposition == "promise_to_pay":
            amount = await store.redis.hget(keys.conversation(event.conversation), "promise_amount")
            cents = _cents(text(amount or b""))
    await atomic.campaign_agent_figures(
        store,
        tenant,
        figures=keys.campaign_agent_figures(parsed[0]),
        marker=keys.seen(f"agent-figures:{kind}", f"{event.conversation}:{event.occurred_at}"),
        ttl=MARKER_MS,
        kind=kind,
        agent=agent,
        conversation=event.conversation,
        at=event.occurred_at,
        disposition=disposition,
        cents=cents,
    )


async def per_agent(store: Store, tenant: str, campaign: str) -> list[AgentFigures]:
    """Every agent with a figure on the campaign, by id."""
    raw = await store.redis.hgetall(Keys(tenant).campaign_agent_figures(campaign))
    found: dict[str, dict[str, int]] = {}
    for field, value in raw.items():
        agent, _, figure = text(field).rpartition(":")
        if figure in FIGURES and agent and not agent.startswith(("start:", "closed:")):
            found.setdefault(agent, {})[figure] = int(value)
    return [AgentFigures(agent=agent, **figures) for agent, figures in sorted(found.items())]


def _cents(amount: str) -> int:
    try:
        return int(decimal.Decimal(amount) * 100) if amount else 0
    except decimal.InvalidOperation:
        return 0
