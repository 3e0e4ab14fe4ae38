"""Each agent's figures on a campaign (workers/campaigns/agent_figures.py), as the results
follower counts them from the events: connects, right-party contacts, promises to pay and
their amounts, talk and wrap-up time; each event once."""

from __future__ import annotations

from router import agents
from router.campaigns import session
from router.keys import Keys
from tests.factories import PROMISE, World, world
from tests.workers.campaigns import Clock, create_campaign
from tests.workers.test_campaign_results import AUDIENCE, CAMPAIGN, DEPLOYMENT, NOON_NY, follow
from workers.campaigns import agent_figures
from workers.campaigns.agent_figures import AgentFigures
from workers.campaigns.worker import CampaignWorker

DEPLOYMENT = DEPLOYMENT.replace('"converted"]', '"converted", "wrong_number"]')
WRAPPING = DEPLOYMENT.replace('id = "collections"', 'id = "collections"\nwrapup_seconds = 60')


async def sent_world(deployment: str = DEPLOYMENT) -> tuple[World, CampaignWorker]:
    w = await world(deployment)
    await create_campaign(w, CAMPAIGN, AUDIENCE)
    worker = CampaignWorker(w.store, w.deployment, clock=lambda: NOON_NY)
    assert await worker.step() == 1
    return w, worker


async def test_a_promise_counts_for_the_agent_with_its_talk_and_wrap_up_time():
    with Clock(NOON_NY) as clock:
        w, _worker = await sent_world(WRAPPING)
        conversation = await w.arrive(address="+12125550000", body="I can pay")
        await w.available("amy")
        assert await w.accept_offer("amy") == conversation
        clock.forward(95)
        await agents.close(w.store, w.tenant, "amy", conversation, "promise_to_pay", **PROMISE)
        clock.forward(20)
        assert await agents.end_wrapup(w.store, w.tenant, "amy", conversation)
        await follow(w)
        await follow(w)  # the follower reading the events again counts nothing twice
    [amy] = await agent_figures.per_agent(w.store, "acme", "dues")
    assert amy == AgentFigures(
        agent="amy", connects=1, right_party=1, promises=1, promised_cents=12050, talk_ms=95_000, wrap_ms=20_000
    )


async def test_a_wrong_number_is_a_connect_but_no_right_party_contact():
    w, _worker = await sent_world()
    conversation = await w.arrive(address="+12125550000", body="who is this?")
    await w.available("amy")
    assert await w.accept_offer("amy") == conversation
    await agents.close(w.store, w.tenant, "amy", conversation, "wrong_number")
    await follow(w)
    [amy] = await agent_figures.per_agent(w.store, "acme", "dues")
    assert (amy.connects, amy.right_party, amy.promises) == (1, 0, 0)


async def test_a_conversation_of_no_campaign_counts_for_no_campaign():
    w, _worker = await sent_world()
    conversation = await w.arrive(address="+15550009999", body="hello")
    await w.available("amy")
    assert await w.accept_offer("amy") == conversation
    await agents.close(w.store, w.tenant, "amy", conversation, "resolved")
    await follow(w)
    assert await agent_figures.per_agent(w.store, "acme", "dues") == []


async def test_an_agent_in_the_session_waits_from_the_end_of_wrap_up_not_from_the_close():
    with Clock(NOON_NY) as clock:
        w, _worker = await sent_world(WRAPPING)
        keys = Keys("acme")
        # in the campaign's session (router/campaigns/session.py joins only agent-paced campaigns)
        await w.store.redis.sadd(keys.campaign_session("dues"), "amy")
        await w.store.redis.hset(keys.campaign_agent_figures("dues"), "waiting:amy", int(clock.now * 1000))
        clock.forward(30)  # waiting
        conversation = await w.arrive(address="+12125550000", body="I can pay")
        await w.available("amy")
        assert await w.accept_offer("amy") == conversation
        clock.forward(95)
        await agents.close(w.store, w.tenant, "amy", conversation, "resolved")
        clock.forward(20)  # wrap-up: not waiting
        assert await agents.end_wrapup(w.store, w.tenant, "amy", conversation)
        await follow(w)
        clock.forward(10)  # waiting again, then she leaves
        await session.leave(w.store, w.tenant, "dues", "amy", int(clock.now * 1000))
    [amy] = await agent_figures.per_agent(w.store, "acme", "dues")
    assert (amy.wait_ms, amy.talk_ms, amy.wrap_ms) == (40_000, 95_000, 20_000)
