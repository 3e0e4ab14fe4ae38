"""The desk and the chat widget in Simplified and Traditional Chinese, in Debian's chromium:
each page is walked as the browser shows it (text, placeholders, labels, titles of what is
visible, the widget's shadow root included) and nothing the catalogue translates may be left
in English. What stays in Latin letters is the test's own data (names, queues, dispositions)."""

# ruff: noqa: RUF001 (Chinese is written with full-width punctuation)

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from playwright.async_api import Browser, Page, expect

from router import agents, i18n
from tests.browser.test_inbox import TIMEOUT_MS
from tests.browser.test_webchat import offered_conversation, running
from tests.factories import world
from tests.router.test_inbox_pages import PASSWORD, cheap_hashes, code_at, start_inbox, this_step  # noqa: F401 - fixture

# What a page shows of itself: text nodes (and the options of a shown list), and the
# placeholder, aria-label and title of each shown element, through open shadow roots.
# (Text in code or kbd elements is left out: commands and secrets are typed as shown.)
SHOWN = """(widgetOnly) => {
  const out = [];
  function walk(root) {
    const texts = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let node = texts.nextNode(); node; node = texts.nextNode()) {
      const parent = node.parentElement;
      const text = node.textContent.trim();
      // code and keys are written as typed (a command, a secret), in any language
      if (!text || !parent || parent.closest("script, style, template, code, kbd")) continue;
      const owner = parent.closest("select") || parent;
      if (owner.checkVisibility()) out.push(text);
    }
    for (const element of root.querySelectorAll("*")) {
      if (element.shadowRoot) walk(element.shadowRoot);
      if (!element.checkVisibility()) continue;
      for (const name of ["placeholder", "aria-label", "title"]) {
        if (element.getAttribute(name)) out.push(element.getAttribute(name));
      }
    }
  }
  if (!widgetOnly) walk(document.body);
  else for (const element of document.querySelectorAll("*")) if (element.shadowRoot) walk(element.shadowRoot);
  return out;
}"""

# The test world's own words, which no catalogue translates: people, a tenant, queues,
# dispositions, the canned replies' names (templates/inbox/canned: users' templates), an
# e-mail address's example, and the names of languages, products and standards.
DATA = {
    "greeting", "meter", "reading", "payment", "plan",
    "amy", "sue", "ana", "Acme", "Energy", "Amy", "Adams", "Zoe", "Zhang", "Alice", "Martin", "support", "billing",
    "resolved", "promise", "pay", "follow", "example", "com", "name",
    "English", "SLA", "PDF", "TOTP", "Telegram", "Twilio",
}  # fmt: skip


