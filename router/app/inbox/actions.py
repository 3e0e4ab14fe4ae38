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
from dataclasses import dataclass

from aiohttp import web

from channels.voice.callbacks import dial_back
from router import agents, assign, customers, events, names, revocations
from router.agents import AgentError
from router.app.inbox import attachments
from router.app.inbox.access import CONVERSATION_PATH, OFFER_PATH, agent_of, conversation_of, tenant_of
from router.app.inbox.login import client_address
from router.app.inbox.pages import conversation
from router.app.inbox.rendering import read_form
from router.app.inbox.sessions import USER
from router.appkeys import DEPLOYMENT, STORE
from router.config import Tenant
from router.keys import Keys
from router.store import Store

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class _Context:
    """What every conversation action starts from: whose conversation, and the form."""

    store: Store
    tenant: Tenant
    agent: str
    record: dict[str, str]
    form: dict[str, str]  # empty for a multipart reply, which reads its own as a stream

    @property
    def conversation(self) -> str:
        return self.record["id"]

    def done(self, code: str) -> str:
        return f"/inbox/t/{self.tenant.id}/c/{self.conversation}?done={code}"


async def reply(request: web.Request, c: _Context) -> str:
    upload, form = attachments.ReplyForm(), c.form
    if attachments.is_multipart(request):  # a reply with a file: read as a stream, checked as it comes
        upload = await attachments.read(request, c.tenant)
        form = upload.fields
    body = form.get("body", "").strip()
    channel, _, address = form.get("to", "").partition("|")
    files = await attachments.store(
        request, c.tenant, channel or c.record.get("last_channel") or c.record.get("channel", ""), upload
    )
    if not body and not files:
        raise AgentError("write a reply first")
    await agents.reply(
        c.store,
        c.tenant,
        c.agent,
        c.conversation,
        body,
        channel=channel or None,
        address=address or None,
        subject=form.get("subject", "").strip()[:200],
        idempotency_key=form.get("key", "")[:64],
        attachments=files,
        cc=tuple(form.get("cc", "").split(",")),  # the others the page offered to copy, if ticked
    )
    return c.done("replied")


async def note(request: web.Request, c: _Context) -> str:
    text = c.form.get("text", "").strip()
    if not text:
        raise AgentError("write the note first")
    await agents.note(c.store, c.tenant, c.agent, c.conversation, text)
    return c.done("noted")


async def transfer(request: web.Request, c: _Context) -> str:
    kind, _, name = c.form.get("target", "").partition(":")
    if kind not in ("agent", "queue") or not name:
        raise AgentError("choose a colleague or a queue to transfer to")
    await agents.transfer(
        c.store,
        c.tenant,
        c.agent,
        c.conversation,
        to_agent=name if kind == "agent" else "",
        to_queue=name if kind == "queue" else "",
        note=c.form.get("note", "").strip()[:2000],
    )
    return "/inbox?done=transferred"


async def close(request: web.Request, c: _Context) -> str:
    await agents.close(
        c.store,
        c.tenant,
        c.agent,
        c.conversation,
        c.form.get("disposition", ""),
        promise_amount=c.form.get("promise_amount", ""),
        promise_date=c.form.get("promise_date", ""),
    )
    return c.done("closed")


async def wrapup(request: web.Request, c: _Context) -> str:
    await agents.end_wrapup(c.store, c.tenant, c.agent, c.conversation)
    return "/inbox?done=wrapped_up"


async def call(request: web.Request, c: _Context) -> str:
    """Dial an accepted callback again (after a failed attempt), agent first: each form
    (its key) dials once, however often it is sent."""
    record = c.record
    if record.get("agent") != c.agent or record.get("state") != "assigned" or record.get("kind") != "callback":
        raise AgentError("only an accepted callback can be called")
    # a form of a page from before the key was there dials too: never silently nothing
    again = c.form.get("key", "") or events.new_id()
    await dial_back(c.store, c.tenant, c.agent, record.get("reservation", ""), again=again)
    return c.done("calling")


async def rename(request: web.Request, c: _Context) -> str:
    """Correct what the customer is called (empty: back to the name their channel gave)."""
    name = await names.rename(c.store, c.tenant.id, c.record["customer"], c.form.get("name", ""))
    # the name itself stays out of the log: it is personal data
    log.info("customer %s of %s renamed by %s", c.record["customer"], c.tenant.id, c.agent)
    return c.done("renamed" if name else "name_cleared")


LINKABLE = {"phone": "sms", "email": "email"}  # address kinds an agent may add to a customer, by hand


