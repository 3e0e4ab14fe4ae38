"""SMS delivery status callbacks: Twilio reports what became of each message it
accepted (sent to the carrier, delivered, undelivered, failed, read).

POST /twilio/{tenant}/sms/status, signed with the tenant's auth token. A report
moves the message's delivery record only forward and appends a DeliveryStatus
event to the tenant's events stream; a duplicate or late report (Twilio does not
promise order) changes nothing.
"""

from __future__ import annotations

import logging

from aiohttp import web

from channels._twilio_auth import tenant_form
from channels.sms.outbound import UNSUBSCRIBED, unsubscribed
from router import atomic
from router.appkeys import STORE
from router.store import Store

log = logging.getLogger(__name__)

# Twilio's statuses that tell us something past our own "sent" (Twilio accepted
# the message), in order; undelivered and failed are final. The earlier ones
# (accepted, scheduled, queued, sending) add nothing and change nothing.
PROGRESS = {"sent": 1, "delivered": 2, "read": 3, "undelivered": 4, "failed": 4}


async def record(store: Store, tenant: str, sid: str, status: str, error: str = "") -> tuple[str, str]:
    """Apply one status report: ("updated", status), ("unchanged", current status)
    or ("unknown", "") when no message of ours has that MessageSid. The same atomic
    script as every channel's reports (router/lua/delivery_status.lua), with SMS's order."""
    return await atomic.delivery_status(
        store, tenant, ref=sid, channel="sms", status=status, error=error, order=PROGRESS
    )


async def status_callback(request: web.Request) -> web.Response:
    store = request.app[STORE]
    tenant, form = await tenant_form(request, required=("MessageSid", "MessageStatus"))
    sid, status = form["MessageSid"], form["MessageStatus"]
    if status not in PROGRESS:
        return web.Response(text="")
    code = form.get("ErrorCode", "")
    outcome, _current = await record(store, tenant.id, sid, status, f"Twilio error {code}" if code else "")
    if outcome == "unknown":
        # Answered 200 all the same: Twilio retrying would not make it ours.
        log.warning("status %s for unknown message %s of %s ignored", status, sid, tenant.id)
    elif outcome == "updated":
        log.debug("message %s of %s: %s", sid, tenant.id, status)
    if code == str(UNSUBSCRIBED) and form.get("To"):
        await unsubscribed(store, tenant.id, form["To"], sid)
    return web.Response(text="")


def setup(app: web.Application) -> None:
    app.router.add_post("/twilio/{tenant}/sms/status", status_callback)
