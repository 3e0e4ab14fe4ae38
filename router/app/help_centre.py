"""A tenant's public help centre: its published articles of public categories, for customers.

- GET /help/{tenant}: the help page under the tenant's name and colour, with a search.
- GET /help/{tenant}/a/{article}: one article, with "this answered my question".
- GET /help/{tenant}/suggest.json?q=&locale=: what the chat widget suggests while the visitor
  types, readable by the pages the tenant's chat is allowed on (CORS, as the widget's own).
- POST /help/{tenant}/a/{article}/helped: "this answered my question", from the page or the
  widget: a contact deflected, counted on the article and per day for the reports.

Nothing here needs a login, so nothing here shows what is not public: an unknown tenant,
a tenant without a public category, a draft, an archived or an internal article are all the
same 404. Every request counts against a per-address limit (shared by the web processes, as
the chat's), and the pages run no script and escape everything an author wrote
(router/knowledge/markup.py).
"""

from __future__ import annotations

import datetime as dt
import logging
from zoneinfo import ZoneInfo

from aiohttp import web

from channels.webchat import limits
from channels.webchat._runtime import client_ip
from channels.webchat.origins import is_allowed, request_origin
from router.app.inbox.access import ID
from router.app.inbox.rendering import brand
from router.appkeys import DEPLOYMENT, SETTINGS, STORE
from router.config import Tenant
from router.errors import UnknownTenant
from router.knowledge import articles
from router.knowledge.articles import Article
from router.knowledge.markup import to_html, to_text
from router.templating import pages

log = logging.getLogger(__name__)

# requests per client address and minute: a visitor typing a question asks a few times (the
# widget waits for a pause), an office behind one address has many visitors
PER_MINUTE = 120
SUGGESTED = 3  # articles the widget shows at once
MAX_QUERY = 200
LISTED = 20  # articles per category on the help page
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)  # no script at all; the inline style is ours (the brand colour), never an author's


def _tenant(request: web.Request) -> Tenant:
    try:
        tenant = request.app[DEPLOYMENT].tenant(request.match_info["tenant"])
    except UnknownTenant:
        raise web.HTTPNotFound(text="no such help page") from None
    if not tenant.knowledge.public_categories:
        raise web.HTTPNotFound(text="no such help page")
    return tenant


async def _limit(request: web.Request, tenant: Tenant) -> None:
    wait = await limits.take(request.app[STORE], tenant.id, [("help-ip", client_ip(request), PER_MINUTE)])
    if wait:
        raise web.HTTPTooManyRequests(
            text="too many requests: try again in a minute", headers={"Retry-After": f"{wait}"}
        )


def _cors(request: web.Request, tenant: Tenant) -> dict[str, str]:
    """Let the pages the tenant's chat runs on read the answer (and nobody else's page)."""
    if tenant.webchat is None or not is_allowed(request, tenant.webchat):
        return {}
    return {"Access-Control-Allow-Origin": request.headers["Origin"], "Vary": "Origin"}


def _public(tenant: Tenant, article: Article) -> bool:
    return article.status == "published" and article.category in tenant.knowledge.public_categories


def _locale(tenant: Tenant, wanted: str) -> str:
    """The tenant's locale a browser's language asks for ("" if none: then every locale)."""
    wanted = wanted.strip()
    for locale in tenant.knowledge.locales:
        if locale.lower() == wanted.lower():
            return locale
    primary = wanted.split("-")[0].lower()
    return next((loc for loc in tenant.knowledge.locales if loc.split("-")[0].lower() == primary), "")


def _page(name: str, tenant: Tenant, status: int = 200, **context: object) -> web.Response:
    body = pages().get_template(f"help/{name}").render(tenant=tenant, brand=brand(tenant), **context)
    headers = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}
    return web.Response(text=body, status=status, content_type="text/html", headers=headers)


async def _find(request: web.Request, tenant: Tenant, query: str, locale: str, limit: int) -> list[Article]:
    return await articles.find(
        request.app[STORE], tenant, query, categories=tenant.knowledge.public_categories, locale=locale, limit=limit
    )


