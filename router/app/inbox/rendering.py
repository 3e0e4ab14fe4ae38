"""What every inbox page shares: rendering a template from templates/inbox/ (autoescaped)
with the session's user and CSRF token and a fixed message picked by ?done=<code> (never
free text), the tenant's brand colour, and reading a form's text fields within bounds."""

from __future__ import annotations

import re

from aiohttp import web

from router import events, i18n
from router.app.inbox.sessions import SESSION, USER
from router.config import Tenant
from router.i18n import N_
from router.templating import pages

DONE = {  # ?done=<code> after a redirect: fixed texts, so a link cannot put words on our page; N_ marks them
    # for extraction, and render() shows them in the reader's language
    "presence": N_("Presence changed."),
    "accepted": N_("Offer accepted."),
    "rejected": N_("Offer rejected."),
    "offer_gone": N_("That offer is no longer open."),
    "replied": N_("Reply sent."),
    "noted": N_("Note added."),
    "transferred": N_("Conversation transferred."),
    "closed": N_("Conversation closed."),
    "wrapped_up": N_("Wrap-up ended."),
    "calling": N_("Calling back: your phone or softphone rings first."),
    "dialling": N_("Calling the customer: your phone or softphone rings first."),
    "reassigned": N_("Conversation reassigned."),
    "renamed": N_("Customer's name saved."),
    "name_cleared": N_("Customer's name cleared: the name their channel gave is shown."),
    "linked": N_("Address linked to this customer."),
    "kb_saved": N_("Article saved."),
    "kb_submit": N_("Article sent for review."),
    "kb_publish": N_("Article published."),
    "kb_return": N_("Article returned to draft."),
    "kb_archive": N_("Article archived."),
    "kb_restore": N_("Article restored as a draft."),
    "linked_moved": N_("Address linked to this customer (it was another customer's until now)."),
    "revocation_confirmed": N_("Opt-out recorded: no campaign or survey will reach the customer there."),
    "revocation_dismissed": N_("Dismissed: no opt-out recorded, and campaigns may reach the customer again."),
    "revocation_gone": N_("Someone else had already decided on that message."),
    "do_not_call": N_("The customer's number is on the do-not-contact list: no campaign will call it again."),
    "callback_scheduled": N_("Callback scheduled: it is on your campaign callbacks, at the customer's time."),
    "callback_done": N_("Callback taken off your list."),
    "campaign_launch": N_("Campaign launched."),
    "campaign_pause": N_("Campaign paused."),
    "campaign_resume": N_("Campaign resumed."),
    "campaign_cancel": N_("Campaign cancelled."),
    "unlocked": N_("Lock lifted."),
    "lock_gone": N_("That lock had already ended."),
    "recording-paused": N_("Recording paused."),
    "recording-in-progress": N_("Recording resumed."),
    "monitor-listen": N_("Listening: your phone or softphone rings; you are muted."),
    "monitor-whisper": N_("Whispering: only the agent hears you."),
    "monitor-barge": N_("In the call: the customer and the agent hear you."),
    "monitor-leave": N_("You left the call."),
    "transfer-consulting": N_("Calling your colleague: the customer is on hold meanwhile."),
    "transfer-completed": N_("Call handed over."),
    "transfer-cancelled": N_("Consultation ended: the customer is back with you."),
    "followed_up": N_("Low rating marked as followed up."),
}
def languages() -> list[tuple[str, str]]:
    """The desk's languages for the selector: (locale, its name in itself)."""
    return [(name, i18n.display_name(name)) for name in i18n.locales()]


COLOUR = re.compile(r"^#[0-9a-fA-F]{3,8}$")
MAX_TEXT = 100_000


def brand(tenant: Tenant) -> str:
    """The tenant's brand colour, if it is a plain colour (it goes into a style attribute)."""
    return tenant.brand_color if COLOUR.fullmatch(tenant.brand_color) else "#1f6feb"


def locale_of(request: web.Request) -> str:
    """The desk's language for this request: the login's choice, else the browser's."""
    user = request.get(USER)
    if user is not None and user.locale in i18n.locales():
        return user.locale
    return i18n.negotiate(request.headers.get("Accept-Language", ""))


def render(request: web.Request, name: str, status: int = 200, **context: object) -> web.Response:
    session = request.get(SESSION)
    user = request.get(USER)
    locale = locale_of(request)
    done = DONE.get(request.query.get("done", ""), "")
    if isinstance(context.get("error"), str):  # our fixed refusals (marked N_) in the reader's language
        context["error"] = i18n.gettext(locale, context["error"])
    body = (
        pages(locale)
        .get_template(f"inbox/{name}")
        .render(
            user=user,
            csrf=session.csrf if session else "",
            done=i18n.gettext(locale, done) if done else "",
            languages=languages(),
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
