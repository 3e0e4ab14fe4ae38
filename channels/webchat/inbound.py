"""A visitor's message (typed, or a file with a caption) into routing.

Normalised to an InboundContact whose provider id is the visitor's own id for the
message, put on the inbound stream once, and only then shown in the visitor's
history and open tabs; the caller acknowledges the tab after that.
"""

from __future__ import annotations

from channels.webchat import transcript
from router import bus, events
from router.config import Tenant
from router.keys import Keys
from router.store import Store


def contact_fields(
    tenant: Tenant, state: dict[bytes, bytes], page: str = "", language: str = ""
) -> tuple[str, dict[str, str]]:
    """The queue a visitor's pre-chat topic picks ("" for the entry queue) and what the
    agent is told about them, with their browser's language (routing's fallback when it
    cannot tell the language from what they wrote: router/intake.py)."""
    answers = {k.decode(): v.decode() for k, v in state.items() if k in (b"name", b"email", b"topic")}
    assert tenant.webchat is not None
    queue = next((t.queue for t in tenant.webchat.topics if t.label == answers.get("topic")), "")
    metadata = {f"prechat_{name}": value for name, value in answers.items()}
    if page:
        metadata["page"] = page
    if language:
        metadata[events.BROWSER_LANGUAGE] = language
    return queue, metadata


async def deliver(
    store: Store,
    tenant: Tenant,
    visitor: str,
    client_id: str,
    body: str,
    state: dict[bytes, bytes],
    *,
    page: str = "",
    language: str = "",
    attachments: tuple[events.Attachment, ...] = (),
) -> bool:
    """Put a visitor's message on the inbound stream (once per client id) and show it in
    their history and open tabs; returns whether it was a resend of one already there."""
    queue, metadata = contact_fields(tenant, state, page, language)
    contact = events.InboundContact(
        id=events.new_id(),
        tenant=tenant.id,
        channel="webchat",
        address=visitor,
        name=metadata.get("prechat_name", ""),
        provider_id=f"{visitor}:{client_id}",  # the visitor's own: no one else's id can collide with it
        occurred_at=events.now_ms(),
        body=body,
        attachments=attachments,
        queue=queue,
        metadata=metadata,
    )
    added, entry_id = await bus.ingest(store, contact)
    if not added:
        if await transcript.contains(store, tenant.id, visitor, client_id):
            return True
        # The first attempt stopped between the stream and the transcript: finish it.
        rows = await store.redis.xrange(Keys(tenant.id).inbound, entry_id, entry_id)
        if not rows:
            return True  # trimmed long ago; nothing more to do
        contact = events.decode_inbound(rows[0][1][b"e"])
    item = transcript.ChatItem(
        type="message",
        id=contact.id,
        kind="in",
        text=contact.body,
        at=contact.occurred_at,
        client_id=client_id,
        files=transcript.file_refs(contact.attachments),
    )
    await transcript.append(store, tenant.id, visitor, item)
    return not added
