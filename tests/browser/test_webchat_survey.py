"""The web chat's satisfaction survey in Debian's chromium: after the agent closes the
chat, the widget asks for a rating with five buttons (mouse or keyboard), then an optional
comment; a reload shows it answered; a message written instead is routed as a new
contact. And the rating page of survey email, as its reader uses it."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from playwright.async_api import Browser, Page, expect

from router import agents
from tests.browser.test_accessibility import AXE, BLOCKING
from tests.browser.test_inbox import TIMEOUT_MS, log_in
from tests.browser.test_webchat import acme, offered_conversation, open_widget, running, write
from tests.factories import World, world
from tests.ops.test_satisfaction import played, today
from tests.router.test_inbox_pages import cheap_hashes  # noqa: F401 - autouse: cheap Argon2id
from tests.router.test_inbox_reports import serving

SURVEY = 'survey = { channels = ["webchat", "email"] }'
SURVEYED = acme().replace('brand_color = "#c2410c"', f'brand_color = "#c2410c"\n{SURVEY}')


async def violations(page: Page, within: list[str] | None = None) -> list[str]:
    """axe's serious and critical findings, one line each, on the page or only `within` a
    part of it (a selector, or a path of selectors into shadow roots: the survey in the widget)."""
    await page.evaluate(AXE)
    if within is None:
        context = "document"
    elif len(within) == 1:  # one element of the page
        context = repr(within[0])
    else:  # a path into shadow roots
        context = f"{{ fromShadowDom: {within!r} }}"
    result = await page.evaluate(f"axe.run({context}, {{ resultTypes: ['violations'] }})")
    assert result["passes"], f"axe examined nothing in {context}"
    return [
        f"{v['impact']}: {v['id']} ({v['help']}) at {[n['target'] for n in v['nodes'][:3]]}"
        for v in result["violations"]
        if v["impact"] in BLOCKING
    ]


async def closed_chat(w: World, page: Page, url: str) -> str:
    """The visitor wrote, Alice answered and closed the chat; the survey timer fired."""
    await open_widget(page, url)
    await write(page, "My meter reading looks wrong")
    conversation = await offered_conversation(w, "alice")
    await agents.reply(w.store, w.tenant, "alice", conversation, "Fixed: you will get a new bill.")
    await expect(page.locator(".msg.out .text").last).to_have_text("Fixed: you will get a new bill.")
    await agents.close(w.store, w.tenant, "alice", conversation, "resolved")
    await w.fire("survey:")
    return conversation


async def test_the_widget_asks_for_a_rating_then_a_comment_and_a_reload_shows_it_answered(
    browser: Browser, artifacts: Path
) -> None:
    w = await world(SURVEYED)
    await w.available("alice")
    async with running(w) as server:
        page = await browser.new_page()
        conversation = await closed_chat(w, page, str(server.make_url("/webchat/acme/demo")))
        survey = page.locator(".msg.survey")
        await expect(survey.locator(".text")).to_have_text(
            "How did Alice Martin do? Rate this chat from 1 (poor) to 5 (excellent)."
        )
        await expect(survey.get_by_role("group").get_by_role("button")).to_have_count(5)
        assert await violations(page, ["#contactrouter-webchat-acme", ".msg.survey"]) == []
        await page.screenshot(path=artifacts / "webchat-survey.png")

        await survey.get_by_role("button", name="4 of 5").click()
        await expect(survey.get_by_role("status")).to_have_text("Thank you for your rating (4 of 5).")
        assert (await w.conversation(conversation))["survey_rating"] == "4"
        await survey.get_by_label("Your comment (optional)").fill("Quick and friendly")
        await survey.get_by_role("button", name="Send comment").click()
        await expect(survey.get_by_role("status")).to_have_text("Thank you for your rating and your comment.")
        assert (await w.conversation(conversation))["survey_comment"] == "Quick and friendly"
        await page.screenshot(path=artifacts / "webchat-survey-answered.png")

        await page.reload()
        survey = page.locator(".msg.survey")
        await expect(survey.get_by_role("status")).to_have_text("Thank you for your rating and your comment.")
        await expect(survey.get_by_role("button", name="4 of 5")).to_have_attribute("aria-pressed", "true")
        await expect(survey.get_by_role("button", name="1 of 5")).to_be_disabled()


async def test_a_rating_by_keyboard_and_a_message_written_after_it_is_a_new_contact(browser: Browser) -> None:
    w = await world(SURVEYED)
    await w.available("alice")
    async with running(w) as server:
        page = await browser.new_page()
        conversation = await closed_chat(w, page, str(server.make_url("/webchat/acme/demo")))
        survey = page.locator(".msg.survey")
        await survey.get_by_role("button", name="1 of 5").focus()
        await page.keyboard.press("Tab")
        await expect(survey.get_by_role("button", name="2 of 5")).to_be_focused()
        await page.keyboard.press("Enter")
        await expect(survey.get_by_role("status")).to_have_text("Thank you for your rating (2 of 5).")
        record = await w.conversation(conversation)
        assert (record["survey_rating"], record["survey_followup"]) == ("2", "open")

        await write(page, "Actually the meter is still wrong")
        await expect(page.locator(".msg.in .state").last).to_have_text("Sent")
        again = await offered_conversation(w, "alice")
        assert again != conversation


async def test_the_email_rating_page_records_a_click_and_takes_a_comment(browser: Browser, artifacts: Path) -> None:
    w = await world(SURVEYED)
    async with running(w) as server:
        conversation = await w.assigned_to("alice", channel="email", address="jane@example.com", body="Bill wrong")
        await agents.close(w.store, w.tenant, "alice", conversation, "resolved")
        await w.fire("survey:")
        [survey] = [m for m in await w.outgoing() if m.metadata.get("survey")]
        page = await browser.new_page()
        page.set_default_timeout(5_000)
        await page.goto(str(server.make_url(urlsplit(survey.metadata["survey:rating:5"]).path)))
        await expect(page.get_by_role("heading", level=1)).to_have_text("Thank you for your rating")
        assert (await w.conversation(conversation))["survey_rating"] == "5"
        assert await violations(page) == []
        await page.screenshot(path=artifacts / "survey-email-page.png")
        await page.get_by_role("button", name="Send comment").click()
        await expect(page.get_by_role("alert")).to_have_text("Write a comment before sending it, or close this page.")
        await page.get_by_label("Anything you would like to tell us? (optional)").fill("Sorted in one call")
        await page.keyboard.press("Tab")
        await page.keyboard.press("Enter")
        await expect(page.get_by_role("status")).to_have_text("We have your comment. Thank you.")
        assert (await w.conversation(conversation))["survey_comment"] == "Sorted in one call"


async def test_a_supervisor_sees_satisfaction_in_the_reports_and_follows_up_a_low_rating_on_the_floor(
    browser: Browser, artifacts: Path
) -> None:
    w = await played()
    async with serving(w) as server:
        sue = await log_in(browser, server, "sue")
        errors: list[str] = []
        sue.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        await sue.click("header >> text=Reports")
        await sue.fill("input[name=date]", today(w).isoformat())
        await sue.click("#report-form button[type=submit]")
        section = sue.locator("#satisfaction")
        await expect(section.locator('[data-figure="csat"]')).to_have_text("50.0 %", timeout=TIMEOUT_MS)
        csat = section.locator("#chart-csat svg")
        await expect(csat.locator('g[data-label="support"] text.value')).to_have_text("66.7 %")
        await expect(section.locator("#chart-ratings rect.bar")).to_have_count(5)
        await expect(section.locator("#satisfaction-comments li")).to_have_count(2)
        await section.screenshot(path=str(artifacts / "reports-satisfaction.png"))
        assert await violations(sue, ["#satisfaction"]) == []

        await sue.click("header >> text=Floor")
        low = sue.locator("ul.low-ratings li")
        await expect(low).to_have_count(2, timeout=TIMEOUT_MS)
        await expect(sue.locator('tbody.csat tr[data-queue="support"]')).to_contain_text("66.7 %")
        await sue.screenshot(path=str(artifacts / "floor-satisfaction.png"), full_page=True)
        await low.first.get_by_role("button", name="Followed up").focus()
        await sue.keyboard.press("Enter")
        await expect(sue.get_by_role("status").filter(has_text="followed up")).to_be_visible()
        await expect(sue.locator("ul.low-ratings li")).to_have_count(1)
        await sue.wait_for_timeout(3500)  # the floor's own redraw keeps the list as it is
        await expect(sue.locator("ul.low-ratings li")).to_have_count(1)
        assert errors == []
