"""The desk's language: a login picks one of the catalogues (router/i18n.py) from the
selector every page shows, or "" to follow the browser's Accept-Language again. The choice
is stored with the login, so it follows the agent to any machine."""

from __future__ import annotations

from aiohttp import web

from router import i18n
from router.app.inbox import accounts
from router.app.inbox.rendering import read_form
from router.app.inbox.sessions import USER, safe_next
from router.appkeys import STORE


async def choose(request: web.Request) -> web.Response:
    form = await read_form(request)
    locale = form.get("locale", "")
    if locale and locale not in i18n.locales():
        raise web.HTTPBadRequest(text=f"locale must be one of {', '.join(i18n.locales())}, or empty for the browser's")
    await accounts.set_locale(request.app[STORE], request[USER].login, locale)
    raise web.HTTPSeeOther(safe_next(form.get("next", "")) or "/inbox")


def routes(app: web.Application) -> None:
    app.router.add_post("/language", choose)
