"""Call recordings on the desk (channels.voice.recording): heard in the conversation
behind the login, paused and resumed while a call runs.

- GET /inbox/t/{tenant}/c/{conversation}/recordings/{sid}: the recording, fetched from
  Twilio with the tenant's account and streamed on, as voicemail is (media.relay). Only
  a recording of that conversation, of a tenant the user may see it in, is served (404
  otherwise, so a guessed id learns nothing); every play is in the audit trail.
- POST /inbox/t/{tenant}/c/{conversation}/recording (form: paused=1|0, the CSRF token):
  pause or resume the call's running recording (a card number is being read out). The
  agent who holds the conversation, or a supervisor, may; JSON when asked for it (the
  softphone panel), else 303 back to the conversation page.
"""

from __future__ import annotations

import logging

from aiohttp import web

from channels.voice import recording
from router import audit
from router.app.inbox import media
from router.app.inbox.access import CONVERSATION_PATH, conversation_of
from router.app.inbox.login import client_address
from router.app.inbox.pages import conversation as conversation_page
from router.app.inbox.rendering import read_fields
from router.app.inbox.sessions import USER
from router.app.inbox.softphone import TWILIO
from router.appkeys import SETTINGS, STORE

log = logging.getLogger(__name__)

SID = r"(RE|SIMRE)[0-9a-fA-F]{32}"


async def play(request: web.Request) -> web.StreamResponse:
    tenant, record = await conversation_of(request, request.match_info["tenant"], request.match_info["conversation"])
    store = request.app[STORE]
    found = await recording.get(store, tenant.id, request.match_info["sid"])
    if found.get("conversation") != record["id"]:
        raise web.HTTPNotFound()
    if found.get("simulated"):
        raise web.HTTPNotFound(text="a simulated call's recording has no sound")
    url = media.fetch_url(recording.media_url(found), request.app[SETTINGS])
    if url is None or found.get("state") != "completed":
        raise web.HTTPNotFound(text="the recording is not ready")
    await audit.record(
        store,
        "recording_opened",
        actor=request[USER].login,
        client=client_address(request),
        tenants=(tenant.id,),
        target=f"conversation {record['id']}, call recording {found['sid']}",
    )
    return await media.relay(request, tenant, url, "audio/mpeg", f"{tenant.id}/{record['id']} {found['sid']}")


async def pause(request: web.Request) -> web.Response:
    tenant, record = await conversation_of(request, request.match_info["tenant"], request.match_info["conversation"])
    user = request[USER]
    form = await read_fields(request)
    paused = form.get("paused", "")
    if paused not in ("0", "1"):
        raise web.HTTPBadRequest(text="paused: 1 or 0")
    wants_json = "application/json" in request.headers.get("Accept", "")
    if not user.supervises and record.get("agent") != user.agent_in(tenant.id):
        error = "only the agent on the call or a supervisor may pause its recording"
    else:
        try:
            found = await recording.pause(
                request.app[STORE], request.app[TWILIO], tenant, record["id"], paused=paused == "1", by=user.login
            )
        except recording.RecordingError as exc:
            error = str(exc)
        else:
            if wants_json:
                return web.json_response({"recording": found["state"]})
            raise web.HTTPSeeOther(f"/inbox/t/{tenant.id}/c/{record['id']}?done=recording-{found['state']}")
    if wants_json:
        return web.json_response({"error": error}, status=409)
    return await conversation_page(request, error=error, status=409)


def routes(app: web.Application) -> None:
    app.router.add_get(CONVERSATION_PATH + "/recordings/{sid:" + SID + "}", play)
    app.router.add_post(CONVERSATION_PATH + "/recording", pause)
