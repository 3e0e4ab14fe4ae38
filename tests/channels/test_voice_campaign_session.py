"""An agent-paced campaign's session (router/campaigns/session.py): the agents who joined
are the ones the dialler dials for, leaving takes them out, and the time they wait between
calls counts in their figures beside talk and wrap-up."""

from __future__ import annotations

import pytest

from router import agents, events
from router.campaigns import dial_state, session
from router.campaigns.model import CampaignError
from tests.channels.test_voice_campaign import KEYS
from tests.channels.test_voice_campaign_preview import previews  # noqa: F401 (the fixture)
from workers.campaigns import agent_figures, preview
from workers.campaigns.results import Results

MINUTE = 60


async def test_only_members_of_the_campaigns_queue_join_and_the_page_lists_it_for_them(previews):  # noqa: F811
    w = previews.w
    [(campaign, joined)] = await session.workable(w.store, w.tenant, "amy")
    assert (campaign.id, joined) == ("dues", False)
    await session.join(w.store, w.tenant, "dues", "amy", events.now_ms())
    assert [(c.id, j) for c, j in await session.workable(w.store, w.tenant, "amy")] == [("dues", True)]
    await w.store.redis.zrem(KEYS.members("collections", 0), "bob")
    with pytest.raises(CampaignError, match="not an agent of its queue"):
        await session.join(w.store, w.tenant, "dues", "bob", events.now_ms())


async def test_joining_makes_the_agent_available_and_the_dialler_counts_only_those_who_joined(previews):  # noqa: F811
    w = previews.w
    await agents.set_presence(w.store, w.tenant, "amy", "away")
    assert await dial_state.agents(w.store, "acme", "collections", "dues") == (1, 0)  # nobody joined: bob
    await session.join(w.store, w.tenant, "dues", "amy", events.now_ms())
    assert (await agents.status(w.store, w.tenant, "amy"))["presence"] == "available"
    assert await dial_state.agents(w.store, "acme", "collections", "dues") == (1, 0)  # amy only, not bob
    assert await session.leave(w.store, w.tenant, "dues", "amy", events.now_ms())
    await session.join(w.store, w.tenant, "dues", "bob", events.now_ms())
    assert await session.members(w.store, "acme", "dues") == {"bob"}


async def test_a_paused_campaign_cannot_be_joined(previews):  # noqa: F811
    from router.campaigns import registry

    await registry.change(previews.w.store, "acme", "dues", "pause")
    with pytest.raises(CampaignError, match="paused"):
        await session.join(previews.w.store, previews.w.tenant, "dues", "amy", events.now_ms())


async def test_wait_time_runs_from_joining_to_the_accept_and_from_the_end_of_the_call_to_leaving(previews):  # noqa: F811
    w, clock = previews.w, previews.clock
    await session.join(w.store, w.tenant, "dues", "bob", events.now_ms())
    clock.forward(3 * MINUTE)  # waiting
    await preview.current(w.store, "acme", "dues", "bob")
    await preview.dial(previews.worker, w.store, "acme", "dues", "bob", 1)
    await previews.dispatch()
    await previews.answered_by("human")
    await previews.route()
    assert await w.accept_offer("bob") == "cmp-dues-1"
    clock.forward(2 * MINUTE)  # talking
    promise = {"promise_amount": "50", "promise_date": "2027-06-10"}
    await agents.close(w.store, w.tenant, "bob", "cmp-dues-1", "promise_to_pay", **promise)
    clock.forward(MINUTE)  # the queue has no wrap-up: free, so waiting, from the close
    await agents.end_wrapup(w.store, w.tenant, "bob", "cmp-dues-1")
    clock.forward(4 * MINUTE)  # waiting still, then gone
    results = Results(w.store)
    for event in await w.events():  # the results follower, as the events come
        await results.apply("acme", event)
    await session.leave(w.store, w.tenant, "dues", "bob", events.now_ms())
    [bob] = [f for f in await agent_figures.per_agent(w.store, "acme", "dues") if f.agent == "bob"]
    seconds = lambda ms: round(ms / 1000 / MINUTE)  # noqa: E731 (the real clock ticks too: whole minutes)
    assert (seconds(bob.wait_ms), seconds(bob.talk_ms)) == (3 + 1 + 4, 2)
    assert bob.connects == 1


async def test_leaving_gives_the_recipient_being_previewed_back_to_the_list_at_once(previews):  # noqa: F811
    w = previews.w
    await session.join(w.store, w.tenant, "dues", "amy", events.now_ms())
    assert (await preview.current(w.store, "acme", "dues", "amy")).seq == 1
    await session.leave(w.store, w.tenant, "dues", "amy", events.now_ms())
    assert await w.store.redis.zscore(KEYS.campaign_due("dues"), "1") <= events.now_ms()  # due, not amy's lease
    assert [(await preview.current(w.store, "acme", "dues", agent)).seq for agent in ("bob", "amy")] == [2, 1]
