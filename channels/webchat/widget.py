"""The widget a tenant embeds with one script tag, and a demo page that shows it.

GET /webchat/{tenant}/widget.js is rendered from templates/webchat/widget.js with
the tenant's title, greeting, colours, pre-chat fields and limits as one JSON
value (Jinja2's tojson, safe inside a script), and the widget's fixed words in the
language the browser asks for (router/locale: the desk's catalogues); GET /webchat/{tenant}/demo is a
plain page with the script tag, for tenants that enable it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from channels.webchat._runtime import chat_tenant, is_open
from router import i18n
from router.appkeys import SETTINGS
from router.config import Tenant
from router.config.webchat import DEFAULT_GREETING, DEFAULT_OFFLINE_MESSAGE
from router.templating import pages

DEFAULT_COLOR = "#1f6feb"
WIDGET = "webchat/widget.js"
WIDGET_SOURCE = "templates/" + WIDGET  # where the catalogue says the widget's words are used


def setup(app: web.Application) -> None:
    app.router.add_get("/webchat/{tenant}/widget.js", script)
    app.router.add_get("/webchat/{tenant}/demo", demo)


def widget_config(tenant: Tenant, locale: str = i18n.SOURCE) -> dict[str, Any]:
    """What the widget needs to know, all of it public (it is served to any page), in
    `locale` where the tenant kept our words (a tenant's own words are its to translate)."""
    webchat = tenant.webchat
    assert webchat is not None
    color = webchat.color or tenant.brand_color
    if not (len(color) == 7 and color[0] == "#" and all(c in "0123456789abcdefABCDEF" for c in color[1:])):
        color = DEFAULT_COLOR  # brand_color is free text in the file; only a hex colour reaches the CSS
    return {
        "tenant": tenant.id,
        "title": webchat.title or tenant.name or tenant.id,
        "greeting": _ours_translated(locale, webchat.greeting, DEFAULT_GREETING),
        "color": color,
        "textColor": webchat.text_color,
        "offlineMessage": _ours_translated(locale, webchat.offline_message, DEFAULT_OFFLINE_MESSAGE),
        "prechat": list(webchat.prechat),
        "required": list(webchat.prechat_required),
        "topics": [t.label for t in webchat.topics],
        "allowedOrigins": [o.rstrip("/").lower() for o in webchat.allowed_origins],
        "demoPage": webchat.demo_page,
        "messageBytes": webchat.limits.message_bytes,
        "uploadTypes": list(webchat.limits.upload_types),
        "uploadMaxBytes": webchat.limits.upload_max_bytes,
        "help": bool(tenant.knowledge.public_categories),  # suggest help articles while the visitor types
    }


def _ours_translated(locale: str, text: str, default: str) -> str:
    """Our default words in the visitor's language; a tenant's own words as it wrote them."""
    return i18n.gettext(locale, text) if text == default else text


async def script(request: web.Request) -> web.Response:
    tenant, _webchat = chat_tenant(request)
    # The visitor's language is the one their browser asked for this script in.
    locale = i18n.negotiate(request.headers.get("Accept-Language", ""))
    body = (
        pages(locale)
        .get_template(WIDGET)
        .render(config=widget_config(tenant, locale), texts=i18n.messages_of(locale, WIDGET_SOURCE))
    )
    return web.Response(
        text=body,
        content_type="application/javascript",
        headers={
            "Cache-Control": "public, max-age=300",
            "Vary": "Accept-Language",  # a cache keeps one copy per language
            "Content-Language": i18n.html_lang(locale),
            "X-Content-Type-Options": "nosniff",
        },
    )


async def demo(request: web.Request) -> web.Response:
    tenant, webchat = chat_tenant(request)
    if not webchat.demo_page:
        raise web.HTTPNotFound(text="no such chat")
    script_url = f"/webchat/{tenant.id}/widget.js"
    public = request.app[SETTINGS].public_url or str(request.url.origin())
    template = pages().get_template("webchat/demo.html")
    body = template.render(
        title=webchat.title or tenant.name or tenant.id,
        color=widget_config(tenant)["color"],
        script_url=script_url,
        embed_url=public + script_url,
        open=is_open(tenant),
    )
    return web.Response(text=body, content_type="text/html", headers={"X-Content-Type-Options": "nosniff"})
