"""The desk's campaign session page: an agent sees the agent-paced campaigns of their
queues, joins one (and is made available), reads a preview recipient's record, fields and
script, then Dials (the call is queued as theirs) or Skips with a reason; a supervisor's
Join of a campaign whose queue is not theirs is refused; every form needs the session's
CSRF token."""

from __future__ import annotations

import html

from router import agents
from router.campaigns import session
from router.keys import Keys
from tests.router.test_inbox_campaigns import AUDIENCE, NOON_NY, inbox  # noqa: F401 - the fixture
from tests.router.test_inbox_pages import Inbox, cheap_hashes, logged_in  # noqa: F401 - autouse fixture
from tests.workers.campaigns import Clock, create_campaign

PREVIEW = """
id = "calls"
tenant = "acme"
name = "June calls"
kind = "collections"
channel = "voice"
queue = "collections"
[voice]
dial_mode = "preview"
script = "Ask {{ name }} about {{ balance }}."
[templates.voice.en]
body = "Hello {{ name }}."
"""
KEYS = Keys("acme")
BASE = "/inbox/campaign-session/acme/calls"


async def test_join_preview_dial_and_skip(inbox: Inbox) -> None:  # noqa: F811
    w = inbox.world
    with Clock(NOON_NY, ticking=True):
        await create_campaign(w, PREVIEW, AUDIENCE, rejected=1)
        client, csrf = await logged_in(inbox, "amy")
        async with client:
            page = await (await client.get("/inbox/campaign-session")).text()
            assert "June calls" in page and "You are not in this session." in page
            joined = await client.post(BASE + "/join", data={"csrf": csrf}, allow_redirects=False)
            assert joined.status == 303
            assert await session.members(w.store, "acme", "calls") == {"amy"}
            assert (await agents.status(w.store, w.tenant, "amy"))["presence"] == "available"
            page = html.unescape(await (await client.get("/inbox/campaign-session")).text())
            assert "Next: Jane (+12125550001)" in page and "Ask Jane about $120.00." in page
            assert "<script>alert('offer')</script>" not in await (await client.get("/inbox/campaign-session")).text()
            refused = await client.post(BASE + "/skip", data={"csrf": csrf, "recipient": "1", "reason": ""})
            assert refused.status == 409 and "choose why you skip" in await refused.text()
            skipped = await client.post(BASE + "/skip", data={"csrf": csrf, "recipient": "1", "reason": "other"})
            assert skipped.status == 200
            assert "Next: <b>Bob</b> (+12125550002)" in html.unescape(await skipped.text())
            dialled = await client.post(BASE + "/dial", data={"csrf": csrf, "recipient": "2"})
            assert dialled.status == 200, await dialled.text()
            assert "when the customer answers, the call is put through to you" in await dialled.text()
            again = await client.post(BASE + "/dial", data={"csrf": csrf, "recipient": "2"})
            assert again.status == 409 and "expired" in await again.text()  # one Dial, one call
            forged = await client.post(BASE + "/leave", data={"csrf": "nope"}, allow_redirects=False)
            assert forged.status == 403
            left = await client.post(BASE + "/leave", data={"csrf": csrf}, allow_redirects=False)
            assert left.status == 303
    assert await w.store.redis.hget(KEYS.campaign_status("calls"), "1") == b"skipped:preview:other"
    assert await w.store.redis.hget(KEYS.campaign_status("calls"), "2") == b"sent:1:voice"
    assert await session.members(w.store, "acme", "calls") == set()


async def test_a_campaign_of_another_queue_is_not_listed_nor_joinable(inbox: Inbox) -> None:  # noqa: F811
    w = inbox.world
    with Clock(NOON_NY, ticking=True):
        await create_campaign(w, PREVIEW, AUDIENCE, rejected=1)
        await w.store.redis.zrem(KEYS.members("collections", 0), "zoe")
        client, csrf = await logged_in(inbox, "zoe")
        async with client:
            page = await (await client.get("/inbox/campaign-session")).text()
            assert "June calls" not in page
            refused = await client.post(BASE + "/join", data={"csrf": csrf})
            assert refused.status == 409 and "not an agent of its queue" in await refused.text()
