"""What agents do from the inbox's forms: presence, offers, and the actions on a
conversation (reply, note, transfer, close, end wrap-up, call back).

Each is one call into router.agents. A refusal (not theirs any more, a bad
disposition, an address that is not the customer's) re-renders the page with the
reason and status 409; nothing is half done. Success redirects (303) to a page
with a fixed message code.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from router import agents, assign, customers, events
from router.agents import AgentError
from router.app.inbox import attachments
from router.app.inbox.access import agent_of, conversation_of, tenant_of
from router.app.inbox.pages import conversation, read_form
from router.app.inbox.sessions import USER
from router.appkeys import DEPLOYMENT, STORE

log = logging.getLogger(__name__)

ACTIONS = ("reply", "note", "transfer", "close", "wrapup", "call")


async def presence(request: web.Request) -> web.Response:
    form = await read_form(request)
    store, deployment, user = request.app[STORE], request.app[DEPLOYMENT], request[USER]
    state = form.get("presence", "")
    if state not in ("available", "away", "offline"):
        raise web.HTTPBadRequest(text="presence must be available, away or offline")
    reason = form.get("reason", "").strip()[:200] if state == "away" else ""
    tenants = [form["tenant"]] if form.get("tenant") else user.tenants(deployment)
    for tenant_id in tenants:
        tenant = tenant_of(request, tenant_id)
        agent = user.agent_in(tenant.id)
        if agent:
            await agents.set_presence(store, tenant, agent, state, reason)
    raise web.HTTPSeeOther("/inbox?done=presence")


async def offer(request: web.Request) -> web.Response:
    tenant = tenant_of(request, request.match_info["tenant"])
    agent = agent_of(request, tenant)
    reservation, action = request.match_info["reservation"], request.match_info["action"]
    store = request.app[STORE]
    try:
        if action == "accept":
            await agents.accept(store, tenant, agent, reservation)
        else:
            await agents.reject(store, tenant, agent, reservation)
    except AgentError as exc:
        log.info("offer %s of %s by %s: %s", reservation, tenant.id, agent, exc)
        raise web.HTTPSeeOther("/inbox?done=offer_gone") from None
    if action == "accept":
        raise web.HTTPSeeOther(f"/inbox/t/{tenant.id}/c/{assign.conversation_of(reservation)}?done=accepted")
    raise web.HTTPSeeOther("/inbox?done=rejected")


async def _act(request: web.Request, action: str) -> web.Response:
    tenant, record = await conversation_of(request, request.match_info["tenant"], request.match_info["conversation"])
    agent = agent_of(request, tenant)
    store = request.app[STORE]
    upload = attachments.ReplyForm()
    form = {} if attachments.is_multipart(request) else await read_form(request)
    conv = record["id"]
    try:
        if action == "reply":
            if attachments.is_multipart(request):  # a reply with a file: read as a stream, checked as it comes
                upload = await attachments.read(request, tenant)
                form = upload.fields
            body = form.get("body", "").strip()
            channel, _, address = form.get("to", "").partition("|")
            files = await attachments.store(
                request, tenant, channel or record.get("last_channel") or record.get("channel", ""), upload
            )
            if not body and not files:
                raise AgentError("write a reply first")
            await agents.reply(
                store,
                tenant,
                agent,
                conv,
                body,
                channel=channel or None,
                address=address or None,
                subject=form.get("subject", "").strip()[:200],
                idempotency_key=form.get("key", "")[:64],
                attachments=files,
            )
            done = "replied"
        elif action == "note":
            text = form.get("text", "").strip()
            if not text:
                raise AgentError("write the note first")
            await agents.note(store, tenant, agent, conv, text)
            done = "noted"
        elif action == "transfer":
            target = form.get("target", "")
            kind, _, name = target.partition(":")
            if kind not in ("agent", "queue") or not name:
                raise AgentError("choose a colleague or a queue to transfer to")
            await agents.transfer(
                store,
                tenant,
                agent,
                conv,
                to_agent=name if kind == "agent" else "",
                to_queue=name if kind == "queue" else "",
                note=form.get("note", "").strip()[:2000],
            )
            raise web.HTTPSeeOther("/inbox?done=transferred")
        elif action == "close":
            await agents.close(
                store,
                tenant,
                agent,
                conv,
                form.get("disposition", ""),
                promise_amount=form.get("promise_amount", ""),
                promise_date=form.get("promise_date", ""),
            )
            done = "closed"
        elif action == "wrapup":
            await agents.end_wrapup(store, tenant, agent, conv)
            raise web.HTTPSeeOther("/inbox?done=wrapped_up")
        elif action == "call":
            if record.get("agent") != agent or record.get("state") != "assigned" or record.get("kind") != "callback":
                raise AgentError("only an accepted callback can be called")
            from channels.voice.callbacks import dial_back

            await dial_back(store, tenant, agent, record.get("reservation", ""))
            done = "calling"
        else:
            raise web.HTTPNotFound()
    except (AgentError, ValueError, customers.InvalidAddress, events.InvalidEvent) as exc:
        return await conversation(request, error=str(exc), status=409)
    except OSError:  # the attachment store (a full or unwritable disk)
        log.exception("reply of %s in %s: the attached file was not stored", agent, tenant.id)
        return await conversation(request, error="the file could not be stored; try again", status=503)
    raise web.HTTPSeeOther(f"/inbox/t/{tenant.id}/c/{conv}?done={done}")


def action(name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The POST handler of one conversation action."""

    async def handler(request: web.Request) -> web.Response:
        return await _act(request, name)

    handler.__name__ = f"{name}_action"
    return handler


def routes(app: web.Application) -> None:
    app.router.add_post("/presence", presence)
    app.router.add_post("/t/{tenant}/offers/{reservation}/{action:accept|reject}", offer)
    for name in ACTIONS:
        app.router.add_post(f"/t/{{tenant}}/c/{{conversation}}/{name}", action(name))
