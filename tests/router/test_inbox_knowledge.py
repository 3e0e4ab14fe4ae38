"""The knowledge base on the desk: writing and the review workflow through the pages,
who may do what, tenants apart, a hostile article shown as text, and the reply box's
search and insertion count."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from router.app.inbox import accounts
from router.knowledge import articles
from tests.router.knowledge.factories import published
from tests.router.test_inbox_pages import (  # noqa: F401 - cheap_hashes: autouse
    DEPLOYMENT,
    PASSWORD,
    Inbox,
    cheap_hashes,
    csrf_of,
    logged_in,
    start_inbox,
)

KNOWLEDGE = """
[tenants.knowledge]
locales = ["en", "ja"]
categories = [
  { id = "billing", name = "Billing", public = true },
  { id = "internal", name = "Internal procedures" },
]

[[tenants]]
id = "globex"
"""
WITH_KB = DEPLOYMENT.replace('\n[[tenants]]\nid = "globex"\n', KNOWLEDGE, 1)
HOSTILE_TITLE = '<script>alert("title")</script>'
HOSTILE_BODY = (
    '<img src=x onerror="alert(1)"> [click](javascript:alert(2)) <a href="javascript:alert(3)">x</a>\n\n'
    "<script>alert(4)</script> **safe bold** [fine](https://help.example/a)"
)


def live_tags(html: str) -> list[str]:
    """The tags a browser would make of an article's rendered body (escaped text is not one)."""
    return re.findall(r"<[a-z][^>]*>", html)


def harmless(html: str) -> bool:
    tags = live_tags(html)
    return bool(tags) and not [
        t for t in tags if "javascript" in t or "onerror" in t or t.startswith(("<img", "<script"))
    ]


@pytest.fixture
async def inbox() -> AsyncIterator[Inbox]:
    w, server = await start_inbox(WITH_KB)
    assert w.tenant.knowledge.public_categories == ["billing"]
    async with server:
        yield Inbox(w, server)


def article_id(location: str) -> str:
    match = re.search(r"/knowledge/([0-9A-Z]+)\?done=", location)
    assert match, location
    return match.group(1)


async def test_a_supervisor_writes_sends_for_review_and_publishes_through_the_pages(inbox: Inbox) -> None:
    client, token = await logged_in(inbox, "sue")
    async with client:
        form = {"csrf": token, "title": "Reading your meter", "body": "Open the *cupboard*.", "category": "billing",
                "locale": "en", "format": "markdown"}  # fmt: skip
        response = await client.post("/inbox/t/acme/knowledge/new", data=form, allow_redirects=False)
        assert response.status == 303
        article = article_id(response.headers["Location"])
        for step, done in (("submit", "Article sent for review."), ("publish", "Article published.")):
            response = await client.post(f"/inbox/t/acme/knowledge/{article}/move", data={"csrf": token, "step": step})
            assert response.status == 200 and done in await response.text()
        page = await response.text()
        assert "<em>cupboard</em>" in page and "Published" in page
        assert "sue</strong> published it" in page and "sue</strong> wrote the first draft" in page
        assert f"/help/acme/a/{article}" in page  # public category: the customers' page is linked

        listing = await (await client.get("/inbox/t/acme/knowledge?q=meters")).text()
        assert "Reading your meter" in listing


async def test_people_are_shown_by_their_names_in_the_history_and_the_list(inbox: Inbox) -> None:
    w = inbox.world
    await accounts.add(w.store, "ann", PASSWORD, "admin", {}, name="Ann Lee")
    draft = articles.Draft(title="Meter", body="Read it.", category="billing", locale="en")
    article = await articles.create(w.store, w.tenant, draft, actor="ann", role="admin")
    client, _token = await logged_in(inbox, "sue")
    async with client:
        page = await (await client.get(f"/inbox/t/acme/knowledge/{article.id}")).text()
        listing = await (await client.get("/inbox/t/acme/knowledge")).text()
    assert "<strong>Ann Lee</strong> wrote the first draft" in page and "<td>Ann Lee</td>" in listing


async def test_an_agent_reads_published_articles_only_and_cannot_write_or_publish(inbox: Inbox) -> None:
    w = inbox.world
    live = await published(w, "Refunds", "Five days.")
    draft = await articles.create(
        w.store, w.tenant, articles.Draft(title="Secret draft", body="Soon.", category="billing", locale="en"),
        actor="sue", role="supervisor",
    )  # fmt: skip
    await articles.move(w.store, w.tenant, draft.id, "submit", actor="sue", role="supervisor")
    client, token = await logged_in(inbox, "amy")
    async with client:
        listing = await (await client.get("/inbox/t/acme/knowledge")).text()
        assert "Refunds" in listing and "Secret draft" not in listing and "Write an article" not in listing
        page = await (await client.get(f"/inbox/t/acme/knowledge/{live.id}")).text()
        assert "Five days." in page and 'id="kb-workflow"' not in page
        assert (await client.get(f"/inbox/t/acme/knowledge/{draft.id}")).status == 404
        response = await client.post(
            f"/inbox/t/acme/knowledge/{draft.id}/move", data={"csrf": token, "step": "publish"}
        )
        assert response.status == 404  # a draft is not even there for an agent
        response = await client.post(f"/inbox/t/acme/knowledge/{live.id}/move", data={"csrf": token, "step": "archive"})
        assert response.status == 403
        assert (await client.get("/inbox/t/acme/knowledge/new")).status == 403
        form = {"csrf": token, "title": "Mine", "body": "x", "category": "billing", "locale": "en"}
        assert (await client.post("/inbox/t/acme/knowledge/new", data=form)).status == 403
    assert (await articles.get(w.store, "acme", draft.id)).status == "review"
    assert [a.id for a in await articles.listing(w.store, "acme")] == [draft.id, live.id]


