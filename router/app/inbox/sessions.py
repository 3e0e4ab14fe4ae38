"""Inbox sessions and CSRF.

The cookie holds a random session id; Redis holds the session under the id's
SHA-256 (a copy of the store has no live cookie), with an idle expiry that every
request renews. Each session has its own CSRF token, which every POST must carry
(form field `csrf`, the first field of a multipart form, or header `X-CSRF-Token`).
The login form, before any session, is protected by a double-submit cookie.

Without a session, a page the browser navigates to is redirected to the login, which
returns to it afterwards (`?next=`, a path of the inbox only); anything a script asks
for (a JSON route, a fetch, the live socket) is answered 401, so the page sees that its
session is gone instead of silently following a redirect to the login form's HTML.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from urllib.parse import quote, urlsplit

import msgspec
from aiohttp import BodyPartReader, MultipartReader, web

from router.app.inbox import accounts
from router.appkeys import SETTINGS, STORE
from router.keys import AccountKeys
from router.store import Store

log = logging.getLogger(__name__)

COOKIE = "cr_session"
LOGIN_COOKIE = "cr_login_csrf"
IDLE_SECONDS = 8 * 3600  # a session unused this long is gone
MAX_SECONDS = 24 * 3600  # and none lives longer than this, however busy (a stolen cookie expires)
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
PREFIX = "/inbox"
LOGIN = f"{PREFIX}/login"
PUBLIC = {LOGIN, f"{LOGIN}/code", "/inbox/static/inbox.css"}  # reachable without a session
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
NEXT_MAX = 1000  # a longer `next` is dropped: the inbox's own paths are short

USER = web.RequestKey("inbox_user", accounts.User)


class Session(msgspec.Struct, frozen=True, kw_only=True):
    digest: str
    login: str
    csrf: str
    created_at: int


SESSION = web.RequestKey("inbox_session", Session)
# A multipart form's reader, past its CSRF field (the first), for the handler to read on.
MULTIPART = web.RequestKey("inbox_multipart", MultipartReader)


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


async def create(store: Store, login: str) -> tuple[str, Session]:
    """A new session for a login: (the cookie value, the session)."""
    session_id = secrets.token_urlsafe(32)
    session = Session(
        digest=_digest(session_id), login=login, csrf=secrets.token_urlsafe(32), created_at=int(time.time())
    )
    key = AccountKeys.session(session.digest)
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping={"login": login, "csrf": session.csrf, "created_at": str(session.created_at)})
        pipe.expire(key, IDLE_SECONDS)
        pipe.sadd(AccountKeys.user_sessions(login), session.digest)
        await pipe.execute()
    return session_id, session


async def load(store: Store, session_id: str) -> Session | None:
    if not session_id or len(session_id) > 128:
        return None
    digest = _digest(session_id)
    key = AccountKeys.session(digest)
    record = await store.redis.hgetall(key)
    if not record or b"login" not in record:
        return None
    session = Session(
        digest=digest,
        login=record[b"login"].decode(),
        csrf=record[b"csrf"].decode(),
        created_at=int(record.get(b"created_at", b"0")),
    )
    if time.time() - session.created_at > MAX_SECONDS:
        await destroy(store, session)
        return None
    await store.redis.expire(key, IDLE_SECONDS)
    return session


async def destroy(store: Store, session: Session) -> None:
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.delete(AccountKeys.session(session.digest))
        pipe.srem(AccountKeys.user_sessions(session.login), session.digest)
        await pipe.execute()


def secure_cookies(request: web.Request) -> bool:
    """Secure cookies when the public address is https (behind a TLS proxy, say)."""
    public = request.app[SETTINGS].public_url
    return public.startswith("https://") if public else request.secure


def set_cookie(response: web.StreamResponse, request: web.Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PREFIX,
        httponly=True,
        samesite="Lax",
        secure=secure_cookies(request),
    )


def tokens_match(expected: str, given: str) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(expected.encode(), given.encode())


def _origins(request: web.Request) -> set[str]:
    """This site's origins: the one asked for, and the public address's."""
    allowed = {f"{request.scheme}://{request.host}"}
    public = request.app[SETTINGS].public_url
    if public:
        allowed.add("/".join(public.split("/")[:3]))
    return allowed


def same_origin(request: web.Request) -> bool:
    """A request's Origin (when the browser sends one) must be this site's own."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not sent by every browser on same-origin form posts; the CSRF token decides
    return origin in _origins(request)


