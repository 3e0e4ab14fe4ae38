"""The softphone's routes: what the page's softphone (templates/inbox/softphone.js) asks
the web process for.

- POST /inbox/softphone/seats: the user's seats, how each takes calls (Twilio's SDK, a
  simulated call, or not at all) and where a call may be transferred.
- POST /inbox/t/{tenant}/softphone/token: an access token for Twilio.Device, the
  agent's identity with incoming calls allowed (channels.voice.softphone); .../placed:
  the conversation and customer of a call the router placed to the agent.
- GET /inbox/t/{tenant}/softphone/simulated (websocket) and POST
  .../simulated/{call}/{action}: the simulated calls of a tenant without Twilio
  (channels.voice.simulated), the page's stand-in for Twilio's signalling.
- POST .../softphone/hold, .../softphone/transfer (and .../softphone/hangup for a
  held Twilio call): the desk's actions on a call, either kind (channels.voice.desk).
- POST /inbox/t/{tenant}/c/{conversation}/dial: the agent calls the customer
  (click-to-call), their own phone or softphone first; refused outside the tenant's
  callback regions and for costly number types, as callbacks are.
- GET /inbox/softphone/sounds/{name}.wav and /inbox/static/vendor/twilio.min.js: the
  sounds (tones.py) and Twilio's SDK, vendored from npm (python -m ops.vendor).

Every route needs the session (POSTs its CSRF token too), answers 404 for a tenant the
user has no seat in, and acts only on the calls of the user's own agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator

from aiohttp import WSCloseCode, WSMsgType, web

from channels._twilio_rest import TwilioClients
from channels.voice import bridge, callbacks, desk, simulated, softphone, waiting
from channels.voice import transfer as transfer_call
from router import conversations, customers, i18n, templating
from router.agents import AgentError
from router.app.inbox import live, tones
from router.app.inbox.access import CONVERSATION_PATH, ID, agent_of, conversation_of, tenant_of
from router.app.inbox.pages import conversation as conversation_page
from router.app.inbox.rendering import locale_of, read_form
from router.app.inbox.sessions import SESSION, USER, same_origin
from router.appkeys import DEPLOYMENT, SETTINGS, STORE
from router.config import Tenant
from router.i18n import N_
from router.keys import AccountKeys
from router.store import STORE_ERRORS

log = logging.getLogger(__name__)

POLL_S = 0.5  # how soon a simulated call's change reaches the page
SESSION_CHECK_S = live.SESSION_CHECK_S
VENDOR = {"twilio.min.js": "application/javascript"}  # templates/inbox/vendor/, by ops.vendor
SIMULATED_ACTIONS = ("answer", "decline", "hangup", "mute", "unmute", "digits", "customer-hangup")
DIGITS = re.compile(r"^[0-9*#w]{1,32}$")
TWILIO = web.AppKey("softphone_twilio", TwilioClients)
SOCKETS = web.AppKey("softphone_sockets", set)
MODE_TEXT = {
    "twilio": "",
    "simulated": N_("Simulated call (no Twilio account configured)"),
    "unavailable": N_("No softphone: the tenant's Twilio account has no API key"),
}


def _seat(request: web.Request) -> tuple[Tenant, str]:
    tenant = tenant_of(request, request.match_info["tenant"])
    return tenant, agent_of(request, tenant)


async def seats(request: web.Request) -> web.Response:
    """How each of the user's seats takes calls in the page."""
    deployment = request.app[DEPLOYMENT]
    locale = locale_of(request)
    queue_label, agent_label = i18n.gettext(locale, "Queue: %(name)s"), i18n.gettext(locale, "Agent: %(name)s")
    found = []
    for tenant, agent in request[USER].seats(deployment):
        mode = softphone.mode(tenant)
        found.append(
            {
                "tenant": tenant.id,
                "tenant_name": tenant.name or tenant.id,
                "agent": agent,
                "identity": softphone.client_identity(agent),
                "mode": mode,
                "has_phone": bool(softphone.phone_of(tenant, agent)),
                "note": i18n.gettext(locale, MODE_TEXT[mode]),
                "targets": [
                    {"value": f"queue:{q.id}", "label": queue_label % {"name": q.name or q.id}} for q in tenant.queues
                ]
                + [
                    {"value": f"agent:{a.id}", "label": agent_label % {"name": a.name or a.id}}
                    for a in tenant.agents
                    if a.id != agent
                ]
                + [{"value": f"number:{n}", "label": f"Number: {n}"} for n in tenant.voice.transfer_numbers],
            }
        )
    return web.json_response({"seats": found})


async def token(request: web.Request) -> web.Response:
    """An access token for Twilio.Device as the agent's Client identity (JSON)."""
    tenant, agent = _seat(request)
    mode = softphone.mode(tenant)
    body: dict[str, object] = {"mode": mode, "identity": softphone.client_identity(agent)}
    if mode == "twilio":
        body |= {"token": softphone.access_token(tenant, agent), "ttl_s": softphone.TOKEN_TTL_S}
    elif mode == "unavailable":
        return web.json_response(body | {"error": MODE_TEXT[mode]}, status=409)
    return web.json_response(body)


