"""An ended session, as each kind of request sees it: a page the browser goes to gets the
login (which returns to that page afterwards, and only ever to a page of the inbox); a
script's request gets 401, which it can act on, never a redirect it would follow."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from router.app.inbox import accounts, sessions
from tests.router.test_inbox_pages import (  # noqa: F401 - cheap_hashes: autouse
    PASSWORD,
    Inbox,
    cheap_hashes,
    csrf_of,
    logged_in,
    start_inbox,
)


@pytest.fixture
async def inbox() -> AsyncIterator[Inbox]:
    w, server = await start_inbox()
    async with server:
        yield Inbox(w, server)


async def _conversation(inbox: Inbox) -> str:
    w = inbox.world
    return await w.assigned_to("amy", body="my meter")


async def test_a_script_gets_401_and_a_browser_the_login_that_returns_to_its_page(inbox: Inbox) -> None:
    conversation = await _conversation(inbox)
    page = f"/inbox/t/acme/c/{conversation}"
    async with inbox.client() as client:
        for path, headers in (
            ("/inbox/state.json", {}),
            ("/inbox/session.json", {}),
            (f"{page}/messages.json", {"Sec-Fetch-Mode": "navigate"}),  # a JSON route is a script's, however asked
            (page, {"Sec-Fetch-Mode": "cors"}),  # fetch() from a page
            (page, {"Sec-Fetch-Mode": "same-origin"}),
        ):
            response = await client.get(path, headers=headers, allow_redirects=False)
            assert response.status == 401, (path, headers)
        for headers in ({"Sec-Fetch-Mode": "navigate"}, {}):  # a browser's link, a client that says nothing
            response = await client.get(page, headers=headers, allow_redirects=False)
            assert response.status == 302 and response.headers["Location"] == f"/inbox/login?next={page}"
        # a form posted from that page after the session ended: the login, then back to the page
        posted = await client.post(
            f"{page}/reply",
            data={"body": "kept in the page, not replayed"},
            headers={"Sec-Fetch-Mode": "navigate", "Referer": str(inbox.server.make_url(f"{page}?done=accepted"))},
            allow_redirects=False,
        )
        assert posted.status == 303 and posted.headers["Location"] == f"/inbox/login?next={page}"
        # a script's post, or one from a tool that says nothing of itself, stays a plain 401
        assert (await client.post(f"{page}/reply", data={"body": "x"}, allow_redirects=False)).status == 401
        foreign = await client.post(
            "/inbox/presence",
            data={"presence": "available"},
            headers={"Sec-Fetch-Mode": "navigate", "Referer": "https://evil.example/inbox/t/acme"},
            allow_redirects=False,
        )
        assert foreign.status == 303 and foreign.headers["Location"] == "/inbox/login"
    assert len(await inbox.world.store.redis.lrange(inbox.world.keys.conversation_log(conversation), 0, -1)) == 1


async def test_the_login_goes_back_to_the_page_named_by_next(inbox: Inbox) -> None:
    conversation = await _conversation(inbox)
    page = f"/inbox/t/acme/c/{conversation}"
    async with inbox.client() as client:
        form = await client.get("/inbox/login", params={"next": page})
        html = await form.text()
        assert f'<input type="hidden" name="next" value="{page}">' in html
        data = {"login": "amy", "password": "wrong", "csrf": csrf_of(html), "next": page}
        wrong = await client.post("/inbox/login", data=data, allow_redirects=False)
        assert wrong.status == 401 and f'name="next" value="{page}"' in await wrong.text()  # kept for the next try
        data.update(password=PASSWORD, csrf=csrf_of(await wrong.text()))
        response = await client.post("/inbox/login", data=data, allow_redirects=False)
        assert response.status == 303 and response.headers["Location"] == page
        assert (await client.get(page)).status == 200


@pytest.mark.parametrize(
    "next_path",
    [
        "https://evil.example/inbox",
        "//evil.example/inbox",
        "/\\evil.example/inbox",
        "\\\\evil.example",
        "/inbox//evil.example",
        "/inboxes",
        "/webchat/acme/demo",
        "/inbox/../webchat/acme/demo",
        "/inbox/login",
        "/inbox/t/acme\r\nSet-Cookie: x=1",
        "javascript:alert(1)",
        "/inbox/" + "x" * sessions.NEXT_MAX,
    ],
)
async def test_a_next_that_leaves_the_inbox_is_ignored(inbox: Inbox, next_path: str) -> None:
    assert sessions.safe_next(next_path) == ""
    async with inbox.client() as client:
        form = await client.get("/inbox/login", params={"next": next_path})
        assert 'name="next"' not in await form.text()
        data = {"login": "amy", "password": PASSWORD, "csrf": csrf_of(await form.text()), "next": next_path}
        response = await client.post("/inbox/login", data=data, allow_redirects=False)
        assert response.status == 303 and response.headers["Location"] == "/inbox"


async def test_session_json_answers_while_the_session_lasts(inbox: Inbox) -> None:
    client, _token = await logged_in(inbox, "amy")
    async with client:
        response = await client.get("/inbox/session.json")
        assert response.status == 200 and (await response.json())["login"] == "amy"
        await accounts.set_password(inbox.world.store, "amy", "a brand new long password")
        assert (await client.get("/inbox/session.json", allow_redirects=False)).status == 401
