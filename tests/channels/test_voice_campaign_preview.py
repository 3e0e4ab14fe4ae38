"""Preview dialling (`voice.dial_mode = "preview"`): nothing is dialled until an agent has
read the next recipient and pressed Dial; the call goes through every rule at that moment
(the dispatcher's lease), to the fake Twilio API, and the person who answers is offered to
that same agent, not to another free one. Skip settles the recipient with the reason."""

from __future__ import annotations

import datetime as dt

import pytest
from aiohttp.test_utils import TestClient, TestServer

from channels.voice.campaign import agents as campaign_agents
from channels.voice.outbound import VoiceSender
from router import agents
from router.app import web
from router.keys import Keys
from router.settings import Settings
from tests.channels.test_voice_campaign import (
    KEYS,
    NOON_NY,
    PUBLIC,
    SANDBOX_TOKEN,
    TENANTS,
    TOKEN,
    Campaigns,
    campaign_toml,
    path,
)
from tests.channels.twilio_api import TwilioApi
from tests.factories import world
from tests.workers.campaigns import Clock, create_campaign
from workers.campaigns import preview

AUDIENCE = "phone,name,balance,account\n+12125550000,Jane,$120.00,A-1\n+12125550001,John,$80.00,A-2\n"
# two agents on the queue, so an answer that reached "any free agent" would be seen
WITH_BOB = TENANTS.replace(
    '[[tenants]]\nid = "globex"', '[[tenants.agents]]\nid = "bob"\nphone = "+15557770002"\n\n[[tenants]]\nid = "globex"'
)


@pytest.fixture
async def previews():
    with Clock(NOON_NY, ticking=True) as clock:
        w = await world(WITH_BOB, {"ACME_TWILIO_TOKEN": TOKEN})
        async with TwilioApi() as api:
            settings = Settings(twilio_api_base=api.url, public_url=PUBLIC, twilio_sandbox_token=SANDBOX_TOKEN)
            sender = VoiceSender(w.store, w.deployment, settings, timeout_s=0.5)
            async with TestClient(TestServer(web.application(w.store, w.deployment, settings))) as client:
                c = Campaigns(w, api, client, sender, clock)
                await create_campaign(w, campaign_toml(voice='dial_mode = "preview"\nmachine_retry = false'), AUDIENCE)
                for agent in ("amy", "bob"):
                    await agents.set_presence(w.store, w.tenant, agent, "available")
                yield c
            await sender.close()


async def test_the_worker_dials_nobody_in_preview(previews):
    assert await previews.worker.step() == 0
    assert await previews.queued() == []


async def test_two_agents_preview_different_recipients_and_a_reload_shows_the_same(previews):
    store = previews.w.store
    amy = await preview.current(store, "acme", "dues", "amy")
    bob = await preview.current(store, "acme", "dues", "bob")
    assert (amy.seq, amy.recipient.fields["name"]) == (1, "Jane")
    assert (bob.seq, bob.recipient.fields["name"]) == (2, "John")
    assert (await preview.current(store, "acme", "dues", "amy")).seq == 1
    assert await preview.current(store, "acme", "dues", "carol") is None  # nobody else is due


async def test_dial_calls_the_recipient_and_the_person_who_answers_is_offered_to_that_agent(previews):
    w = previews.w
    await preview.current(w.store, "acme", "dues", "bob")  # bob previews Jane, amy is free too
    status = await preview.dial(previews.worker, w.store, "acme", "dues", "bob", 1)
    assert status == "sent:1:voice"
    [(message, _payload)] = await previews.queued()
    assert message.metadata[campaign_agents.PREVIEW_AGENT] == "bob"
    assert await previews.dispatch() == 1
    [call] = previews.calls
    assert call["To"] == "+12125550000"
    assert call["MachineDetection"] == "Enable"
    answer = await previews.answered_by("human")
    assert [(e.tag, path(e.text)) for e in answer] == [("Redirect", "/twilio/voice/wait?n=0")]
    await previews.route()
    record = await w.store.redis.hmget(KEYS.conversation("cmp-dues-1"), "agent", "state")
    assert record == [b"bob", b"reserved"]  # not amy, though she was free first


async def test_when_the_agent_left_before_the_answer_it_is_an_abandon(previews):
    w = previews.w
    await preview.current(w.store, "acme", "dues", "bob")
    await preview.dial(previews.worker, w.store, "acme", "dues", "bob", 1)
    await previews.dispatch()
    await agents.set_presence(w.store, w.tenant, "bob", "away")
    answer = await previews.answered_by("human")
    assert [e.tag for e in answer] == ["Say", "Hangup"]
    assert (await previews.delivery())["status"] == "abandoned"


async def test_a_number_put_on_do_not_contact_while_the_agent_read_is_not_dialled(previews):
    w = previews.w
    await preview.current(w.store, "acme", "dues", "amy")
    await w.store.redis.sadd(KEYS.do_not_contact, "+12125550000")
    assert await preview.dial(previews.worker, w.store, "acme", "dues", "amy", 1) == "suppressed:do_not_contact"
    assert await previews.queued() == []


async def test_a_dial_is_judged_again_at_the_moment_the_call_leaves(previews):
    w = previews.w
    await preview.current(w.store, "acme", "dues", "amy")
    await preview.dial(previews.worker, w.store, "acme", "dues", "amy", 1)
    await w.store.redis.sadd(KEYS.disputes, "debt:A-1")  # after the Dial, before the dispatcher's lease
    await previews.dispatch()
    assert previews.calls == []
    assert await previews.status() == "suppressed:refused_at_send:1:voice:disputed"


async def test_outside_the_window_the_dial_is_held_for_its_opening(previews):
    w = previews.w
    await preview.current(w.store, "acme", "dues", "amy")
    previews.worker.clock = lambda: dt.datetime(2027, 6, 2, 1, 5, tzinfo=dt.UTC)  # 21:05 in New York
    opens = int(dt.datetime(2027, 6, 2, 13, 0, tzinfo=dt.UTC).timestamp() * 1000)  # 09:00 there
    assert await preview.dial(previews.worker, w.store, "acme", "dues", "amy", 1) == f"later:{opens}"
    assert await previews.queued() == []
    assert await w.store.redis.zscore(KEYS.campaign_due("dues"), "1") == opens


async def test_skip_settles_the_recipient_with_the_reason_and_counts_it(previews):
    store = previews.w.store
    await preview.current(store, "acme", "dues", "amy")
    with pytest.raises(preview.PreviewError, match="choose why"):
        await preview.skip(store, "acme", "dues", "amy", 1, "bored")
    await preview.skip(store, "acme", "dues", "amy", 1, "already_resolved")
    assert await previews.status() == "skipped:preview:already_resolved"
    figures = await store.redis.hgetall(Keys("acme").campaign_dial_figures("dues"))
    assert (figures[b"preview_skipped"], figures[b"preview_skipped:already_resolved"]) == (b"1", b"1")
    assert (await preview.current(store, "acme", "dues", "amy")).seq == 2  # on to the next
    assert await previews.queued() == []  # nothing was dialled


async def test_an_expired_or_someone_elses_preview_cannot_be_dialled(previews):
    store = previews.w.store
    await preview.current(store, "acme", "dues", "amy")
    with pytest.raises(preview.PreviewError, match="expired"):
        await preview.dial(previews.worker, store, "acme", "dues", "bob", 1)
