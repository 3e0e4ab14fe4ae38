"""The rating page of survey email, on the web process: GET /survey/{tenant}/{token}.

Each of an email's five links holds the conversation and a rating, signed with the
tenant's survey key (router/survey_links.py). Opening one records its rating, the
first only (one click), and shows a form for an optional comment, which a POST to the
same link records. A link that is forged, altered or of another tenant is refused with
404, and records nothing. A link prefetched by the browser or a mail scanner that says so
(Purpose / Sec-Purpose: prefetch) records nothing either; a HEAD never does.
"""

from __future__ import annotations

import logging

from aiohttp import web

from router import survey_links, surveys
from router.appkeys import DEPLOYMENT, STORE
from router.config import Tenant
from router.errors import UnknownTenant
from router.templating import pages

log = logging.getLogger(__name__)

HEX = frozenset("0123456789abcdefABCDEF")
MAX_FORM_BYTES = 16 * 1024


def setup(app: web.Application) -> None:
    app.router.add_get(survey_links.PATH, rating_page, allow_head=False)
    app.router.add_post(survey_links.PATH, comment_form)


async def _verified(request: web.Request) -> tuple[Tenant, str, int]:
    try:
        tenant = request.app[DEPLOYMENT].tenant(request.match_info["tenant"])
    except UnknownTenant:
        raise web.HTTPNotFound(text="unknown link") from None
    if tenant.survey is None:
        raise web.HTTPNotFound(text="unknown link")
    ring = await survey_links.key_ring(request.app[STORE], tenant.id)
    try:
        conversation, rating = survey_links.read_token(ring, tenant.id, request.match_info["token"])
    except survey_links.BadLink as exc:
        log.warning("rating link of %s refused: %s", tenant.id, exc)
        raise web.HTTPNotFound(text="unknown link") from None
    return tenant, conversation, rating


def _prefetch(request: web.Request) -> bool:
    purpose = f"{request.headers.get('Purpose', '')} {request.headers.get('Sec-Purpose', '')}".lower()
    return "prefetch" in purpose or "prerender" in purpose


def _page(tenant: Tenant, *, status: int = 200, **context: object) -> web.Response:
    color = tenant.brand_color
    values = {
        "lang": (tenant.survey.locale if tenant.survey else "en"),
        "tenant_name": tenant.name or tenant.id,
        "brand_color": color if len(color) == 7 and color[0] == "#" and set(color[1:]) <= HEX else "#1f6feb",
        "rating": 0,
        "rating_line": "",
        "message": "",
        "error": "",
        "can_comment": False,
        "comment_max": surveys.COMMENT_MAX,
        **context,
    }
    body = pages().get_template("surveys/page.html").render(values)
    return web.Response(
        text=body,
        status=status,
        content_type="text/html",
        headers={
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",  # the link is a credential: never passed on
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'",
        },
    )


def _rated(tenant: Tenant, outcome: str, rating: int) -> web.Response:
    if outcome in ("rated", "already"):
        return _page(
            tenant,
            heading="Thank you for your rating" if outcome == "rated" else "You have rated this already",
            rating=rating,
            rating_line=f"{rating} of 5",
            can_comment=True,
        )
    if outcome == "expired":
        return _page(tenant, heading="This survey has closed", message="Thank you all the same.", status=410)
    return _page(tenant, heading="This survey is not open", status=404)


async def rating_page(request: web.Request) -> web.Response:
    tenant, conversation, rating = await _verified(request)
    if _prefetch(request):
        return _page(tenant, heading="How did we do?", message="Open the link to give your rating.")
    outcome, counted = await surveys.rate(request.app[STORE], tenant, conversation, rating, channel="email")
    return _rated(tenant, outcome, counted or rating)


async def comment_form(request: web.Request) -> web.Response:
    tenant, conversation, rating = await _verified(request)
    if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_FORM_BYTES, actual_size=request.content_length)
    form = await request.post()
    words = form.get("comment")
    store = request.app[STORE]
    if not isinstance(words, str) or not words.strip():
        outcome, counted = await surveys.rate(store, tenant, conversation, rating, channel="email")
        response = _rated(tenant, outcome, counted or rating)
        if response.status == 200:
            return _page(
                tenant,
                heading="Thank you for your rating",
                rating=counted or rating,
                rating_line=f"{counted or rating} of 5",
                error="Write a comment before sending it, or close this page.",
                can_comment=True,
                status=400,
            )
        return response
    # the link's own rating first: a comment sent from a page opened without one (prefetched) still counts
    outcome, counted = await surveys.rate(store, tenant, conversation, rating, channel="email")
    if outcome not in ("rated", "already"):
        return _rated(tenant, outcome, rating)
    done = await surveys.comment(store, tenant, conversation, words, channel="email")
    message = "We have your comment. Thank you." if done == "commented" else "We have a comment from you already."
    return _page(tenant, heading="Thank you", rating=counted, rating_line=f"{counted} of 5", message=message)
