"""The softphone in a real browser (Debian's chromium): on a tenant without a Twilio
account, an accepted call rings a simulated call in the page, through the desk's own
flow, and the server records it as a real call would be."""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, expect

from channels._twilio_rest import TwilioClients
from channels.voice import bridge, inbound, monitor, recording, simulated
from router import events
from router.app import web
from router.app.inbox import accounts
from router.settings import Settings
from tests.browser.test_accessibility import violations
from tests.browser.test_inbox import TIMEOUT_MS, go_available, log_in
from tests.factories import World, world
from tests.router.test_inbox_pages import DEPLOYMENT, PASSWORD, cheap_hashes, start_inbox  # noqa: F401 - fixture

CALLER = "+12015550123"


async def the_call(w: World, agent: str) -> dict[str, str]:
    [call] = await simulated.calls_of(w.store, "acme", agent)
    return await simulated.record(w.store, "acme", call["sid"])


async def accepted_call(w: World, page: Page) -> str:
    """A caller waits; the agent accepts the call's offer in the page; returns the conversation."""
    await go_available(page)
    await expect(page.locator("body")).to_have_attribute("data-live", "on", timeout=TIMEOUT_MS)
    conversation = await w.arrive(channel="voice", kind="call", address=CALLER, body="")
    await page.locator(".offer button.accept").click()
    await expect(page.locator(".done")).to_have_text("Offer accepted.")
    return conversation


async def test_a_simulated_call_is_answered_and_hung_up_in_the_softphone(browser: Browser, artifacts: Path) -> None:
    w, server = await start_inbox()
    async with server:
        amy = await log_in(browser, server, "amy")
        phone = amy.locator("#softphone")
        await expect(phone).to_be_visible()
        await expect(phone.locator("#softphone-note")).to_have_text("Simulated call (no Twilio account configured)")
        await expect(phone.locator("#softphone-status")).to_have_text("ready")

        conversation = await accepted_call(w, amy)
        await expect(phone.locator("#softphone-status")).to_have_text("ringing")
        await expect(phone.locator("#softphone-who")).to_have_text(CALLER)
        await expect(phone.locator("#softphone-kind")).to_have_text("incoming call · Acme Energy · simulated")
        await expect(phone.locator("#softphone-keypad")).to_be_hidden()  # answer or decline, nothing else yet
        await expect(phone.get_by_role("button", name="Hang up")).to_be_hidden()
        await amy.screenshot(path=str(artifacts / "softphone-ringing.png"), full_page=True)
        assert (await the_call(w, "amy"))["status"] == "ringing"

        await phone.get_by_role("button", name="Answer").click()
        await expect(phone.locator("#softphone-status")).to_have_text("in call")
        await expect(phone.locator("#softphone-timer")).to_have_text(re.compile(r"^\d+:\d\d$"))
        call = await the_call(w, "amy")
        assert (call["status"], call["conversation"], call["from"]) == ("in-progress", conversation, CALLER)

        await expect(phone.locator("#softphone-keypad")).to_be_visible()
        await expect(phone.get_by_role("button", name="Answer")).to_be_hidden()
        await phone.get_by_role("button", name="Mute").click()
        await expect(phone.get_by_role("button", name="Mute")).to_have_attribute("aria-pressed", "true")
        await phone.locator("#softphone-keypad").get_by_role("button", name="1", exact=True).click()
        await phone.locator("#softphone-keypad").get_by_role("button", name="#").click()
        await expect(phone.locator("#softphone-digits")).to_have_text("1#")
        await amy.screenshot(path=str(artifacts / "softphone-in-call.png"), full_page=True)

        await phone.get_by_role("button", name="Hang up").click()
        await expect(phone.locator("#softphone-status")).to_have_text("call ended")
        call = await the_call(w, "amy")
        assert (call["status"], call["hung_up_by"], call["muted"], call["digits"]) == ("completed", "agent", "1", "1#")
        assert int(call["started_at"]) <= int(call["answered_at"]) <= int(call["ended_at"]) <= events.now_ms()
        assert int(call["duration_s"]) >= 0
        # the call is over, the conversation is not: the agent closes it with a disposition
        assert (await w.conversation(conversation))["state"] == "assigned"


