"""Transferring a call from the conversation page (channels.voice.transfer): one form,
POST /inbox/t/{tenant}/c/{conversation}/call/transfer with `action`:

- cold (target agent:<id>, queue:<id> or number:<E.164>): at once;
- consult (target agent:<id> or number:<E.164>): the caller is held and the colleague
  called into the call;
- handover: the consulted colleague takes the call and the conversation;
- cancel: the colleague leaves, the caller is back with the agent.

Only the agent who holds the conversation may; 303 back to the page with what happened,
or the page with the reason (409). JSON in and out for the softphone panel (Accept:
application/json).
"""

from __future__ import annotations

from aiohttp import web

from channels.voice import desk, inbound, transfer
from router.agents import AgentError
from router.app.inbox.access import CONVERSATION_PATH, agent_of, conversation_of
from router.app.inbox.pages import conversation as conversation_page
from router.app.inbox.rendering import read_fields
from router.app.inbox.softphone import TWILIO
from router.appkeys import SETTINGS, STORE

ACTIONS = ("cold", "consult", "handover", "cancel")
DONE = {"consult": "transfer-consulting", "handover": "transfer-completed", "cancel": "transfer-cancelled"}


async def call_transfer(request: web.Request) -> web.Response:
    tenant, record = await conversation_of(request, request.match_info["tenant"], request.match_info["conversation"])
    agent = agent_of(request, tenant)
    wants_json = "application/json" in request.headers.get("Accept", "")
    form = await read_fields(request)
    action, target, note = form.get("action", ""), form.get("target", ""), form.get("note", "").strip()[:2000]
    if action not in ACTIONS:
        raise web.HTTPBadRequest(text=f"action: one of {', '.join(ACTIONS)}")
    store, twilio, settings = request.app[STORE], request.app[TWILIO], request.app[SETTINGS]
    call = await inbound.get_call(store, tenant.id, await inbound.latest_call(store, tenant.id, record["id"]) or "")
    sid = call.get("agent_leg", "")  # the agent's leg of the call (a simulated call's id in the sandbox)
    outcome = ""
    try:
        if record.get("agent") != agent or record.get("state") != "assigned" or not sid:
            raise desk.DeskError("transfer works on a call of a conversation you hold")
        if action == "cold":
            kind, _, name = target.partition(":")
            if kind == "number":
                await transfer.to_number(store, twilio, tenant, agent, record["id"], name)
                outcome = transfer.TRANSFERRED
            elif kind in ("agent", "queue") and name:
                outcome = await desk.transfer(
                    store, twilio, settings, tenant, agent, record["id"], sid,
                    to_agent=name if kind == "agent" else "", to_queue=name if kind == "queue" else "", note=note,
                )  # fmt: skip
            else:
                raise desk.DeskError("choose a colleague, a queue or a number")
        elif action == "consult":
            await transfer.consult(store, twilio, settings, tenant, agent, record["id"], sid, target)
            outcome = "consulting"
        elif action == "handover":
            outcome = await transfer.hand_over(store, twilio, settings, tenant, agent, record["id"], note)
        else:
            await transfer.cancel(store, twilio, settings, tenant, agent, record["id"])
            outcome = "cancelled"
    except (desk.DeskError, AgentError, KeyError) as exc:
        error = f"no queue {target.partition(':')[2]!r}" if isinstance(exc, KeyError) else str(exc)
        if wants_json:
            return web.json_response({"error": error}, status=409)
        return await conversation_page(request, error=error, status=409)
    if wants_json:
        return web.json_response({"outcome": outcome})
    raise web.HTTPSeeOther(f"/inbox/t/{tenant.id}/c/{record['id']}?done={DONE.get(action, 'transferred')}")


def routes(app: web.Application) -> None:
    app.router.add_post(CONVERSATION_PATH + "/call/transfer", call_transfer)