async def _json(request: web.Request) -> dict[str, object]:
    if not request.body_exists:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="expected a JSON object") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="expected a JSON object")
    return body


def _text(body: dict[str, object], name: str, pattern: re.Pattern[str] | None = None) -> str:
    value = body.get(name, "")
    if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
        raise web.HTTPBadRequest(text=f"{name}: missing or malformed")
    return value


async def placed(request: web.Request) -> web.Response:
    """Which conversation and customer a call the router placed to the agent's softphone is
    for (Twilio rings it without the parameters a <Client> dial carries); 404 for a call
    that is not the agent's."""
    tenant, agent = _seat(request)
    body = await _json(request)
    message = await softphone.placed(
        request.app[STORE], tenant, agent, _text(body, "call", re.compile(r"CA[0-9a-f]{32}"))
    )
    if message is None:
        raise web.HTTPNotFound(text="no call of yours")
    kind = message.metadata.get("action", "")
    if kind == bridge.OFFER:  # a caller's call this agent took: screened, the whisper first
        record = await conversations.get(request.app[STORE], tenant.id, message.conversation)
        customer = record.get("last_address") or record.get("address", "")
        body = {"conversation": message.conversation, "customer": customer, "kind": "call", "whisper": message.body}
        return web.json_response(body)
    return web.json_response({"conversation": message.conversation, "customer": message.to, "kind": kind})


# --- simulated calls ---


async def simulated_socket(request: web.Request) -> web.WebSocketResponse:
    """The agent's simulated calls, sent whenever they change; it closes (4401) once the
    session has ended, as the live socket does."""
    if not same_origin(request):
        raise web.HTTPForbidden(text="cross-origin websocket refused")
    tenant, agent = _seat(request)
    if softphone.mode(tenant) != "simulated":
        raise web.HTTPConflict(text="the tenant's calls are not simulated")
    store = request.app[STORE]
    socket = web.WebSocketResponse(heartbeat=live.HEARTBEAT_S)
    await socket.prepare(request)
    request.app[SOCKETS].add(socket)

    async def drain_client() -> None:
        async for message in socket:  # the page sends nothing; this notices a close
            if message.type == WSMsgType.ERROR:
                break

    reader = asyncio.create_task(drain_client())
    session_key = AccountKeys.session(request[SESSION].digest)
    sent: list[dict[str, str]] | None = None
    checked_at = 0.0
    loop = asyncio.get_running_loop()
    try:
        while not reader.done():
            try:
                if loop.time() - checked_at >= SESSION_CHECK_S:
                    checked_at = loop.time()
                    if not await store.redis.exists(session_key):
                        await socket.send_json({"kind": "session_ended"})
                        await socket.close(code=live.SESSION_ENDED, message=b"session ended")
                        break
                await simulated.expire_due(store, tenant, agent)
                calls = await simulated.calls_of(store, tenant.id, agent)
            except STORE_ERRORS:
                calls = sent  # the store is away: nothing new to say, try again
            if calls != sent:
                await socket.send_json({"kind": "calls", "calls": calls})
                sent = calls
            await asyncio.wait({reader}, timeout=POLL_S)
    except ConnectionResetError:
        pass
    finally:
        request.app[SOCKETS].discard(socket)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await socket.close()
    return socket


async def simulated_action(request: web.Request) -> web.Response:
    """The page's softphone answers, declines, hangs up, mutes or presses keys on a
    simulated call; "customer-hangup" plays the customer hanging up (a demo's button)."""
    tenant, agent = _seat(request)
    sid, action = request.match_info["call"], request.match_info["action"]
    body = await _json(request)
    by = "agent"
    if action == "customer-hangup":
        action, by = "hangup", "customer"
    value = _text(body, "digits", DIGITS) if action == "digits" else ""
    try:
        after = await simulated.act(request.app[STORE], tenant, agent, sid, action, by=by, value=value)
    except simulated.NotYourCall:
        raise web.HTTPNotFound(text="no such call on your softphone") from None
    return web.json_response({"status": after})


# --- the desk's actions on a call ---


async def _call_context(request: web.Request) -> tuple[Tenant, str, str, str, dict[str, object]]:
    tenant, agent = _seat(request)
    body = await _json(request)
    conversation = _text(body, "conversation", re.compile(ID))
    sid = _text(body, "call", re.compile(r"[A-Za-z0-9]{1,64}"))
    await conversation_of(request, tenant.id, conversation)  # 404 unless the user may see it
    return tenant, agent, conversation, sid, body


async def hold(request: web.Request) -> web.Response:
    tenant, agent, conversation, sid, body = await _call_context(request)
    on = body.get("on", True)
    if not isinstance(on, bool):
        raise web.HTTPBadRequest(text="on: true or false")
    try:
        await desk.hold(
            request.app[STORE], request.app[TWILIO], request.app[SETTINGS], tenant, agent, conversation, sid, on=on
        )
    except desk.DeskError as exc:
        return web.json_response({"error": str(exc)}, status=409)
    return web.json_response({"held": on})