def translated_msgids(locale: str) -> set[str]:
    with (i18n.folder() / locale / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        catalog = read_po(handle, locale=locale)
    return {m.id for m in catalog if isinstance(m.id, str) and m.id and m.string and m.string != m.id}


async def untranslated(page: Page, locale: str, widget_only: bool = False) -> list[str]:
    """What the page shows in English: a whole msgid of the catalogue, or words of no data.
    widget_only: the chat widget's shadow root alone (the demo page around it stands for
    the tenant's own site, not ours to translate)."""
    msgids = translated_msgids(locale)
    found = []
    for shown in await page.evaluate(SHOWN, widget_only):
        for piece in re.split(r"\s*[·\n]\s*", shown):
            piece = piece.strip(" :()*")
            if piece in msgids:
                found.append(f"{piece!r} (a msgid)")
                continue
            words = [w for w in re.findall(r"[A-Za-z][A-Za-z'-]{2,}", piece) if w not in DATA]
            if words:
                found.append(f"{piece!r} ({', '.join(words)})")
    return found


async def new_page(browser: Browser, tag: str) -> Page:
    """A browser whose language is `tag` (Accept-Language and navigator.language)."""
    page = await (await browser.new_context(locale=tag)).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return page


@pytest.mark.parametrize(
    ("tag", "locale", "words"),
    [
        ("zh-CN", "zh_Hans", {"login": "登录", "presence": "设置状态", "accepted": "已接受分配。", "reply": "发送"}),
        ("zh-TW", "zh_Hant", {"login": "登入", "presence": "設定狀態", "accepted": "已接受分派。", "reply": "傳送"}),
    ],
)
async def test_the_desk_shows_no_english_in_chinese(
    browser: Browser, artifacts: Path, tag: str, locale: str, words: dict[str, str]
) -> None:
    w, server = await start_inbox()
    async with server:
        page = await new_page(browser, tag)
        await page.goto(str(server.make_url("/inbox/login")))
        await expect(page.locator("html")).to_have_attribute("lang", locale.replace("_", "-"))
        assert await untranslated(page, locale) == [], await untranslated(page, locale)
        await page.fill("input[name=login]", "amy")
        await page.fill("input[name=password]", PASSWORD)
        await page.get_by_role("button", name=words["login"]).click()

        await page.select_option("select[name=presence]", "available")
        await page.get_by_role("button", name=words["presence"]).click()
        await expect(page.locator("body")).to_have_attribute("data-live", "on")
        await w.arrive(channel="sms", address="+15551230000", body="我的电表读数是零")
        offer = page.locator(".offer")
        await expect(offer.locator(".countdown")).to_contain_text("剩")  # the script's countdown, translated
        assert await untranslated(page, locale) == [], await untranslated(page, locale)
        await page.screenshot(path=str(artifacts / f"i18n-{locale}-inbox.png"), full_page=True)

        await offer.locator("button.accept").click()
        await expect(page.locator(".done")).to_have_text(words["accepted"])
        await page.fill("#reply-body", "工程师正在路上。")
        await page.locator("#reply-form button[type=submit]").click()
        await expect(page.locator("#entries .entry-out")).to_have_count(1)
        await expect(page.locator("#language")).to_have_text("中文")  # the customer's, told from their words
        assert await untranslated(page, locale) == [], await untranslated(page, locale)
        await page.screenshot(path=str(artifacts / f"i18n-{locale}-conversation.png"), full_page=True)

        await page.goto(str(server.make_url("/inbox/second-factor")))
        await expect(page.locator("#enrol-form")).to_be_visible()
        assert await untranslated(page, locale) == [], await untranslated(page, locale)

        # the agent's own choice outlasts the browser's language
        await page.select_option("select[name=locale]", "en")
        await page.locator("form.language button").click()
        await expect(page.locator("html")).to_have_attribute("lang", "en")
        await expect(page.locator("#enrol-form button[type=submit]")).to_have_text("Turn on")


WIDGET = """
[[tenants]]
id = "acme"
name = "Acme Energy"
entry = { default = "support" }

[[tenants.queues]]
id = "support"
target = "'support' in skills"

[[tenants.agents]]
id = "alice"
name = "Alice Martin"
skills = { support = 1 }

[tenants.webchat]
demo_page = true
prechat = ["name", "email"]
"""


@pytest.mark.parametrize(
    ("tag", "locale", "words"),
    [
        ("zh-CN", "zh_Hans", {"open": "与 Acme Energy 聊天", "start": "开始聊天", "message": "消息", "sent": "已发送"}),
        ("zh-HK", "zh_Hant", {"open": "與 Acme Energy 聊天", "start": "開始聊天", "message": "訊息", "sent": "已送出"}),
    ],
)
async def test_the_widget_shows_no_english_in_chinese(
    browser: Browser, artifacts: Path, tag: str, locale: str, words: dict[str, str]
) -> None:
    w = await world(WIDGET)
    await w.available("alice")
    async with running(w) as server:
        page = await new_page(browser, tag)
        await page.goto(str(server.make_url("/webchat/acme/demo")))
        await page.get_by_role("button", name=words["open"]).click()
        widget = page.locator(".panel")
        await expect(widget.get_by_role("button", name=words["start"])).to_be_visible()
        assert await untranslated(page, locale, widget_only=True) == []
        await widget.locator("form.prechat input").first.fill("小明")
        await widget.get_by_role("button", name=words["start"]).click()
        await widget.get_by_role("textbox", name=words["message"], exact=True).fill("你好，我想查一下账单")
        await widget.locator("button.send").last.click()
        await expect(widget.locator(".msg.in .state")).to_have_text(words["sent"])
        conversation = await offered_conversation(w, "alice")
        await agents.reply(w.store, w.tenant, "alice", conversation, "好的，请稍等。")
        await expect(widget.locator(".msg.out .text")).to_have_text("好的，请稍等。")
        await page.screenshot(path=str(artifacts / f"i18n-{locale}-widget.png"))
        assert await untranslated(page, locale, widget_only=True) == []



async def test_a_supervisors_pages_show_no_english_in_traditional_chinese(browser: Browser) -> None:
    w, server = await start_inbox()
    async with server:
        page = await new_page(browser, "zh-TW")
        await page.goto(str(server.make_url("/inbox/login")))
        await page.fill("input[name=login]", "sue")
        await page.fill("input[name=password]", PASSWORD)
        await page.get_by_role("button", name="登入").click()
        await page.fill("input[name=code]", code_at(this_step()))
        await page.locator("#code-form button[type=submit]").click()
        await expect(page.locator("nav a[href='/inbox/locks']")).to_have_text("鎖定")
        await w.arrive(channel="email", address="ana@example.com", body="請問我的帳單什麼時候寄出？")
        for path, ready in (("/inbox?tab=all", "#conversations .conv"), ("/inbox/locks", "#no-locks"),
                            ("/inbox/search?go=1&tenant=acme", "#results")):  # fmt: skip
            await page.goto(str(server.make_url(path)))
            await expect(page.locator(ready).first).to_be_visible()
            assert await untranslated(page, "zh_Hant") == [], (path, await untranslated(page, "zh_Hant"))
