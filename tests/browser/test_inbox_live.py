"""The desk never looks live when it is not (issue 16, item 3), in Chromium: an ended
session takes the page to the login, which brings the agent back with their draft; a
stopped web process shows "Reconnecting…", and once it is back the page is current
without a reload; a connection that dies without closing is noticed by its silence."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, expect

from ops.redis_server import free_port
from router import conversations
from router.app import web
from router.app.inbox import accounts, live
from router.settings import Settings
from tests.browser.test_inbox import TIMEOUT_MS, log_in
from tests.factories import World
from tests.router.test_inbox_pages import PASSWORD, cheap_hashes, start_inbox  # noqa: F401 - autouse fixture

NEW_PASSWORD = "a brand new long password"


async def log_in_again(page: Page, password: str) -> None:
    await page.fill("input[name=login]", "amy")
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")


async def test_an_ended_session_goes_to_the_login_and_back_to_the_conversation_with_the_draft(
    browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "SESSION_CHECK_S", 0.2)
    w, server = await start_inbox()
    async with server:
        conversation = await w.assigned_to("amy", body="my meter reads zero")
        amy = await log_in(browser, server, "amy")
        await amy.goto(str(server.make_url(f"/inbox/t/acme/c/{conversation}?done=accepted")))
        await expect(amy.locator("body")).to_have_attribute("data-live", "on")
        await amy.fill("#reply-body", "An engineer is on the way, between 8 and 10.")

        await accounts.set_password(w.store, "amy", NEW_PASSWORD)  # what `contactrouter user passwd amy` does
        await expect(amy).to_have_url(re.compile(rf"/inbox/login\?next=%2Finbox%2Ft%2Facme%2Fc%2F{conversation}$"))
        await expect(amy.locator("#login-next")).to_be_visible()
        await log_in_again(amy, NEW_PASSWORD)

        await expect(amy).to_have_url(re.compile(rf"/inbox/t/acme/c/{conversation}$"))  # where amy was
        await expect(amy.locator("#reply-body")).to_have_value("An engineer is on the way, between 8 and 10.")
        await expect(amy.locator(".draft-restored")).to_be_visible()
        await amy.click("#reply-form button[type=submit]")
        await expect(amy.locator(".done")).to_have_text("Reply sent.")
        await expect(amy.locator("#entries .entry-out .body")).to_have_text(
            "An engineer is on the way, between 8 and 10."
        )
        await amy.reload()
        await expect(amy.locator("body")).to_have_attribute("data-live", "on")
        await expect(amy.locator("#reply-body")).to_have_value("")  # sent: no draft to restore


async def test_a_reply_posted_after_the_session_ended_is_kept_for_after_the_login(
    browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page had no time to notice (the socket checks every SESSION_CHECK_S): the post
    goes to the login, and the reply comes back in the box, not sent and not lost."""
    monkeypatch.setattr(live, "SESSION_CHECK_S", 3600.0)
    w, server = await start_inbox()
    async with server:
        conversation = await w.assigned_to("amy", body="my meter reads zero")
        amy = await log_in(browser, server, "amy")
        await amy.goto(str(server.make_url(f"/inbox/t/acme/c/{conversation}")))
        await expect(amy.locator("body")).to_have_attribute("data-live", "on")
        await amy.fill("#reply-body", "Sorry for the wait.")
        await accounts.set_password(w.store, "amy", NEW_PASSWORD)
        await amy.click("#reply-form button[type=submit]")
        await expect(amy).to_have_url(re.compile(r"/inbox/login\?next="))
        await log_in_again(amy, NEW_PASSWORD)
        await expect(amy.locator("#reply-body")).to_have_value("Sorry for the wait.")
        assert [e for e in await conversations.history(w.store, "acme", conversation) if e.kind == "out"] == []


