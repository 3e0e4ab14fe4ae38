"""The knowledge base on the desk: a tenant's articles listed and searched, written and
edited by its writers, taken through review by supervisors and admins, and searched from
the reply box (knowledge.js), whose insertions are counted on the article.

Every route is under /inbox/t/{tenant}/knowledge: a tenant the user has no membership of
is a 404, and an article the user's role may not see (an agent and a draft) is too.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from aiohttp import web

from router.app.inbox import accounts
from router.app.inbox.access import ID, conversation_of, tenant_of
from router.app.inbox.login import client_address
from router.app.inbox.rendering import brand, read_form, render
from router.app.inbox.sessions import USER
from router.appkeys import DEPLOYMENT, SETTINGS, STORE
from router.config import Tenant
from router.knowledge import articles
from router.knowledge.articles import STATUSES, Article, Draft, KnowledgeError
from router.knowledge.markup import FORMATS, to_html, to_text
from router.templating import folder

BASE = "/t/{tenant}/knowledge"
ARTICLE = BASE + "/{article:" + ID + "}"
STATIC = {"knowledge.js": "application/javascript", "knowledge.css": "text/css"}
SUGGESTED = 8  # articles the reply box shows for a query
MAX_QUERY = 200


def public_url(request: web.Request, tenant: Tenant, article: Article) -> str:
    """The article's page on the tenant's help site, if customers may read it ("" otherwise)."""
    if article.status != "published" or article.category not in tenant.knowledge.public_categories:
        return ""
    origin = request.app[SETTINGS].public_url or str(request.url.origin())
    return f"{origin.rstrip('/')}/help/{tenant.id}/a/{article.id}"


def when(at_ms: int, tenant: Tenant) -> str:
    """A time in the tenant's own zone, as its people read it."""
    moment = dt.datetime.fromtimestamp(at_ms / 1000, ZoneInfo(tenant.timezone))
    return moment.strftime("%Y-%m-%d %H:%M %Z")


async def people(request: web.Request, logins: set[str]) -> dict[str, str]:
    """Each login's name as its people know it (the login itself when it has none, or is the CLI's)."""
    names = {}
    for login in logins:
        user = await accounts.get(request.app[STORE], login)
        names[login] = (user.name if user else "") or login
    return names


def _statuses(request: web.Request, tenant: Tenant) -> tuple[str, ...]:
    role = request[USER].role
    return tuple(s for s in STATUSES if articles.may_see(role, tenant.knowledge, s))


async def _article(request: web.Request) -> tuple[Tenant, Article]:
    """The tenant and the article, or 404 if it is not there or not for this user's eyes."""
    tenant = tenant_of(request, request.match_info["tenant"])
    try:
        article = await articles.get(request.app[STORE], tenant.id, request.match_info["article"])
    except articles.NotFound:
        raise web.HTTPNotFound() from None
    if not articles.may_see(request[USER].role, tenant.knowledge, article.status):
        raise web.HTTPNotFound()
    return tenant, article


async def index(request: web.Request) -> web.Response:
    """/inbox/knowledge: the user's first tenant's knowledge base."""
    tenants = request[USER].tenants(request.app[DEPLOYMENT])
    if not tenants:
        raise web.HTTPNotFound()
    raise web.HTTPSeeOther(f"/inbox/t/{tenants[0]}/knowledge")


