"""Callbacks a customer asked for on a campaign call, dialled at their time to the agent
they spoke to (workers/campaigns/callback_dialler.py): when that agent is free their
phone rings first, then the customer's number; while they are away it waits on their list
and is never given to another agent; each is judged again at that moment."""

from __future__ import annotations

import datetime as dt

from channels.voice import softphone
from router import agents, conversations
from router.campaigns import callbacks, registry
from tests.channels.test_voice_campaign import KEYS, NOON_NY
from tests.channels.test_voice_campaign_preview import previews  # noqa: F401 (the fixture)
from workers.campaigns import callback_dialler, preview

DUE = dt.datetime(2027, 6, 1, 18, 0, tzinfo=dt.UTC)  # 14:00 in New York, the customer's time


async def spoke_and_asked(c) -> None:
    """Bob's preview call reaches Jane, who asks to be called back at 14:00 her time."""
    w = c.w
    await preview.current(w.store, "acme", "dues", "bob")
    await preview.dial(c.worker, w.store, "acme", "dues", "bob", 1)
    await c.dispatch()
    await c.answered_by("human")
    await c.route()
    assert await w.accept_offer("bob") == "cmp-dues-1"
    record = await conversations.get(w.store, "acme", "cmp-dues-1")
    await callbacks.schedule(w.store, "acme", "America/New_York", record, "bob", "2027-06-01T14:00", NOON_NY)


async def dials(c) -> list:
    return [m for m, _payload in await c.queued() if m.metadata.get("action") == softphone.DIAL]


async def test_at_its_time_the_callback_rings_the_agent_then_the_customer(previews):  # noqa: F811
    await spoke_and_asked(previews)
    store, deployment = previews.w.store, previews.w.deployment
    assert await callback_dialler.dial_due(store, deployment, DUE - dt.timedelta(minutes=1)) == 0  # not yet
    previews.clock.to(DUE + dt.timedelta(seconds=5))
    assert await callback_dialler.dial_due(store, deployment, DUE + dt.timedelta(seconds=5)) == 1
    [call] = await dials(previews)
    assert (call.to, call.agent, call.conversation) == ("+12125550000", "bob", "cmp-dues-1")
    assert call.metadata["agent"] == "bob"  # the agent the customer asked for, not amy
    assert call.metadata["agent_phone"] == "+15557770002"  # his phone rings first, then Jane's number
    await previews.dispatch()
    assert [r.form.get("To") for r in previews.api.requests if r.path.endswith("/Calls.json")][-1] == "+15557770002"
    assert await store.redis.zcard(KEYS.agent_campaign_callbacks("bob")) == 0  # off the list: dialled
    assert await callback_dialler.dial_due(store, deployment, DUE + dt.timedelta(seconds=6)) == 0  # once


async def test_while_the_agent_is_away_it_waits_for_them_and_no_one_else_gets_it(previews):  # noqa: F811
    await spoke_and_asked(previews)
    w = previews.w
    await agents.set_presence(w.store, w.tenant, "bob", "away")
    previews.clock.to(DUE + dt.timedelta(seconds=5))
    assert await callback_dialler.dial_due(w.store, w.deployment, DUE + dt.timedelta(seconds=5)) == 0
    assert await dials(previews) == []
    assert await w.store.redis.zcard(KEYS.agent_campaign_callbacks("bob")) == 1  # still his, due
    await agents.set_presence(w.store, w.tenant, "bob", "available")
    assert await callback_dialler.dial_due(w.store, w.deployment, DUE + dt.timedelta(seconds=9)) == 1


async def test_a_closed_conversation_is_not_dialled_but_stays_on_the_agents_list(previews):  # noqa: F811
    await spoke_and_asked(previews)
    w = previews.w
    await agents.close(w.store, w.tenant, "bob", "cmp-dues-1", "resolved")
    previews.clock.to(DUE + dt.timedelta(seconds=5))
    assert await callback_dialler.dial_due(w.store, w.deployment, DUE + dt.timedelta(seconds=5)) == 0
    assert await dials(previews) == []
    assert await w.store.redis.zcard(KEYS.agent_campaign_callbacks("bob")) == 1


async def test_a_callback_is_judged_again_at_its_time(previews):  # noqa: F811
    await spoke_and_asked(previews)
    w = previews.w
    await registry.change(w.store, "acme", "dues", "pause")
    previews.clock.to(DUE + dt.timedelta(seconds=5))
    assert await callback_dialler.dial_due(w.store, w.deployment, DUE + dt.timedelta(seconds=5)) == 0
    await registry.change(w.store, "acme", "dues", "resume")
    await w.store.redis.sadd(KEYS.do_not_contact, "+12125550000")
    assert await callback_dialler.dial_due(w.store, w.deployment, DUE + dt.timedelta(seconds=6)) == 0
    assert await dials(previews) == []
    assert await w.store.redis.zcard(KEYS.agent_campaign_callbacks("bob")) == 1  # the list says why
