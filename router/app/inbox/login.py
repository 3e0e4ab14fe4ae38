"""Logging in and out of the inbox.

The login form has no session yet, so its CSRF token is a double-submit cookie.
A successful login always gets a new session id (no session fixation), and goes back
to the page the agent was on when their session ended (`next`, a path of the inbox
only); a failed one says no more than "wrong login or password", or "too many
attempts" for any name tried too often, existing or not (so the answer never tells
which logins exist). `/inbox/session.json` tells a page whether its session lasts.
"""

from __future__ import annotations

import logging
import secrets

from aiohttp import web

from router import events
from router.app.inbox import accounts, sessions
from router.app.inbox.rendering import read_form, render
from router.app.inbox.sessions import SESSION, USER
from router.appkeys import STORE

log = logging.getLogger(__name__)

WRONG = "Wrong login or password."
TOO_MANY = "Too many attempts, try again later."


async def login_page(
    request: web.Request, error: str = "", status: int = 200, next_path: str | None = None
) -> web.Response:
    token = secrets.token_urlsafe(32)
    next_path = sessions.safe_next(next_path if next_path is not None else request.query.get("next", ""))
    response = render(request, "login.html", status=status, login_csrf=token, error=error, next_path=next_path)
    sessions.set_cookie(response, request, sessions.LOGIN_COOKIE, token, max_age=3600)
    return response


async def login(request: web.Request) -> web.Response:
    form = await read_form(request)
    if not sessions.tokens_match(request.cookies.get(sessions.LOGIN_COOKIE, ""), form.get("csrf", "")):
        raise web.HTTPForbidden(text="missing or wrong CSRF token: reload the login page")
    store = request.app[STORE]
    try:
        user = await accounts.authenticate(store, form.get("login", ""), form.get("password", ""))
    except accounts.LoginFailed as failed:
        log.info("inbox login failed for %r%s", form.get("login", "")[:64], " (locked)" if failed.locked_until else "")
        # The same words whether or not the login exists: unknown names are locked alike.
        error = TOO_MANY if failed.locked_until else WRONG
        return await login_page(request, error, status=401, next_path=form.get("next", ""))
    old = await sessions.load(store, request.cookies.get(sessions.COOKIE, ""))
    if old is not None:
        await sessions.destroy(store, old)  # a new id on every login: no session fixation
    session_id, _session = await sessions.create(store, user.login)
    home = "/inbox/floor" if user.supervises and not any(user.memberships.values()) else "/inbox"
    response = web.HTTPSeeOther(sessions.safe_next(form.get("next", "")) or home)
    sessions.set_cookie(response, request, sessions.COOKIE, session_id, max_age=sessions.IDLE_SECONDS)
    response.del_cookie(sessions.LOGIN_COOKIE, path=sessions.PREFIX)
    log.info("inbox login: %s", user.login)
    raise response


async def logout(request: web.Request) -> web.Response:
    await sessions.destroy(request.app[STORE], request[SESSION])
    response = web.HTTPSeeOther("/inbox/login")
    response.del_cookie(sessions.COOKIE, path=sessions.PREFIX)
    raise response


async def session_state(request: web.Request) -> web.Response:
    """200 while the session lasts (the sessions middleware answers 401 once it has ended):
    a page asks before it reconnects its live socket, whose refusal a script cannot read."""
    return web.json_response({"login": request[USER].login, "now": events.now_ms()})


def routes(app: web.Application) -> None:
    app.router.add_get("/login", login_page)
    app.router.add_get("/session.json", session_state)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
