"""Do-not-call as a closing disposition of a campaign conversation: the number goes on the
tenant's do-not-contact list with the close, as the conversation's button puts it, the
results count it and the per-recipient export shows it."""

from __future__ import annotations

import pytest

from router import agents
from router.campaigns import registry
from router.keys import Keys
from tests.factories import world
from tests.workers.campaigns import create_campaign
from tests.workers.test_campaign_results import AUDIENCE, CAMPAIGN, DEPLOYMENT, NOON_NY, follow
from workers.campaigns import export
from workers.campaigns.worker import CampaignWorker

WITH_DNC = DEPLOYMENT.replace('"converted"]', '"converted", "do_not_call"]')
KEYS = Keys("acme")


async def test_closing_with_do_not_call_puts_the_number_on_the_list_and_the_export_shows_it():
    w = await world(WITH_DNC)
    await create_campaign(w, CAMPAIGN, AUDIENCE)
    assert await CampaignWorker(w.store, w.deployment, clock=lambda: NOON_NY).step() == 1
    conversation = await w.arrive(address="+12125550000", body="Stop calling me")
    await w.available("amy")
    assert await w.accept_offer("amy") == conversation
    await agents.close(w.store, w.tenant, "amy", conversation, "do_not_call")
    assert await w.store.redis.sismember(KEYS.do_not_contact, "+12125550000")
    await follow(w)
    [row] = [r async for r in export.rows(w.store, "acme", "dues") if r.phone == "+12125550000"]
    assert row.disposition == "do_not_call"
    assert (await registry.progress(w.store, "acme", "dues")).dispositions == {"do_not_call": 1}


async def test_do_not_call_needs_a_phone_number():
    w = await world(WITH_DNC)
    conversation = await w.arrive(channel="email", address="jane@example.com", body="Stop")
    await w.available("amy")
    assert await w.accept_offer("amy") == conversation
    with pytest.raises(agents.AgentError, match="no phone number"):
        await agents.close(w.store, w.tenant, "amy", conversation, "do_not_call")
    assert await w.store.redis.scard(KEYS.do_not_contact) == 0