async def test_a_script_that_finds_the_session_ended_goes_to_the_login(
    browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, state.json's redirect to the login form was followed and swallowed: the
    page stayed as it was, looking live, with nothing new."""
    monkeypatch.setattr(live, "SESSION_CHECK_S", 3600.0)  # the socket does not notice: the fetch must
    w, server = await start_inbox()
    async with server:
        await w.available("amy")
        amy = await log_in(browser, server, "amy")
        await expect(amy.locator("body")).to_have_attribute("data-live", "on")
        await accounts.set_password(w.store, "amy", NEW_PASSWORD)
        await w.arrive(body="anyone there?")  # the socket says so; the page fetches state.json: 401
        await expect(amy).to_have_url(re.compile(r"/inbox/login$"))


@contextlib.asynccontextmanager
async def web_process(w: World, port: int) -> AsyncIterator[TestServer]:
    """The web app on a fixed port, as a restarted web process would be: a new
    application on the same store and address."""
    server = TestServer(web.application(w.store, w.deployment, Settings()), port=port)
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


async def test_the_banner_shows_while_the_web_process_is_down_and_the_page_is_current_after_it_restarts(
    browser: Browser, artifacts: Path
) -> None:
    w, _unused = await start_inbox()
    await w.available("amy")
    port = free_port()
    async with web_process(w, port) as server:
        amy = await log_in(browser, server, "amy")
        await expect(amy.locator("body")).to_have_attribute("data-live", "on")
        await expect(amy.locator("#live-status")).to_have_text("")
    # the web process has stopped
    status = amy.locator("#live-status")
    await expect(status).to_contain_text("Reconnecting")
    await expect(amy.locator("body")).to_have_attribute("data-live", "reconnecting")
    assert await status.get_attribute("role") == "status"
    await amy.screenshot(path=str(artifacts / "inbox-reconnecting.png"))
    await w.arrive(body="I wrote while the web process was down")  # no socket hears of it

    async with web_process(w, port):
        await expect(amy.locator(".offer")).to_contain_text("I wrote while the web process was down")  # no reload
        await expect(amy.locator("body")).to_have_attribute("data-live", "on")
        await expect(status).to_contain_text("Connected again")
        await expect(status).to_have_text("")  # and the banner goes


class Proxy:
    """A TCP relay in front of the web app that can make the websockets open through it
    go silent (a connection dropped by a NAT or a sleeping network: nothing closes it)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.silenced: list[asyncio.Event] = []
        self.sockets: list[asyncio.Event] = []
        self.server: asyncio.Server | None = None

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, mute: asyncio.Event) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await reader.read(65536):
                if not mute.is_set():
                    writer.write(data)
                    await writer.drain()
        writer.close()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        mute = asyncio.Event()
        first = await client_reader.read(65536)
        if b"upgrade: websocket" in first.lower():
            self.sockets.append(mute)
        upstream_writer.write(first)
        await asyncio.gather(
            self._pipe(client_reader, upstream_writer, mute), self._pipe(upstream_reader, client_writer, mute)
        )

    async def __aenter__(self) -> Proxy:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self.server is not None
        self.server.close()

    def url(self, path: str) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}{path}"

    def silence_websockets(self) -> None:
        for mute in self.sockets:
            mute.set()


async def test_a_socket_that_goes_silent_is_taken_for_dead_and_replaced(
    browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "BEAT_S", 0.3)  # the page gives up after a few seconds' silence
    w, server = await start_inbox()
    await w.available("amy")
    async with server, Proxy(server.port) as proxy:
        amy = await (await browser.new_context()).new_page()
        amy.set_default_timeout(TIMEOUT_MS)
        await amy.goto(proxy.url("/inbox/login"))
        await log_in_again(amy, PASSWORD)
        await expect(amy.locator("body")).to_have_attribute("data-live", "on")
        proxy.silence_websockets()  # open, but nothing gets through any more, either way
        await expect(amy.locator("#live-status")).to_contain_text("Reconnecting")
        await w.arrive(body="sent while the socket was silent")
        await expect(amy.locator(".offer")).to_contain_text("sent while the socket was silent")
        await expect(amy.locator("body")).to_have_attribute("data-live", "on")