async def link(request: web.Request, c: _Context) -> str:
    """Add an address the customer gave (a second number, a work email) to their record, so
    what comes from it joins their history; one that was another customer's moves here."""
    kind = c.form.get("kind", "")
    if kind not in LINKABLE:
        raise AgentError("choose a phone number or an email address to link")
    address = customers.normalise(LINKABLE[kind], c.form.get("address", ""))
    previous = await customers.link(
        c.store, c.tenant.id, c.record["customer"], customers.identity(LINKABLE[kind], address)
    )
    log.info(
        "%s of %s linked to customer %s by %s%s",
        kind, c.tenant.id, c.record["customer"], c.agent, f" (was customer {previous})" if previous else "",
    )  # fmt: skip
    return c.done("linked_moved" if previous else "linked")


async def revocation(request: web.Request, c: _Context) -> str:
    """Confirm (the opt-out is recorded, with who and when in the audit trail) or dismiss
    (nothing is) a message that read like a revocation of consent (router/revocations.py)."""
    decision, ident = c.form.get("decision", ""), c.form.get("ident", "")
    if decision not in ("confirm", "dismiss"):
        raise AgentError("confirm the opt-out or dismiss it")
    fields = await c.store.redis.hkeys(Keys(c.tenant.id).customer(c.record["customer"]))
    if f"ident:{ident}".encode() not in fields:  # only this customer's flags, whatever the form says
        raise AgentError("that address is not this customer's")
    who = {"actor": request[USER].login, "client": client_address(request), "conversation": c.conversation}
    if decision == "confirm":
        opted = await revocations.confirm(c.store, c.tenant.id, ident, **who)
        settled = opted is not None
    else:
        settled = await revocations.dismiss(c.store, c.tenant.id, ident, **who)
    log.info("revocation flag in %s of %s: %s by %s", c.conversation, c.tenant.id, decision, c.agent)
    if not settled:
        return c.done("revocation_gone")
    return c.done("revocation_confirmed" if decision == "confirm" else "revocation_dismissed")
async def do_not_call(request: web.Request, c: _Context) -> str:
    """The customer asked not to be called again (as a debtor may, FDCPA 1692c(c)): their
    number goes on the tenant's do-not-contact list, which every campaign checks when it
    queues a call and again at the moment of dialling. Only the agent on the conversation."""
    if c.record.get("agent") != c.agent:
        raise AgentError("only the agent on this conversation can stop the calls")
    address = c.record.get("address", "")
    if not address.startswith("+"):
        raise AgentError("this conversation has no phone number to stop calling")
    await c.store.redis.sadd(Keys(c.tenant.id).do_not_contact, address)
    log.info("conversation %s of %s: %s was asked not to call again", c.conversation, c.tenant.id, c.agent)
    return c.done("do_not_call")


Action = Callable[[web.Request, _Context], Awaitable[str]]  # returns where to send the browser
ACTIONS: dict[str, Action] = {
    "reply": reply,
    "note": note,
    "transfer": transfer,
    "close": close,
    "wrapup": wrapup,
    "call": call,
    "rename": rename,
    "link": link,
    "revocation": revocation,
    "do-not-call": do_not_call,
}


def action(act: Action) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The POST handler of one conversation action: a refusal re-renders the page with
    the reason (409), success redirects (303)."""

    async def handler(request: web.Request) -> web.Response:
        tenant, record = await conversation_of(
            request, request.match_info["tenant"], request.match_info["conversation"]
        )
        agent = agent_of(request, tenant)
        form = {} if attachments.is_multipart(request) else await read_form(request)
        c = _Context(request.app[STORE], tenant, agent, record, form)
        try:
            location = await act(request, c)
        except (AgentError, ValueError, customers.InvalidAddress, events.InvalidEvent) as exc:
            return await conversation(request, error=str(exc), status=409)
        except OSError:  # the attachment store (a full or unwritable disk)
            log.exception("reply of %s in %s: the attached file was not stored", agent, tenant.id)
            return await conversation(request, error="the file could not be stored; try again", status=503)
        raise web.HTTPSeeOther(location)

    handler.__name__ = f"{act.__name__}_action"
    return handler


def routes(app: web.Application) -> None:
    app.router.add_post("/presence", presence)
    app.router.add_post(OFFER_PATH + "/{action:accept|reject}", offer)
    for name, act in ACTIONS.items():
        app.router.add_post(f"{CONVERSATION_PATH}/{name}", action(act))