async def test_another_tenants_knowledge_base_and_articles_are_404(inbox: Inbox) -> None:
    w = inbox.world
    theirs = await published(w, "Acme only", "Internal.")
    client, _token = await logged_in(inbox, "gus")
    async with client:
        assert (await client.get("/inbox/t/acme/knowledge")).status == 404
        assert (await client.get(f"/inbox/t/acme/knowledge/{theirs.id}")).status == 404
        assert (await client.get(f"/inbox/t/globex/knowledge/{theirs.id}")).status == 404
        assert (await client.get("/inbox/t/acme/knowledge/search.json?q=acme")).status == 404
        answer = await (await client.get("/inbox/t/globex/knowledge/search.json?q=acme")).json()
        assert answer["articles"] == []


async def test_a_hostile_article_is_shown_as_text_and_its_script_links_are_dropped(inbox: Inbox) -> None:
    w = inbox.world
    hostile = await published(w, HOSTILE_TITLE, HOSTILE_BODY)
    client, _token = await logged_in(inbox, "amy")
    async with client:
        page = await (await client.get(f"/inbox/t/acme/knowledge/{hostile.id}")).text()
        listing = await (await client.get("/inbox/t/acme/knowledge")).text()
    for html in (page, listing):
        assert "<script>alert" not in html and "&lt;script&gt;alert(&#34;title&#34;)" in html
    assert harmless(page.split('<div class="kb-body">')[1].split("</article>")[0])
    assert "<strong>safe bold</strong>" in page and 'href="https://help.example/a"' in page


async def test_a_stale_edit_is_refused_and_keeps_what_was_typed(inbox: Inbox) -> None:
    w = inbox.world
    article = await articles.create(
        w.store, w.tenant, articles.Draft(title="Meter", body="One.", category="billing", locale="en"),
        actor="sue", role="supervisor",
    )  # fmt: skip
    client, token = await logged_in(inbox, "sue")
    async with client:
        page = await (await client.get(f"/inbox/t/acme/knowledge/{article.id}/edit")).text()
        version = re.search(r'name="version" value="(\d+)"', page).group(1)
        await articles.edit(w.store, w.tenant, article.id, articles.Draft(title="Meter", body="Two.",
                            category="billing", locale="en"), actor="ann", role="admin", version=1)  # fmt: skip
        form = {"csrf": token, "version": version, "title": "Meter", "body": "My careful words.", "category": "billing",
                "locale": "en", "format": "markdown"}  # fmt: skip
        response = await client.post(f"/inbox/t/acme/knowledge/{article.id}/edit", data=form)
        assert response.status == 409
        assert "My careful words." in await response.text() and "someone changed" in await response.text()
        form["body"], form["title"] = "Bad", ""
        form["version"] = "2"
        response = await client.post(f"/inbox/t/acme/knowledge/{article.id}/edit", data=form)
        assert response.status == 422 and "title: an article needs a title" in await response.text()
    assert (await articles.get(w.store, "acme", article.id)).body == "Two."


async def test_the_reply_box_search_finds_articles_and_an_insertion_is_counted_once_per_conversation(
    inbox: Inbox,
) -> None:
    w = inbox.world
    refunds = await published(w, "Refunds", "Refunds take **five** days.")
    internal = await published(w, "Refund by hand", "Use the old tool.", category="internal")
    await published(w, "返金について", "返金には5日かかります。", locale="ja")
    conversation = await w.arrive(address="+15551230000", body="where is my refund")
    client, token = await logged_in(inbox, "amy")
    async with client:
        await client.post("/inbox/presence", data={"presence": "available", "csrf": token})
        await w.arrive(address="+15551230000", body="hello?")
        [offer] = await w.offers("amy")
        await client.post(f"/inbox/t/acme/offers/{offer['reservation']}/accept", data={"csrf": token})
        page = await (await client.get(f"/inbox/t/acme/c/{conversation}")).text()
        assert 'id="kb-panel"' in page
        answer = await (await client.get("/inbox/t/acme/knowledge/search.json?q=refunding")).json()
        found = {a["id"]: a for a in answer["articles"]}
        assert set(found) == {refunds.id, internal.id}
        assert found[refunds.id]["text"] == "Refunds take five days."
        assert found[refunds.id]["link"].endswith(f"/help/acme/a/{refunds.id}")
        assert found[internal.id]["link"] == ""  # not a public category: no link for customers
        japanese = await (await client.get("/inbox/t/acme/knowledge/search.json?q=返金")).json()
        assert [a["title"] for a in japanese["articles"]] == ["返金について"]

        url = f"/inbox/t/acme/c/{conversation}/knowledge/{refunds.id}/inserted"
        assert (await client.post(url)).status == 403  # no CSRF token
        for _ in range(2):
            response = await client.post(url, headers={"X-CSRF-Token": token})
            assert (await response.json()) == {"inserted": 1}
        response = await client.post(f"/inbox/t/acme/c/{conversation}/knowledge/{internal.id}x/inserted",
                                     headers={"X-CSRF-Token": token})  # fmt: skip
        assert response.status == 404
    gus, gus_token = await logged_in(inbox, "gus")
    async with gus:  # another tenant's agent cannot count (nor learn that the conversation exists)
        assert (await gus.post(url, headers={"X-CSRF-Token": gus_token})).status == 404
    assert (await articles.get(w.store, "acme", refunds.id)).inserted == 1
