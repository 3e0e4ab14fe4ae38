"""Agents' replies to web chat visitors.

The dispatch process may run apart from the web processes, so a reply is handed
over through Redis: appended to the visitor's transcript and the tenant's live
stream in one transaction, with a marker that makes the send idempotent and lets
a dispatcher that died mid-send find out it did send.
"""

from __future__ import annotations

from channels.sandbox import SandboxSender
from channels.transport import Reconciled
from channels.webchat import transcript
from router.config import Deployment
from router.events import OutboundMessage
from router.keys import Keys
from router.store import Store, text


class WebchatSender:
    channel = "webchat"

    def __init__(self, store: Store, deployment: Deployment) -> None:
        self.store = store
        self.deployment = deployment
        self.sandbox = SandboxSender(store, "webchat")  # tenants without a chat (a contact added by hand)

    async def close(self) -> None:
        """Nothing held between sends."""

    async def send(self, message: OutboundMessage) -> str:
        tenant = self.deployment.tenant(message.tenant)
        if tenant.webchat is None:
            return await self.sandbox.send(message)
        marker = Keys(tenant.id).seen("webchat-out", message.id)
        first = await self.store.redis.get(marker)
        if first is not None:  # sent before (a redelivered entry): the tabs saw it already
            return text(first)
        if message.automatic:
            sender = tenant.webchat.title or tenant.name or tenant.id
        else:
            sender = next((a.name or a.id for a in tenant.agents if a.id == message.agent), message.agent)
        survey = message.metadata.get("survey", "")
        item = transcript.ChatItem(
            type="survey" if survey else "message",  # a survey: the widget adds its rating buttons
            conversation=survey,
            id=message.id,
            kind="out",
            text=message.body,
            at=message.occurred_at,
            agent=sender,
            files=transcript.file_refs(message.attachments),  # the widget gets a signed link to each
        )
        provider_id = f"webchat-{message.id}"
        await transcript.append(self.store, tenant.id, message.to, item, marker=marker, mark=provider_id)
        return provider_id

    async def reconcile(self, message: OutboundMessage) -> tuple[Reconciled, str]:
        tenant = next((t for t in self.deployment.tenants if t.id == message.tenant), None)
        if tenant is not None and tenant.webchat is None:
            return await self.sandbox.reconcile(message)
        provider_id = await self.store.redis.get(Keys(message.tenant).seen("webchat-out", message.id))
        return ("sent", text(provider_id)) if provider_id else ("not_sent", "")