async def listing(request: web.Request) -> web.Response:
    """The articles the user may see, filtered by state and category, or searched."""
    tenant = tenant_of(request, request.match_info["tenant"])
    store, role = request.app[STORE], request[USER].role
    visible = _statuses(request, tenant)
    status = request.query.get("status", "")
    statuses = (status,) if status in visible else visible
    category = request.query.get("category", "")
    category = category if tenant.knowledge.category(category) else ""
    query = request.query.get("q", "")[:MAX_QUERY].strip()
    if query:
        found = await articles.find(
            store, tenant, query, statuses=statuses, categories=[category] if category else None, limit=50
        )
    else:
        found = [a for a in await articles.listing(store, tenant.id, statuses=statuses) if not category or
                 a.category == category]  # fmt: skip
    user_tenants = request[USER].tenants(request.app[DEPLOYMENT])
    return render(
        request, "knowledge.html", tenant=tenant, brand=brand(tenant), articles=found, statuses=visible,
        labels=STATUSES, state=status if status in visible else "", category=category, query=query,
        categories={c.id: c.name for c in tenant.knowledge.categories},
        may_write=articles.may_write(role, tenant.knowledge),
        names=await people(request, {a.updated_by for a in found}),
        tenants=[request.app[DEPLOYMENT].tenant(t) for t in user_tenants],
    )  # fmt: skip


async def show(request: web.Request) -> web.Response:
    tenant, article = await _article(request)
    role = request[USER].role
    steps = await articles.history(request.app[STORE], tenant.id, article.id)
    category = tenant.knowledge.category(article.category)
    return render(
        request, "knowledge_article.html", tenant=tenant, brand=brand(tenant), article=article,
        body=to_html(article.body, article.format), labels=STATUSES,
        steps=[(step, when(step.at, tenant)) for step in reversed(steps)],
        names=await people(request, {step.actor for step in steps}),
        done_words=articles.DONE, category=category.name if category else article.category,
        moves=articles.moves_for(role, tenant.knowledge, article.status),
        may_edit=articles.may_edit(role, tenant.knowledge, article.status),
        public=public_url(request, tenant, article),
    )  # fmt: skip


def _form(
    request: web.Request, tenant: Tenant, values: dict[str, str], *, article: Article | None = None,
    error: str = "", status: int = 200,
) -> web.Response:  # fmt: skip
    return render(
        request, "knowledge_form.html", status=status, tenant=tenant, brand=brand(tenant), values=values,
        article=article, error=error, formats=FORMATS, locales=tenant.knowledge.locales,
        categories=tenant.knowledge.categories,
    )  # fmt: skip


def _draft(form: dict[str, str]) -> Draft:
    return Draft(
        title=form.get("title", ""), body=form.get("body", ""), category=form.get("category", ""),
        locale=form.get("locale", ""), format=form.get("format", "markdown"),
    )  # fmt: skip


async def new_form(request: web.Request) -> web.Response:
    tenant = tenant_of(request, request.match_info["tenant"])
    if not articles.may_write(request[USER].role, tenant.knowledge):
        raise web.HTTPForbidden(text="your role does not write articles here")
    kb = tenant.knowledge
    values = {"title": "", "body": "", "category": kb.categories[0].id, "locale": kb.locales[0], "format": "markdown"}
    return _form(request, tenant, values)


async def create(request: web.Request) -> web.Response:
    tenant = tenant_of(request, request.match_info["tenant"])
    user, form = request[USER], await read_form(request)
    try:
        article = await articles.create(
            request.app[STORE], tenant, _draft(form), actor=user.login, role=user.role, client=client_address(request)
        )
    except articles.NotAllowed as exc:
        raise web.HTTPForbidden(text=str(exc)) from None
    except KnowledgeError as exc:  # the form again, with what was typed: nothing is lost
        return _form(request, tenant, form, error=str(exc), status=422)
    raise web.HTTPSeeOther(f"/inbox/t/{tenant.id}/knowledge/{article.id}?done=kb_saved")


async def edit_form(request: web.Request) -> web.Response:
    tenant, article = await _article(request)
    if not articles.may_edit(request[USER].role, tenant.knowledge, article.status):
        raise web.HTTPForbidden(text="your role may not edit this article now")
    values = {"title": article.title, "body": article.body, "category": article.category, "locale": article.locale,
              "format": article.format, "version": str(article.version)}  # fmt: skip
    return _form(request, tenant, values, article=article)


