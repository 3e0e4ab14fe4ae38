"""Logging in and out of the inbox.

The login form has no session yet, so its CSRF token is a double-submit cookie.
A successful login always gets a new session id (no session fixation), and goes back
to the page the agent was on when their session ended (`next`, a path of the inbox
only); a failed one says no more than "wrong login or password", or "too many
attempts" for any name tried too often, existing or not (so the answer never tells
which logins exist). A client that fails too often across names is throttled: 429,
with Retry-After. `/inbox/session.json` tells a page whether its session lasts.

A login with a second factor is two steps: a right password starts a pending login
(its own short-lived cookie, router/app/inbox/second_factor.py), and only the right
code then makes the session. A login that policy requires to have a second factor and
that has none gets a session that can only enrol (router/app/inbox/enrolment.py).
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from urllib.parse import urlencode

from aiohttp import web

from router import audit, events, i18n
from router.app.inbox import accounts, lockout, second_factor, sessions
from router.app.inbox.audit import tenants_of
from router.app.inbox.rendering import locale_of, read_form, render
from router.app.inbox.sessions import SESSION, USER
from router.appkeys import DEPLOYMENT, SETTINGS, STORE
from router.i18n import N_
from router.store import Store

log = logging.getLogger(__name__)

WRONG = N_("Wrong login or password.")
TOO_MANY = N_("Too many attempts, try again later.")
THROTTLED = N_("Too many failed logins from your network. Try again in {minutes} minutes.")
WRONG_CODE = N_("That code is not right. Enter the current code from your app, or a recovery code.")
CODE_LOCKED = N_("Too many wrong codes for this login. Try again later, or ask an admin to lift the lock.")
START_AGAIN = N_("That login step has ended. Log in again.")
PENDING_COOKIE = "cr_pending"
CODE_PATH = f"{sessions.PREFIX}/login/code"
ENROL_PATH = f"{sessions.PREFIX}/second-factor"


def client_address(request: web.Request) -> str:
    """The client's address, through the trusted proxies of TRUSTED_PROXY_HOPS only."""
    return request.app[SETTINGS].client_address(request.remote, request.headers.getall("X-Forwarded-For", []))


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
    client = client_address(request)
    typed = form.get("login", "")[:64]
    try:
        user = await accounts.authenticate(
            store,
            form.get("login", ""),
            form.get("password", ""),
            client=client,
            client_limit=request.app[SETTINGS].login_client_failures,
        )
    except accounts.Throttled as throttled:
        wait = max(1, math.ceil(throttled.until - time.time()))
        log.warning("inbox login throttled: %s (tried %r)", client, typed)
        await _audit_failure(store, "login_throttled", typed, client)
        message = i18n.gettext(locale_of(request), THROTTLED).format(minutes=math.ceil(wait / 60))
        response = await login_page(request, message, status=429, next_path=form.get("next", ""))
        response.headers["Retry-After"] = str(wait)
        return response
    except accounts.LoginFailed as failed:
        log.info("inbox login failed for %r from %s%s", typed, client, " (locked)" if failed.locked_until else "")
        await _audit_failure(store, "login_locked" if failed.locked_until else "login_failed", typed, client)
        # The same words whether or not the login exists: unknown names are locked alike.
        error = TOO_MANY if failed.locked_until else WRONG
        return await login_page(request, error, status=401, next_path=form.get("next", ""))
    next_path = sessions.safe_next(form.get("next", ""))
    if user.second_factor:
        token, _pending = await second_factor.begin(store, user.login)
        response = web.HTTPSeeOther(CODE_PATH + (f"?{urlencode({'next': next_path})}" if next_path else ""))
        sessions.set_cookie(response, request, PENDING_COOKIE, token, max_age=second_factor.PENDING_SECONDS)
        response.del_cookie(sessions.LOGIN_COOKIE, path=sessions.PREFIX)
        log.info("inbox login: %s, password right, asked for the code", user.login)
        raise response
    raise await _start_session(request, user, next_path)


async def code_page(request: web.Request, error: str = "", status: int = 200) -> web.Response:
    """The second step: the code from the app (or a recovery code), for a pending login."""
    pending = await second_factor.pending(request.app[STORE], request.cookies.get(PENDING_COOKIE, ""))
    if pending is None:
        raise web.HTTPSeeOther(f"{sessions.PREFIX}/login")
    next_path = sessions.safe_next(request.query.get("next", ""))
    return render(request, "login_code.html", status=status, login_csrf=pending.csrf, error=error, next_path=next_path)


