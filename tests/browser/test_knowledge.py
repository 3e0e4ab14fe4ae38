"""The knowledge base in Debian's chromium: a supervisor takes an article through review,
an agent finds it from the reply box and inserts it, a visitor is offered it in the chat
widget while typing and says it answered their question; a hostile article stays text;
axe finds nothing serious on the pages."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser, Page, expect

from router.app.inbox import accounts
from router.knowledge import articles
from tests.browser.test_accessibility import AXE, BLOCKING
from tests.browser.test_inbox import TIMEOUT_MS, go_available, log_in
from tests.browser.test_webchat import acme, open_widget, running
from tests.factories import world
from tests.router.knowledge.factories import published
from tests.router.test_inbox_knowledge import HOSTILE_BODY, HOSTILE_TITLE, WITH_KB
from tests.router.test_inbox_pages import PASSWORD, cheap_hashes, start_inbox  # noqa: F401 - autouse fixture


async def violations(page: Page) -> list[str]:
    """axe's serious and critical findings, as tests/browser/test_accessibility.py reads them,
    with a target inside the widget's shadow root (a list of selectors) named whole."""
    await page.evaluate(AXE)
    result = await page.evaluate("axe.run(document, { resultTypes: ['violations'] })")
    return [
        f"{v['impact']}: {v['id']} ({v['help']}) at {', '.join(str(n['target']) for n in v['nodes'][:3])}"
        for v in result["violations"]
        if v["impact"] in BLOCKING
    ]


KB = """
[tenants.knowledge]
locales = ["en", "zh-CN", "ja"]
categories = [{ id = "help", name = "Help", public = true }, { id = "internal", name = "Internal" }]
"""


async def test_a_supervisor_publishes_through_review_and_an_agent_only_reads(browser: Browser, artifacts: Path) -> None:
    w, server = await start_inbox(WITH_KB)
    async with server:
        sue = await log_in(browser, server, "sue")
        await sue.get_by_role("link", name="Knowledge").click()
        await sue.get_by_role("link", name="Write an article").click()
        assert await violations(sue) == []  # the form
        await sue.get_by_label("Title").fill("Reading your meter")
        await sue.get_by_label("Body").fill("1. Open the cupboard.\n2. Read the **black** digits.")
        await sue.get_by_role("button", name="Save the draft").click()
        await expect(sue.locator(".done")).to_have_text("Article saved.")
        await expect(sue.locator("#kb-state")).to_have_text("Draft")
        await sue.get_by_role("button", name="Send for review").click()
        await expect(sue.locator("#kb-state")).to_have_text("In review")
        await sue.get_by_label("Why (the writer reads this)").fill("say where the cupboard is")
        await sue.get_by_role("button", name="Return to draft").click()
        await expect(sue.locator("#kb-state")).to_have_text("Draft")
        await sue.get_by_role("link", name="Edit").click()
        await sue.get_by_label("Body").fill("1. Open the cupboard under the stairs.\n2. Read the **black** digits.")
        await sue.get_by_role("button", name="Save", exact=True).click()
        await sue.get_by_role("button", name="Send for review").click()
        await sue.get_by_role("button", name="Publish").click()
        await expect(sue.locator(".done")).to_have_text("Article published.")
        await expect(sue.locator(".kb-body strong")).to_have_text("black")
        await expect(sue.locator("#kb-history li")).to_have_count(6)
        await expect(sue.locator("#kb-history li").nth(3)).to_contain_text("say where the cupboard is")  # newest first
        await sue.screenshot(path=str(artifacts / "knowledge-article.png"), full_page=True)
        assert await violations(sue) == []
        await sue.get_by_role("link", name="← Knowledge base: Acme Energy").click()
        await expect(sue.locator("#kb-articles")).to_contain_text("Reading your meter")
        assert await violations(sue) == []  # the list

        amy = await log_in(browser, server, "amy")
        await amy.goto(str(server.make_url("/inbox/t/acme/knowledge")))
        await amy.get_by_role("link", name="Reading your meter").click()
        await expect(amy.locator("#kb-article")).to_contain_text("under the stairs")
        await expect(amy.locator("#kb-workflow")).to_have_count(0)
        assert await violations(amy) == []
    [article] = await articles.listing(w.store, "acme")
    assert (article.status, article.version) == ("published", 6)