async def update(request: web.Request) -> web.Response:
    """A new version of the article, made on the version the form was opened on. Refused, the
    form comes back with what was typed (and, after a conflict, the stored version's number:
    saving again then replaces the colleague's version knowingly)."""
    tenant, article = await _article(request)
    user, form = request[USER], await read_form(request)
    version = form.get("version", "")
    try:
        await articles.edit(
            request.app[STORE], tenant, article.id, _draft(form), actor=user.login, role=user.role,
            version=int(version) if version.isdigit() else -1, client=client_address(request),
        )  # fmt: skip
    except articles.NotAllowed as exc:
        raise web.HTTPForbidden(text=str(exc)) from None
    except KnowledgeError as exc:
        status = 409 if isinstance(exc, articles.Conflict) else 422
        values = {**form, "version": str(article.version)}
        return _form(request, tenant, values, article=article, error=str(exc), status=status)
    raise web.HTTPSeeOther(f"/inbox/t/{tenant.id}/knowledge/{article.id}?done=kb_saved")


async def move(request: web.Request) -> web.Response:
    tenant, article = await _article(request)
    user, form = request[USER], await read_form(request)
    step = form.get("step", "")
    try:
        await articles.move(
            request.app[STORE], tenant, article.id, step, actor=user.login, role=user.role,
            note=form.get("note", ""), client=client_address(request),
        )  # fmt: skip
    except articles.NotAllowed as exc:
        raise web.HTTPForbidden(text=str(exc)) from None
    except KnowledgeError as exc:
        raise web.HTTPConflict(text=str(exc)) from None
    raise web.HTTPSeeOther(f"/inbox/t/{tenant.id}/knowledge/{article.id}?done=kb_{step}")


async def search_json(request: web.Request) -> web.Response:
    """The reply box's search: published articles best first, each with the text and
    (for a public one) the link an agent inserts."""
    tenant = tenant_of(request, request.match_info["tenant"])
    query = request.query.get("q", "")[:MAX_QUERY].strip()
    found = await articles.find(request.app[STORE], tenant, query, limit=SUGGESTED) if query else []
    items = []
    for article in found:
        plain = to_text(article.body, article.format)
        items.append({
            "id": article.id, "title": article.title, "locale": article.locale, "snippet": plain[:160],
            "text": plain, "link": public_url(request, tenant, article), "inserted": article.inserted,
        })  # fmt: skip
    return web.json_response({"query": query, "articles": items})


async def inserted(request: web.Request) -> web.Response:
    """An agent inserted an article into their reply in a conversation they may see: counted
    once per conversation. CSRF as for any POST (the script sends the header)."""
    tenant, record = await conversation_of(request, request.match_info["tenant"], request.match_info["conversation"])
    store = request.app[STORE]
    try:
        article = await articles.get(store, tenant.id, request.match_info["article"])
    except articles.NotFound:
        raise web.HTTPNotFound() from None
    if article.status != "published":
        raise web.HTTPNotFound()
    count = await articles.record_use(store, tenant.id, article.id, record["id"])
    return web.json_response({"inserted": count})


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound()
    body = (folder() / "inbox" / name).read_text("utf-8")
    return web.Response(text=body, content_type=STATIC[name], headers={"Cache-Control": "no-cache"})


def routes(app: web.Application) -> None:
    add = app.router
    add.add_get("/knowledge", index)
    add.add_get("/knowledge/static/{name}", static)
    add.add_get(BASE, listing)
    add.add_get(BASE + "/search.json", search_json)
    add.add_get(BASE + "/new", new_form)
    add.add_post(BASE + "/new", create)
    add.add_get(ARTICLE, show)
    add.add_get(ARTICLE + "/edit", edit_form)
    add.add_post(ARTICLE + "/edit", update)
    add.add_post(ARTICLE + "/move", move)
    add.add_post("/t/{tenant}/c/{conversation:" + ID + "}/knowledge/{article:" + ID + "}/inserted", inserted)