async def test_the_caller_hanging_up_while_it_rings_is_an_abandon_the_page_shows(browser: Browser) -> None:
    w, server = await start_inbox()
    async with server:
        amy = await log_in(browser, server, "amy")
        conversation = await accepted_call(w, amy)
        phone = amy.locator("#softphone")
        await expect(phone.locator("#softphone-status")).to_have_text("ringing")
        await phone.get_by_role("button", name="The customer hangs up (simulation)").click()
        await expect(phone.locator("#softphone-status")).to_have_text("missed: the caller hung up")
        assert (await the_call(w, "amy"))["status"] == "canceled"
        record = await w.conversation(conversation)
        assert (record["state"], record["disposition"]) == ("closed", "abandoned")


async def test_a_call_in_progress_is_transferred_to_a_queue_from_the_softphone(browser: Browser) -> None:
    w, server = await start_inbox()
    async with server:
        amy = await log_in(browser, server, "amy")
        conversation = await accepted_call(w, amy)
        phone = amy.locator("#softphone")
        await phone.get_by_role("button", name="Answer").click()
        await expect(phone.locator("#softphone-status")).to_have_text("in call")
        await phone.get_by_role("button", name="Hold").click()
        await expect(phone.locator("#softphone-status")).to_have_text("on hold")
        assert (await the_call(w, "amy"))["held"] == "1"
        await phone.get_by_label("Transfer to").select_option("queue:billing")
        await phone.get_by_role("button", name="Transfer").click()
        await expect(phone.locator("#softphone-status")).to_have_text("transferred")
        call = await the_call(w, "amy")
        assert (call["status"], call["hung_up_by"]) == ("completed", "transfer")
        record = await w.conversation(conversation)
        assert (record["state"], record["queue"]) == ("queued", "billing")


async def test_with_a_twilio_account_the_page_loads_twilios_sdk_from_us_and_registers_with_its_token(
    browser: Browser,
) -> None:
    """Twilio itself is out of reach here: this shows the SDK we vendored loads under the
    page's policy, from our server alone, and is handed a token for the agent's identity."""
    key = 'api_key_sid = "SK' + "5" * 32 + '", api_key_secret_env = "ACME_TWILIO_KEY"'
    account = 'twilio = { account_sid = "AC' + "1" * 32 + '", auth_token_env = "ACME_TWILIO_TOKEN", ' + key + " }"
    text = DEPLOYMENT.replace("wrapup_seconds = 60", "wrapup_seconds = 60\n" + account, 1)
    w = await world(text, {"ACME_TWILIO_TOKEN": "token", "ACME_TWILIO_KEY": "k" * 40})
    await accounts.add(w.store, "amy", PASSWORD, "agent", {"acme": "amy"})
    async with TestServer(web.application(w.store, w.deployment, Settings())) as server:
        page = await (await browser.new_context()).new_page()
        loaded, sockets, refused = [], [], []
        page.on("request", lambda request: loaded.append(request.url))
        page.on("websocket", lambda socket: sockets.append(socket.url))
        page.on("console", lambda message: refused.append(message.text) if "Content Security" in message.text else None)
        page.set_default_timeout(TIMEOUT_MS)
        async with page.expect_response(lambda r: r.url.endswith("/inbox/t/acme/softphone/token")) as token:
            await page.goto(str(server.make_url("/inbox/login")))
            await page.fill("input[name=login]", "amy")
            await page.fill("input[name=password]", PASSWORD)
            await page.click("button[type=submit]")
        assert (await (await token.value).json())["identity"] == "amy"
        await page.wait_for_function("() => typeof window.Twilio?.Device === 'function'")
        await expect(page.locator("#softphone")).to_be_visible()
        await expect(page.locator("#softphone-note")).to_be_hidden()  # a real softphone: nothing simulated
        # Twilio is out of reach (or refuses a token of an account that does not exist): the panel says so
        await expect(page.locator("#softphone-error")).to_be_visible()
        await expect(page.locator("#softphone-status")).to_have_text("not connected")
        # by then the SDK has tried Twilio's signalling: the page's policy let it, and loaded nothing else
        origin = str(server.make_url("/")).rstrip("/")
        scripts = [url for url in loaded if url.endswith(".js")]
        assert f"{origin}/inbox/static/vendor/twilio.min.js" in scripts
        assert all(url.startswith(origin) for url in scripts), scripts  # no CDN
        assert [url for url in sockets if url.startswith("wss://") and url.split("/")[2].endswith(".twilio.com")]
        assert refused == []


