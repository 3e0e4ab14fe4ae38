"""A tenant's public help centre: only published articles of public categories, under the
tenant's name, escaped; the widget's suggestions readable by the chat's own sites only;
"this answered my question" counted as a deflected contact; a flood refused."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from router.app import help_centre, web
from router.knowledge import articles
from router.settings import Settings
from tests.factories import World, world
from tests.router.knowledge.factories import TWO_TENANTS, published
from tests.router.test_inbox_knowledge import HOSTILE_BODY, HOSTILE_TITLE, harmless

WITH_CHAT = (
    TWO_TENANTS.replace(
        '[[tenants]]\nid = "globex"',
        '[tenants.webchat]\nallowed_origins = ["https://www.acme.example"]\n\n[[tenants]]\nid = "globex"',
        1,
    )
    + '\n[[tenants]]\nid = "initech"\n\n[[tenants.queues]]\nid = "q"\n'
)
SITE = {"Origin": "https://www.acme.example"}


@pytest.fixture
async def client() -> AsyncIterator[tuple[World, TestClient]]:
    w = await world(WITH_CHAT)
    async with TestClient(TestServer(web.application(w.store, w.deployment, Settings()))) as test_client:
        yield w, test_client


async def test_the_help_page_lists_published_articles_of_public_categories_only(client) -> None:
    w, http = client
    public = await published(w, "Paying by card", "Use any card.", category="billing")
    await published(w, "Refund by hand", "The old tool.", category="internal")
    draft = await articles.create(
        w.store, w.tenant, articles.Draft(title="Unfinished", body="x", category="billing", locale="en"),
        actor="sue", role="supervisor",
    )  # fmt: skip
    response = await http.get("/help/acme")
    page = await response.text()
    assert response.status == 200 and "Acme Energy · Help" in page and "#c2410c" in page
    assert "Paying by card" in page and "Refund by hand" not in page and "Unfinished" not in page
    assert "script-src" not in response.headers["Content-Security-Policy"]  # default-src 'none': no script runs
    found = await (await http.get("/help/acme?q=cards")).text()
    assert f"/help/acme/a/{public.id}" in found
    assert (await http.get(f"/help/acme/a/{public.id}")).status == 200
    assert (await http.get(f"/help/acme/a/{draft.id}")).status == 404
    assert (await http.get(f"/help/globex/a/{public.id}")).status == 404  # another tenant's path
    assert (await http.get("/help/initech")).status == 404  # no public category: no help page
    assert (await http.get("/help/nobody")).status == 404


async def test_an_internal_or_archived_article_has_no_public_page(client) -> None:
    w, http = client
    internal = await published(w, "Refund by hand", "The old tool.", category="internal")
    gone = await published(w, "Old prices", "2019.", category="billing")
    await articles.move(w.store, w.tenant, gone.id, "archive", actor="sue", role="supervisor")
    assert (await http.get(f"/help/acme/a/{internal.id}")).status == 404
    assert (await http.get(f"/help/acme/a/{gone.id}")).status == 404


async def test_a_hostile_article_is_escaped_on_the_public_page(client) -> None:
    w, http = client
    hostile = await published(w, HOSTILE_TITLE, HOSTILE_BODY)
    page = await (await http.get(f"/help/acme/a/{hostile.id}")).text()
    assert "<script>" not in page and "&lt;script&gt;alert(&#34;title&#34;)" in page
    assert harmless(page.split('<div class="body">')[1].split("</article>")[0])
    answer = await (await http.get("/help/acme/suggest.json?q=safe bold", headers=SITE)).json()
    assert answer["articles"][0]["title"] == HOSTILE_TITLE  # JSON: the widget puts it in as text


async def test_suggestions_are_readable_by_the_chats_own_site_only_and_prefer_the_visitors_language(client) -> None:
    w, http = client
    english = await published(w, "Reset your password", "Press Forgot password.", category="billing")
    japanese = await published(w, "パスワードの再設定", "パスワードを忘れた場合", category="billing", locale="ja")
    response = await http.get("/help/acme/suggest.json?q=password パスワード&locale=ja-JP", headers=SITE)
    assert response.headers["Access-Control-Allow-Origin"] == "https://www.acme.example"
    assert [a["id"] for a in (await response.json())["articles"]] == [japanese.id]
    answer = await (await http.get("/help/acme/suggest.json?q=password&locale=ja", headers=SITE)).json()
    assert [a["id"] for a in answer["articles"]] == [english.id]  # nothing in Japanese: what answers
    answer = await (await http.get("/help/acme/suggest.json?q=password&locale=en-GB", headers=SITE)).json()
    assert answer["articles"][0]["url"] == f"/help/acme/a/{english.id}"
    elsewhere = await http.get("/help/acme/suggest.json?q=password", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in elsewhere.headers
    assert (await http.get("/help/globex/suggest.json?q=password")).status == 200
    assert (await (await http.get("/help/globex/suggest.json?q=password")).json())["articles"] == []


async def test_this_answered_my_question_counts_a_deflected_contact_from_the_page_or_the_chat(client) -> None:
    w, http = client
    article = await published(w, "Paying by card", "Use any card.", category="billing")
    own = {"Origin": str(http.make_url("")).rstrip("/")}
    response = await http.post(f"/help/acme/a/{article.id}/helped", headers=own, allow_redirects=False)
    assert (response.status, response.headers["Location"]) == (303, f"/help/acme/a/{article.id}?helped=1")
    response = await http.post(f"/help/acme/a/{article.id}/helped", headers={**SITE, "Accept": "application/json"})
    assert await response.json() == {"counted": True}
    assert response.headers["Access-Control-Allow-Origin"] == SITE["Origin"]
    refused = await http.post(f"/help/acme/a/{article.id}/helped", headers={"Origin": "https://evil.example"})
    assert refused.status == 403
    assert (await http.post(f"/help/acme/a/{article.id}/helped")).status == 403  # no Origin: not a browser's
    cross_site = {"Sec-Fetch-Site": "cross-site"}
    assert (await http.post(f"/help/acme/a/{article.id}/helped", headers=cross_site)).status == 403
    assert (await articles.get(w.store, "acme", article.id)).helped == 2
    today = dt.datetime.now(dt.UTC).date().isoformat()  # acme's zone is UTC
    assert await articles.deflected(w.store, "acme") == {today: 2}


async def test_a_flood_from_one_address_is_refused_for_the_rest_of_the_minute(client, monkeypatch) -> None:
    _w, http = client
    monkeypatch.setattr(help_centre, "PER_MINUTE", 3)
    statuses = [(await http.get("/help/acme/suggest.json?q=card", headers=SITE)).status for _ in range(5)]
    assert statuses[:1] == [200] and statuses[-1] == 429


async def test_behind_a_tls_proxy_the_public_addresss_own_page_may_count() -> None:
    w = await world(WITH_CHAT)
    article = await published(w, "Paying by card", "Use any card.", category="billing")
    settings = Settings(public_url="https://router.acme.example")
    async with TestClient(TestServer(web.application(w.store, w.deployment, settings))) as http:
        own = {"Origin": "https://router.acme.example"}
        response = await http.post(f"/help/acme/a/{article.id}/helped", headers=own, allow_redirects=False)
        assert response.status == 303
    assert (await articles.get(w.store, "acme", article.id)).helped == 1
