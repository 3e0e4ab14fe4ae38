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
    "kb_saved": "Article saved.",
    "kb_submit": "Article sent for review.",
    "kb_publish": "Article published.",
    "kb_return": "Article returned to draft.",
    "kb_archive": "Article archived.",
    "kb_restore": "Article restored as a draft.",
    "linked_moved": "Address linked to this customer (it was another customer's until now).",
    "revocation_confirmed": "Opt-out recorded: no campaign or survey will reach the customer there.",
    "revocation_dismissed": "Dismissed: no opt-out recorded, and campaigns may reach the customer again.",
    "revocation_gone": "Someone else had already decided on that message.",
    "do_not_call": "The customer's number is on the do-not-contact list: no campaign will call it again.",
    "callback_scheduled": "Callback scheduled: it is on your campaign callbacks, at the customer's time.",
    "callback_done": "Callback taken off your list.",
    "campaign_launch": "Campaign launched.",
    "campaign_pause": "Campaign paused.",
    "campaign_resume": "Campaign resumed.",
    "campaign_cancel": "Campaign cancelled.",
    "unlocked": "Lock lifted.",
    "lock_gone": "That lock had already ended.",
    "recording-paused": "Recording paused.",
    "recording-in-progress": "Recording resumed.",
    "monitor-listen": "Listening: your phone or softphone rings; you are muted.",
    "monitor-whisper": "Whispering: only the agent hears you.",
    "monitor-barge": "In the call: the customer and the agent hear you.",
    "monitor-leave": "You left the call.",
    "transfer-consulting": "Calling your colleague: the customer is on hold meanwhile.",
    "transfer-completed": "Call handed over.",
    "transfer-cancelled": "Consultation ended: the customer is back with you.",
    "followed_up": "Low rating marked as followed up.",
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


async def read_fields(request: web.Request) -> dict[str, str]:
    """A form's text fields, or a JSON object's (the softphone panel posts JSON to routes a
    page's form posts to as well): each at most MAX_TEXT characters; booleans as "1"/"0"."""
    if request.content_type != "application/json":
        return await read_form(request)
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="expected a JSON object") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="expected a JSON object")
    fields = {}
    for name, value in body.items():
        if isinstance(value, bool):
            value = "1" if value else "0"
        if isinstance(value, str):
            if len(value) > MAX_TEXT:
                raise web.HTTPRequestEntityTooLarge(max_size=MAX_TEXT, actual_size=len(value))
            fields[str(name)] = value
    return fields


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