async def test_a_callers_call_rings_with_the_whisper_and_the_agents_1_puts_the_caller_through(browser: Browser) -> None:
    w, server = await start_inbox()
    async with server:
        amy = await log_in(browser, server, "amy")
        await go_available(amy)
        await expect(amy.locator("body")).to_have_attribute("data-live", "on", timeout=TIMEOUT_MS)
        caller_sid = "CA" + "6" * 32  # the caller's own call, waiting in the queue after the IVR
        await inbound.update_call(w.store, "acme", caller_sid, state="queued", **{"from": CALLER})
        conversation = await w.arrive(
            channel="voice", kind="call", address=CALLER, body="", metadata={"call_sid": caller_sid}
        )
        await amy.locator(".offer button.accept").click()
        phone = amy.locator("#softphone")
        await expect(phone.locator("#softphone-status")).to_have_text("ringing")
        await expect(phone.locator("#softphone-kind")).to_contain_text("To take it, press 1.")
        await phone.get_by_role("button", name="Answer").click()
        await expect(phone.locator("#softphone-status")).to_have_text("in call")
        assert (await inbound.get_call(w.store, "acme", caller_sid))["state"] == "queued"  # the whisper first
        await phone.locator("#softphone-keypad").get_by_role("button", name="1", exact=True).click()
        await expect(phone.locator("#softphone-digits")).to_have_text("1")
        for _ in range(50):
            caller = await inbound.get_call(w.store, "acme", caller_sid)
            if caller.get("state") == "connected":
                break
            await amy.wait_for_timeout(100)
        assert (caller["state"], caller["agent"], caller["conference"]) == (
            "connected",
            "amy",
            bridge.conference_name(conversation),
        )


RECORDED = DEPLOYMENT.replace(
    "wrapup_seconds = 60\n", 'wrapup_seconds = 60\n\n[tenants.voice]\nrecording = "inbound"\n', 1
)


async def test_a_recorded_call_is_paused_and_resumed_from_the_softphone(browser: Browser, artifacts: Path) -> None:
    w, server = await start_inbox(RECORDED)
    async with server:
        amy = await log_in(browser, server, "amy")
        await go_available(amy)
        await expect(amy.locator("body")).to_have_attribute("data-live", "on", timeout=TIMEOUT_MS)
        caller_sid = "CA" + "7" * 32
        await inbound.update_call(w.store, "acme", caller_sid, state="queued", **{"from": CALLER})
        conversation = await w.arrive(
            channel="voice", kind="call", address=CALLER, body="", metadata={"call_sid": caller_sid}
        )
        await amy.locator(".offer button.accept").click()
        phone = amy.locator("#softphone")
        await phone.get_by_role("button", name="Answer").click()
        record_button = phone.locator("#softphone-record")
        await expect(record_button).to_be_hidden()  # nothing is recorded before the caller is put through
        await phone.locator("#softphone-keypad").get_by_role("button", name="1", exact=True).click()
        await expect(record_button).to_have_text("Pause recording")
        await record_button.click()
        await expect(record_button).to_have_text("Resume recording")
        await expect(record_button).to_have_attribute("aria-pressed", "true")
        [found] = await recording.of_conversation(w.store, "acme", conversation)
        assert (found["state"], found["paused_by"], found["simulated"]) == ("paused", "amy", "1")
        await amy.screenshot(path=str(artifacts / "softphone-recording-paused.png"), full_page=True)
        await record_button.click()
        await expect(record_button).to_have_text("Pause recording")
        assert (await recording.of_conversation(w.store, "acme", conversation))[0]["state"] == "in-progress"
        # a supervisor listens in: the panel says so
        twilio = TwilioClients(Settings())
        await monitor.join(w.store, twilio, "", w.tenant, conversation, login="sue", seat="zoe", mode="listen")
        await expect(phone.locator("#softphone-listeners")).to_have_text(
            "On this call: sue (listening)", timeout=10_000
        )
        # the conversation page shows the call: the recording, and transferring it; nothing axe finds serious
        await amy.goto(f"{server.make_url('/')}inbox/t/acme/c/{conversation}")
        panel = amy.locator("#call-panel")
        await expect(panel.locator("#recording-state")).to_have_text("on")
        await expect(panel.get_by_role("button", name="Consult first")).to_be_visible()
        assert await violations(amy) == []