async def hang_up(request: web.Request) -> web.Response:
    """End a held caller's call (with Twilio, the page's call ended when it was held)."""
    tenant, agent, conversation, _sid, _body = await _call_context(request)
    try:
        await desk.hang_up_held(request.app[STORE], request.app[TWILIO], tenant, agent, conversation)
    except desk.DeskError as exc:
        return web.json_response({"error": str(exc)}, status=409)
    return web.json_response({"ended": True})


async def transfer(request: web.Request) -> web.Response:
    tenant, agent, conversation, sid, body = await _call_context(request)
    kind, _, name = _text(body, "target").partition(":")
    note = body.get("note", "")
    if kind not in ("agent", "queue", "number") or not name or not isinstance(note, str):
        raise web.HTTPBadRequest(text="target: agent:<id>, queue:<id> or number:<E.164>")
    if kind == "number":  # cold, to an outside number the tenant allows: the conversation closes
        try:
            await transfer_call.to_number(request.app[STORE], request.app[TWILIO], tenant, agent, conversation, name)
        except desk.DeskError as exc:
            return web.json_response({"error": str(exc)}, status=409)
        return web.json_response({"transferred": transfer_call.TRANSFERRED})
    try:
        outcome = await desk.transfer(
            request.app[STORE],
            request.app[TWILIO],
            request.app[SETTINGS],
            tenant,
            agent,
            conversation,
            sid,
            to_agent=name if kind == "agent" else "",
            to_queue=name if kind == "queue" else "",
            note=note.strip()[:2000],
        )
    except (desk.DeskError, AgentError, KeyError) as exc:
        message = f"no queue {name!r}" if isinstance(exc, KeyError) else str(exc)
        return web.json_response({"error": message}, status=409)
    return web.json_response({"transferred": outcome})


# --- click-to-call ---


async def dial(request: web.Request) -> web.Response:
    """The agent calls a number of the customer of a conversation they hold (a form on
    the conversation page): 303 back to it, or the page with the reason (409)."""
    tenant, record = await conversation_of(request, request.match_info["tenant"], request.match_info["conversation"])
    agent = agent_of(request, tenant)
    form = await read_form(request)
    store = request.app[STORE]
    number = form.get("number", "").strip()
    profile = await customers.profile(store, tenant.id, record["customer"])
    if record.get("agent") != agent or record.get("state") != "assigned":
        error = "call the customers of conversations you hold"
    elif customers.identity("voice", number) not in profile["identities"]:
        error = "call one of the customer's own numbers"
    elif not waiting.callable_number(tenant, number):
        error = f"{number} is outside the tenant's regions or a number type that costs more; it is not called"
    elif softphone.mode(tenant) == "unavailable" and not softphone.phone_of(tenant, agent):
        error = "you have neither a phone nor the softphone to call from"
    else:
        try:
            await callbacks.dial_customer(store, tenant, agent, record["id"], number, form.get("key", ""))
        except ValueError as exc:
            error = str(exc)
        else:
            raise web.HTTPSeeOther(f"/inbox/t/{tenant.id}/c/{record['id']}?done=dialling")
    return await conversation_page(request, error=error, status=409)


# --- files ---


async def sound(request: web.Request) -> web.Response:
    try:
        body = tones.wav(request.match_info["name"])
    except KeyError:
        raise web.HTTPNotFound() from None
    return web.Response(body=body, content_type="audio/wav", headers={"Cache-Control": "private, max-age=86400"})


async def vendored(request: web.Request) -> web.FileResponse:
    """A front-end package vendored from npm (python -m ops.vendor), from the templates."""
    name = request.match_info["name"]
    if name not in VENDOR:
        raise web.HTTPNotFound()
    path = templating.folder() / "inbox" / "vendor" / name
    if not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={"Content-Type": VENDOR[name], "Cache-Control": "no-cache"})


async def _twilio_context(app: web.Application) -> AsyncIterator[None]:
    app[TWILIO] = TwilioClients(app[SETTINGS])
    app[SOCKETS] = set()
    yield
    await app[TWILIO].close()


async def _close_sockets(app: web.Application) -> None:
    for socket in list(app.get(SOCKETS, ())):
        await socket.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


def routes(app: web.Application) -> None:
    app.cleanup_ctx.append(_twilio_context)
    app.on_shutdown.append(_close_sockets)
    add = app.router
    add.add_post("/softphone/seats", seats)
    base = "/t/{tenant}/softphone"
    add.add_post(base + "/token", token)
    add.add_post(base + "/placed", placed)
    add.add_get(base + "/simulated", simulated_socket)
    add.add_post(base + "/simulated/{call:" + ID + "}/{action:" + "|".join(SIMULATED_ACTIONS) + "}", simulated_action)
    add.add_post(base + "/hold", hold)
    add.add_post(base + "/transfer", transfer)
    add.add_post(base + "/hangup", hang_up)
    add.add_post(CONVERSATION_PATH + "/dial", dial)
    add.add_get("/softphone/sounds/{name:[a-z0-9]+}.wav", sound)
    add.add_get("/static/vendor/{name}", vendored)
