"""What every inbox page shares: rendering a template from templates/inbox/ (autoescaped)
with the session's user and CSRF token and a fixed message picked by ?done=<code> (never
free text), the tenant's brand colour, and reading a form's text fields within bounds."""

from __future__ import annotations

import re

from aiohttp import web

from router import events
from router.app.inbox.sessions import SESSION, USER
from router.config import Tenant
from router.templating import pages

DONE = {  # ?done=<code> after a redirect: fixed texts, so a link cannot put words on our page
    "presence": "Presence changed.",
    "accepted": "Offer accepted.",
    "rejected": "Offer rejected.",
    "offer_gone": "That offer is no longer open.",
    "replied": "Reply sent.",
    "noted": "Note added.",
    "transferred": "Conversation transferred.",
    "closed": "Conversation closed.",
    "wrapped_up": "Wrap-up ended.",
    "calling": "Calling back: your phone or softphone rings first.",
    "dialling": "Calling the customer: your phone or softphone rings first.",
    "reassigned": "Conversation reassigned.",
    "renamed": "Customer's name saved.",
    "name_cleared": "Customer's name cleared: the name their channel gave is shown.",
    "linked": "Address linked to this customer.",
    "linked_moved": "Address linked to this customer (it was another customer's until now).",
    "do_not_call": "The customer's number is on the do-not-contact list: no campaign will call it again.",
    "callback_scheduled": "Callback scheduled: it is on your campaign callbacks, at the customer's time.",
    "callback_done": "Callback taken off your list.",
    "campaign_launch": "Campaign launched.",
    "campaign_pause": "Campaign paused.",
    "campaign_resume": "Campaign resumed.",
    "campaign_cancel": "Campaign cancelled.",
    "unlocked": "Lock lifted.",
    "lock_gone": "That lock had already ended.",
}
COLOUR = re.compile(r"^#[0-9a-fA-F]{3,8}$")
MAX_TEXT = 100_000


def brand(tenant: Tenant) -> str:
    """The tenant's brand colour, if it is a plain colour (it goes into a style attribute)."""
    return tenant.brand_color if COLOUR.fullmatch(tenant.brand_color) else "#1f6feb"


def render(request: web.Request, name: str, status: int = 200, **context: object) -> web.Response:
    session = request.get(SESSION)
    user = request.get(USER)
    body = (
        pages()
        .get_template(f"inbox/{name}")
        .render(
            user=user,
            csrf=session.csrf if session else "",
            done=DONE.get(request.query.get("done", ""), ""),
            now_ms=events.now_ms(),
            request_path=request.path,
            **context,
        )
    )
    return web.Response(text=body, status=status, content_type="text/html")


async def read_form(request: web.Request) -> dict[str, str]:
    """A form's text fields, each at most MAX_TEXT characters."""
    form = await request.post()
    result = {}
    for name, value in form.items():
        if isinstance(value, str):
            if len(value) > MAX_TEXT:
                raise web.HTTPRequestEntityTooLarge(max_size=MAX_TEXT, actual_size=len(value))
            result[name] = value
    return result
