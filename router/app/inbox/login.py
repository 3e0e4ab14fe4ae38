"""Logging in and out of the inbox.

The login form has no session yet, so its CSRF token is a double-submit cookie.
A successful login always gets a new session id (no session fixation); a failed
one says no more than "wrong login or password", or "too many attempts" for any name
tried too often, existing or not (so the answer never tells which logins exist).
"""

from __future__ import annotations

import logging
import secrets

from aiohttp import web

from router.app.inbox import accounts, sessions
from router.app.inbox.rendering import read_form, render
from router.app.inbox.sessions import SESSION
from router.appkeys import STORE

log = logging.getLogger(__name__)

WRONG = "Wrong login or password."
TOO_MANY = "Too many attempts, try again later."


async def login_page(request: web.Request, error: str = "", status: int = 200) -> web.Response:
    token = secrets.token_urlsafe(32)
    response = render(request, "login.html", status=status, login_csrf=token, error=error)
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
        return await login_page(request, error, status=401)
    old = await sessions.load(store, request.cookies.get(sessions.COOKIE, ""))
    if old is not None:
        await sessions.destroy(store, old)  # a new id on every login: no session fixation
    session_id, _session = await sessions.create(store, user.login)
    response = web.HTTPSeeOther("/inbox/floor" if user.supervises and not any(user.memberships.values()) else "/inbox")
    sessions.set_cookie(response, request, sessions.COOKIE, session_id, max_age=sessions.IDLE_SECONDS)
    response.del_cookie(sessions.LOGIN_COOKIE, path=sessions.PREFIX)
    log.info("inbox login: %s", user.login)
    raise response


async def logout(request: web.Request) -> web.Response:
    await sessions.destroy(request.app[STORE], request[SESSION])
    response = web.HTTPSeeOther("/inbox/login")
    response.del_cookie(sessions.COOKIE, path=sessions.PREFIX)
    raise response


def routes(app: web.Application) -> None:
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