async def test_an_agent_searches_from_the_reply_box_and_inserts_an_answer_that_is_counted(
    browser: Browser, artifacts: Path
) -> None:
    w, server = await start_inbox(WITH_KB)
    refunds = await published(w, "Refunds", "Refunds reach your card within **five** days.")
    await published(w, "返金について", "返金には5日かかります。", locale="ja")
    hostile = await published(w, HOSTILE_TITLE, HOSTILE_BODY + "\n\nrefunds")
    async with server:
        amy = await log_in(browser, server, "amy")
        await go_available(amy)
        conversation = await w.arrive(address="+15551230000", body="Where is my refund?")
        await w.accept_offer("amy")
        await amy.goto(str(server.make_url(f"/inbox/t/acme/c/{conversation}")))
        results = amy.locator("#kb-results li")
        await expect(amy.locator("#kb-status")).to_have_text("Articles for the customer's last message:")
        await expect(results.first).to_contain_text("Refunds")  # "Where is my refund?", before any typing
        await amy.fill("#reply-body", "Hello,")
        await amy.get_by_label("Search the knowledge base").fill("refunding")  # debounced, no Enter
        await expect(results.first).to_contain_text("Refunds")
        await expect(amy.locator(f'#kb-results li[data-article="{hostile.id}"] strong')).to_have_text(HOSTILE_TITLE)
        assert await amy.locator("#kb-results script, #kb-results img").count() == 0
        row = amy.locator(f'#kb-results li[data-article="{refunds.id}"]')
        await row.get_by_role("button", name="Insert answer").click()
        await expect(amy.locator("#reply-body")).to_have_value("Hello,\nRefunds reach your card within five days.")
        await expect(amy.locator("#kb-status")).to_contain_text("Inserted the answer of “Refunds”")
        await row.get_by_role("button", name="Insert link").focus()  # the keyboard alone does it too
        await amy.keyboard.press("Enter")
        value = await amy.locator("#reply-body").input_value()
        assert value.endswith(f"Refunds: {server.make_url(f'/help/acme/a/{refunds.id}')}")
        await amy.get_by_label("Search the knowledge base").fill("返金")
        await expect(results).to_have_count(1)
        await expect(results.first).to_contain_text("返金について")
        await amy.screenshot(path=str(artifacts / "knowledge-reply-box.png"), full_page=True)
        await amy.click("#reply-form button[type=submit]")
        await expect(amy.locator(".done")).to_have_text("Reply sent.", timeout=TIMEOUT_MS)
    [reply] = await w.outgoing()
    assert "Refunds reach your card within five days." in reply.body
    assert (await articles.get(w.store, "acme", refunds.id)).inserted == 1  # twice in one conversation: once


async def test_the_widget_suggests_articles_while_the_visitor_types_and_counts_a_deflection(
    browser: Browser, artifacts: Path
) -> None:
    w = await world(acme().replace("\n[tenants.webchat]", KB + "\n[tenants.webchat]"))
    await accounts.add(w.store, "alice", PASSWORD, "agent", {"acme": "alice"})
    password = await published(w, "Reset your password", "Press **Forgot password** on the login page.")
    chinese = await published(w, "如何重置密码", "在登录页面点击忘记密码。", locale="zh-CN")
    hostile = await published(w, HOSTILE_TITLE, HOSTILE_BODY + "\n\nForgot your password? Reset the password.")
    await published(w, "Password for the back office", "Ask IT.", category="internal")
    async with running(w) as server:
        page = await browser.new_page()
        await open_widget(page, str(server.make_url("/webchat/acme/demo")))
        await page.get_by_label("Message", exact=True).press_sequentially("I forgot my password", delay=20)
        help_box = page.get_by_role("region", name="Help articles")
        await expect(help_box.locator("li").first).to_contain_text("Reset your password")
        await expect(help_box).not_to_contain_text("back office")  # internal: never shown to customers
        await expect(help_box.locator(f'li[data-article="{hostile.id}"] a')).to_have_text(HOSTILE_TITLE)
        assert await page.evaluate("window.pwned") is None
        await page.screenshot(path=str(artifacts / "knowledge-widget.png"))
        assert await violations(page) == []

        link = help_box.locator(f'li[data-article="{password.id}"] a')
        assert (await link.get_attribute("href")).endswith(f"/help/acme/a/{password.id}")
        await (
            help_box.locator(f'li[data-article="{password.id}"]')
            .get_by_role("button", name="This answered my question")
            .click()
        )
        await expect(help_box).to_contain_text("Glad it helped!")
        await expect(page.get_by_label("Message", exact=True)).to_have_value("")

        await page.get_by_label("Message", exact=True).fill("")
        await page.get_by_label("Message", exact=True).press_sequentially("忘记密码", delay=20)
        await expect(help_box.locator("li").first).to_contain_text("如何重置密码")

        article_page = await browser.new_page()
        await article_page.goto(str(server.make_url(f"/help/acme/a/{chinese.id}")))
        await expect(article_page.locator("h1")).to_have_text("如何重置密码")
        await expect(article_page.locator("header")).to_contain_text("Acme Energy · Help")
        assert await violations(article_page) == []
        await article_page.get_by_role("button", name="This answered my question").click()
        await expect(article_page.locator(".thanks")).to_have_text("Thank you: we are glad it helped.")
        await article_page.get_by_role("link", name="More help from Acme Energy").click()
        await article_page.get_by_label("Search the help articles").fill("password")
        await article_page.keyboard.press("Enter")
        await expect(article_page.locator("#results")).to_contain_text("Reset your password")
        assert await violations(article_page) == []  # the help centre
    assert (await articles.get(w.store, "acme", password.id)).helped == 1
    assert sum((await articles.deflected(w.store, "acme")).values()) == 2