async def _csrf_given(request: web.Request) -> str:
    header = request.headers.get(CSRF_HEADER, "")
    if header:
        return header
    if request.content_type == "multipart/form-data":
        # Read as a stream, so a file is never buffered whole before its checks: the token
        # must be the form's first field, and the handler reads the rest from MULTIPART.
        reader = await request.multipart()
        part = await reader.next()
        if not isinstance(part, BodyPartReader) or part.name != CSRF_FIELD:
            return ""
        request[MULTIPART] = reader
        value = await part.read_chunk(256)  # a token is 43 characters: never read a huge field whole
        return value.decode("utf-8", "replace") if part.at_eof() else ""
    if request.content_type == "application/x-www-form-urlencoded":
        form = await request.post()
        value = form.get(CSRF_FIELD, "")
        return value if isinstance(value, str) else ""
    return ""


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The inbox's (a sub-application's, so only its own paths): a session for every
    page but the login, and a CSRF token on every POST."""
    path = request.path
    if request.method not in SAFE_METHODS and not same_origin(request):
        raise web.HTTPForbidden(text="cross-origin request refused")
    if path in PUBLIC:
        return await handler(request)
    store = request.app[STORE]
    session = await load(store, request.cookies.get(COOKIE, ""))
    user = await accounts.get(store, session.login) if session else None
    if session is None or user is None:
        if not _navigation(request):
            raise web.HTTPUnauthorized(text="log in first")
        if request.method in SAFE_METHODS:
            raise web.HTTPFound(login_url(request.path_qs))
        # A form posted after the session ended (the page had no time to notice): the
        # login, then back to the page the form was on. What it posted is not replayed.
        raise web.HTTPSeeOther(login_url(_referred_path(request)))
    if request.method not in SAFE_METHODS and not tokens_match(session.csrf, await _csrf_given(request)):
        log.warning("CSRF token missing or wrong: %s %s by %s", request.method, path, user.login)
        raise web.HTTPForbidden(text="missing or wrong CSRF token: reload the page and try again")
    request[SESSION] = session
    request[USER] = user
    return await handler(request)


def _navigation(request: web.Request) -> bool:
    """A browser going to a page (answered with the login), rather than a script's fetch,
    a JSON route or the live socket (answered 401, which a script can act on: a redirect
    it would follow silently). Browsers say which with Sec-Fetch-Mode; a client that
    sends none is taken as navigating, except to a JSON route, and posts only count when
    a browser says so, so a script's or a tool's POST without a session stays a 401."""
    if request.path.endswith(".json") or request.headers.get("Upgrade", "").lower() == "websocket":
        return False
    mode = request.headers.get("Sec-Fetch-Mode")
    if request.method in SAFE_METHODS:
        return mode in (None, "navigate")
    return mode == "navigate"


def _referred_path(request: web.Request) -> str:
    """The path of the page a form was posted from, when it is one of ours."""
    parts = urlsplit(request.headers.get("Referer", ""))
    if f"{parts.scheme}://{parts.netloc}" not in _origins(request):
        return ""
    return parts.path + (f"?{parts.query}" if parts.query else "")


def safe_next(value: str) -> str:
    """Where the login may send the browser afterwards: a path of the inbox on this site,
    or "" (so a link cannot make our login page send anyone elsewhere: no scheme, no
    host, no `//` or backslash that a browser would read as another host, nothing past
    the inbox)."""
    if not value or len(value) > NEXT_MAX or "\\" in value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return ""
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or value.startswith("//"):
        return ""
    if not (parts.path == PREFIX or parts.path.startswith(PREFIX + "/")) or "//" in parts.path:
        return ""
    if parts.path in (LOGIN, f"{PREFIX}/logout") or ".." in parts.path.split("/"):
        return ""
    return value


def login_url(next_path: str) -> str:
    """The login page, returning to next_path afterwards if it is a safe one (the inbox
    itself, where a login lands anyway, needs no `next`)."""
    target = safe_next(next_path)
    parts = urlsplit(target)
    # a `done` message was said once; it is not said again after the login
    query = "&".join(pair for pair in parts.query.split("&") if pair and not pair.startswith("done="))
    target = parts.path + (f"?{query}" if query else "")
    if not target or target in (PREFIX, PREFIX + "/"):
        return LOGIN
    return f"{LOGIN}?next={quote(target, safe='/')}"


def require_role(*roles: str) -> Callable[[Handler], Handler]:
    """Only these roles may use the handler; others get 403."""

    def wrap(handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if request[USER].role not in roles:
                raise web.HTTPForbidden(text="not for your role")
            return await handler(request)

        guarded.__name__ = handler.__name__
        guarded.__doc__ = handler.__doc__
        return guarded

    return wrap
