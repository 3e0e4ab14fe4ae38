"""Each agent's figures on a campaign (workers/campaigns/agent_figures.py), as the results
follower counts them from the events: connects, right-party contacts, promises to pay and
their amounts, talk and wrap-up time; each event once."""

from __future__ import annotations

from router import agents
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
