"""Web chat across processes on a real redis-server: the tabs of one visitor are open on two
web processes, the reply is sent by a third (dispatch), and every tab shows it."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from channels.webchat.outbound import WebchatSender
from router import agents, bus
from router.app import processes, web
from router.keys import DISPATCH_GROUP, Keys
from router.settings import Settings
from router.store import connect
from tests.channels.test_webchat_socket import CHAT, frame, open_chat, route_all, say
from tests.factories import World, deployment
from workers.dispatch import Dispatcher

KEYS = Keys("acme")


async def test_a_reply_sent_by_the_dispatch_process_reaches_tabs_on_two_web_processes(redis_url: str) -> None:
    config = deployment(CHAT.replace("{extra}", "").replace("{limits}", ""))
    settings = Settings(redis_url=redis_url, webchat_secret="")
    web_a, web_b, dispatch = connect(settings), connect(settings), connect(settings)
    try:
        await processes.prepare(dispatch, config)
        w = World(dispatch, config)
        await w.available("amy")
        async with (
            TestServer(web.application(web_a, config, settings)) as server_a,
            TestServer(web.application(web_b, config, settings)) as server_b,
            TestClient(server_a) as client_a,
            TestClient(server_b) as client_b,
        ):
            first, welcome = await open_chat(client_a)
            second, again = await open_chat(client_b, token=welcome["token"])  # the secret is shared via Redis
            assert again["type"] == "welcome"
            await say(first, "Hello from tab one")
            assert (await frame(second, "message"))["text"] == "Hello from tab one"

            await route_all(w)
            conversation = await w.accept_offer("amy")
            await agents.reply(dispatch, w.tenant, "amy", conversation, "Hello from Amy")
            await bus.ensure_group(dispatch, KEYS.outbound, DISPATCH_GROUP)
            rows = await dispatch.redis.xrange(KEYS.outbound)
            entries = [bus.Entry(KEYS.outbound, i.decode(), f[b"e"]) for i, f in rows]
            await Dispatcher(dispatch, {"webchat": WebchatSender(dispatch, config)}).handle(entries)
            for tab in (first, second):
                reply = await frame(tab, "message")
                while reply["kind"] != "out":
                    reply = await frame(tab, "message")
                assert (reply["text"], reply["agent"]) == ("Hello from Amy", "Amy Pond")
    finally:
        for store in (web_a, web_b, dispatch):
            await store.close()