async def code(request: web.Request) -> web.Response:
    form = await read_form(request)
    store = request.app[STORE]
    pending = await second_factor.pending(store, request.cookies.get(PENDING_COOKIE, ""))
    if pending is None:
        return await _back_to_login(request, START_AGAIN)
    if not sessions.tokens_match(pending.csrf, form.get("csrf", "")):
        raise web.HTTPForbidden(text="missing or wrong CSRF token: reload the page")
    if not await second_factor.try_pending(store, pending):  # counted before judged
        return await _back_to_login(request, START_AGAIN)
    attempt, counted = await lockout.count_code(store, pending.login, client_address(request))
    if counted.locked_until > attempt.at:
        await lockout.code_refused(store, attempt)
        await second_factor.end(store, pending)
        return await _back_to_login(request, CODE_LOCKED)
    judged = counted.codes <= lockout.CODE_MAX_FAILURES  # else it came in behind as many as the window allows
    if not judged or not await second_factor.verify(store, pending.login, form.get("code", "")[:64]):
        log.info("inbox login: wrong second-factor code for %s from %s", pending.login, client_address(request))
        await _audit_failure(store, "code_failed", pending.login, client_address(request))
        if await lockout.code_failed(store, attempt, counted):
            await second_factor.end(store, pending)
            return await _back_to_login(request, CODE_LOCKED)
        return await code_page(request, WRONG_CODE, status=401)
    await lockout.code_succeeded(store, attempt)
    await second_factor.end(store, pending)
    user = await accounts.get(store, pending.login)
    if user is None:  # removed meanwhile
        return await _back_to_login(request, START_AGAIN)
    response = await _start_session(request, user, form.get("next", ""))
    response.del_cookie(PENDING_COOKIE, path=sessions.PREFIX)
    raise response


async def _back_to_login(request: web.Request, error: str) -> web.Response:
    response = await login_page(request, error, status=401)
    response.del_cookie(PENDING_COOKIE, path=sessions.PREFIX)
    return response


async def _start_session(request: web.Request, user: accounts.User, next_path: str = "") -> web.HTTPSeeOther:
    """A new session for a user who has passed every step; the redirect that carries it."""
    store = request.app[STORE]
    old = await sessions.load(store, request.cookies.get(sessions.COOKIE, ""))
    if old is not None:
        await sessions.destroy(store, old)  # a new id on every login: no session fixation
    session_id, _session = await sessions.create(store, user.login)
    response = web.HTTPSeeOther(landing(request, user, next_path))
    sessions.set_cookie(response, request, sessions.COOKIE, session_id, max_age=sessions.IDLE_SECONDS)
    response.del_cookie(sessions.LOGIN_COOKIE, path=sessions.PREFIX)
    log.info("inbox login: %s", user.login)
    await audit.record(store, "login", actor=user.login, client=client_address(request), tenants=tenants_of(user))
    return response


async def _audit_failure(store: Store, action: str, typed: str, client: str) -> None:
    """A failed step, under the name typed (which may be no login at all: then no tenant)."""
    user = await accounts.get(store, typed) if accounts.LOGIN.fullmatch(typed) else None
    await audit.record(store, action, actor=typed, client=client, tenants=tenants_of(user))


def landing(request: web.Request, user: accounts.User, next_path: str = "") -> str:
    """Where a new session starts: enrolment first for a login that must have a second factor,
    else the page the user was on when their last session ended, else their home page."""
    if not user.second_factor and second_factor.required(user, request.app[DEPLOYMENT]):
        return ENROL_PATH
    home = f"{sessions.PREFIX}/floor" if user.supervises and not any(user.memberships.values()) else sessions.PREFIX
    return sessions.safe_next(next_path) or home


async def logout(request: web.Request) -> web.Response:
    await sessions.destroy(request.app[STORE], request[SESSION])
    user = request[USER]
    await audit.record(
        request.app[STORE], "logout", actor=user.login, client=client_address(request), tenants=tenants_of(user)
    )
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
    app.router.add_get("/login/code", code_page)
    app.router.add_post("/login/code", code)
    app.router.add_post("/logout", logout)
