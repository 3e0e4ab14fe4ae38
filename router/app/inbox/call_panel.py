"""What the conversation page shows of a call beyond its messages: the call's
recordings (played behind the login, router.app.inbox.recordings), whether one is
running and may be paused by this user, and which supervisors are on the call
(listening, coaching or in it: channels.voice.monitor), so the agent knows.

GET /inbox/t/{tenant}/c/{conversation}/call.json is the same, briefly, for the
softphone panel, which asks every few seconds during a caller's call: who is on it,
the recording's state, the consultation under way."""

from __future__ import annotations

from aiohttp import web

from channels.voice import monitor, recording, transfer
from router.app.inbox.access import CONVERSATION_PATH, conversation_of
from router.app.inbox.accounts import User
from router.appkeys import STORE
from router.config import Tenant
from router.store import Store

LISTENING = {"listen": "listening", "whisper": "coaching you", "barge": "speaking"}


def listeners_text(listeners: list[dict[str, str]]) -> str:
    """Who is on the call besides the agent, for people: "sue (listening), tom (coaching you)"."""
    return ", ".join(
        f"{li['login']} ({LISTENING.get(li['mode'], li['mode'])}{', joining' if li['state'] == 'joining' else ''})"
        for li in listeners
    )


async def panel(store: Store, tenant: Tenant, record: dict[str, str], user: User) -> dict[str, object]:
    found = await recording.of_conversation(store, tenant.id, record["id"])
    base = f"/inbox/t/{tenant.id}/c/{record['id']}/recordings"
    running = next((r for r in reversed(found) if r.get("state") in ("in-progress", "paused")), None)
    holder = record.get("agent", "") and record.get("agent") == user.agent_in(tenant.id)
    listeners = await monitor.listeners(store, tenant.id, record["id"])
    live = await monitor.live_call(store, tenant.id, record["id"])
    return {
        "live": live,
        "recordings": [
            {
                "href": f"{base}/{r['sid']}" if r.get("state") == "completed" and not r.get("simulated") else "",
                "state": r.get("state", ""),
                "duration_s": r.get("duration_s", ""),
                "simulated": bool(r.get("simulated")),
                "started_at": int(r.get("started_at", "0") or 0),
            }
            for r in found
        ],
        "running": running["state"] if running else "",
        "may_pause": bool(running) and (bool(holder) or user.supervises),
        "listeners": listeners,
        "listeners_text": listeners_text(listeners),
        "may_monitor": user.supervises and live,
        "on_call": any(li["login"] == user.login for li in listeners),
        "may_transfer": bool(holder) and live and record.get("state") == "assigned",
        "consulting": (await transfer.consultation(store, tenant.id, record["id"])).get("target", ""),
        "transfer_targets": transfer_targets(tenant, user.agent_in(tenant.id)),
    }


def transfer_targets(tenant: Tenant, agent: str) -> list[dict[str, str]]:
    """Where a call may go: colleagues, queues and the tenant's allowed outside numbers."""
    return (
        [{"value": f"agent:{a.id}", "label": f"Agent: {a.name or a.id}"} for a in tenant.agents if a.id != agent]
        + [{"value": f"queue:{q.id}", "label": f"Queue: {q.name or q.id}"} for q in tenant.queues]
        + [{"value": f"number:{n}", "label": f"Number: {n}"} for n in tenant.voice.transfer_numbers]
    )


async def call_json(request: web.Request) -> web.Response:
    tenant, record = await conversation_of(request, request.match_info["tenant"], request.match_info["conversation"])
    store = request.app[STORE]
    running = await recording.running(store, tenant.id, record["id"])
    return web.json_response(
        {
            "live": await monitor.live_call(store, tenant.id, record["id"]),
            "listeners": listeners_text(await monitor.listeners(store, tenant.id, record["id"])),
            "recording": running["state"] if running else "",
            "consulting": (await transfer.consultation(store, tenant.id, record["id"])).get("target", ""),
        }
    )


def routes(app: web.Application) -> None:
    app.router.add_get(CONVERSATION_PATH + "/call.json", call_json)