async def home(request: web.Request) -> web.Response:
    tenant = _tenant(request)
    await _limit(request, tenant)
    query = request.query.get("q", "")[:MAX_QUERY].strip()
    found = await _find(request, tenant, query, "", 20) if query else []
    public = tenant.knowledge.public_categories
    listed = await articles.listing(request.app[STORE], tenant.id, statuses=("published",))
    sections = [
        (category.name, [a for a in listed if a.category == category.id][:LISTED])
        for category in tenant.knowledge.categories
        if category.id in public
    ]
    return _page("index.html", tenant, query=query, found=found, sections=sections)


async def _article(request: web.Request, tenant: Tenant) -> Article:
    try:
        article = await articles.get(request.app[STORE], tenant.id, request.match_info["article"])
    except articles.NotFound:
        raise web.HTTPNotFound(text="no such article") from None
    if not _public(tenant, article):
        raise web.HTTPNotFound(text="no such article")
    return article


async def article_page(request: web.Request) -> web.Response:
    tenant = _tenant(request)
    await _limit(request, tenant)
    article = await _article(request, tenant)
    return _page(
        "article.html", tenant, article=article, body=to_html(article.body, article.format),
        helped=request.query.get("helped") == "1",
    )  # fmt: skip


async def suggest(request: web.Request) -> web.Response:
    """The widget's suggestions: a few published public articles for what the visitor typed."""
    tenant = _tenant(request)
    headers = _cors(request, tenant)
    await _limit(request, tenant)
    query = request.query.get("q", "")[:MAX_QUERY].strip()
    locale = _locale(tenant, request.query.get("locale", ""))
    found = await _find(request, tenant, query, locale, SUGGESTED) if query else []
    if query and locale and not found:  # nothing in the visitor's language: anything that answers
        found = await _find(request, tenant, query, "", SUGGESTED)
    items = [
        {"id": a.id, "title": a.title, "locale": a.locale, "snippet": to_text(a.body, a.format)[:140],
         "url": f"/help/{tenant.id}/a/{a.id}"}
        for a in found
    ]  # fmt: skip
    return web.json_response({"articles": items}, headers={**headers, "Cache-Control": "no-store"})


def _same_site(request: web.Request, tenant: Tenant) -> bool:
    """A POST from our own page or from a page the tenant's chat runs on: browsers send Origin
    with a POST, so another site cannot inflate the count (one that sends none must say
    Sec-Fetch-Site: same-origin)."""
    origin = request_origin(request)
    if not origin:
        return request.headers.get("Sec-Fetch-Site") == "same-origin"
    public = request.app[SETTINGS].public_url
    if origin in {f"{request.scheme}://{request.host}".lower(), "/".join(public.split("/")[:3]).lower()}:
        return True
    return tenant.webchat is not None and is_allowed(request, tenant.webchat)


async def helped(request: web.Request) -> web.Response:
    tenant = _tenant(request)
    if not _same_site(request, tenant):
        log.warning("help vote for %s refused: origin %r", tenant.id, request_origin(request))
        raise web.HTTPForbidden(text="not from this help page or chat")
    await _limit(request, tenant)
    article = await _article(request, tenant)
    day = dt.datetime.now(ZoneInfo(tenant.timezone)).date().isoformat()
    await articles.record_helped(request.app[STORE], tenant.id, article.id, day)
    if request.headers.get("Accept", "").startswith("application/json"):
        return web.json_response({"counted": True}, headers=_cors(request, tenant))
    raise web.HTTPSeeOther(f"/help/{tenant.id}/a/{article.id}?helped=1")


def setup(app: web.Application) -> None:
    base = "/help/{tenant}"
    app.router.add_get(base, home)
    app.router.add_get(base + "/suggest.json", suggest)
    app.router.add_get(base + "/a/{article:" + ID + "}", article_page)
    app.router.add_post(base + "/a/{article:" + ID + "}/helped", helped)
