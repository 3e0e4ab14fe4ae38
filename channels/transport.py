"""What every channel's sender promises the dispatcher."""

from __future__ import annotations

from typing import Literal, Protocol

from router.events import OutboundMessage
from router.keys import Keys
from router.store import Store

Reconciled = Literal["sent", "not_sent", "unknown"]


class TemporaryFailure(Exception):
    """The provider may accept the message later (rate limit, timeout, 5xx): retry with backoff."""


class PermanentFailure(Exception):
    """The provider will never accept this message (bad number, blocked): record it failed."""


class Refused(PermanentFailure):
    """Never sent, by our own rule (an opted-out or do-not-contact address); recorded as refused."""


class OutcomeUnknown(Exception):
    """The request may have reached the provider but no answer came (a read timeout,
    a dropped connection): never retried, recorded as unknown, so nobody gets a
    message twice."""


class Sender(Protocol):
    channel: str

    async def send(self, message: OutboundMessage) -> str:
        """Hand the message to the provider; returns the provider's id for it. A message
        of a tenant the deployment no longer has raises the deployment's UnknownTenant,
        which the dispatcher records as failed, like a PermanentFailure."""
        ...

    async def reconcile(self, message: OutboundMessage) -> tuple[Reconciled, str]:
        """After a dispatcher died mid-send: did the provider get it? (outcome, provider id)."""
        ...

    async def close(self) -> None:
        """Release what the sender holds (HTTP sessions, bots) when its process stops."""
        ...


async def reconcile_from_record(store: Store, message: OutboundMessage) -> tuple[Reconciled, str]:
    """After a dispatcher died mid-send, for a provider that cannot be asked by our id
    (an SMTP relay, Twilio Messaging, the Bot API): only our own record answers. A
    sender marks each attempt before it calls the provider (mark_requested) and writes
    the provider's id as soon as it has one, so: an id recorded is sent; no mark, or
    the mark of an earlier attempt, is not sent (this attempt never called); otherwise
    it died waiting for the provider's answer, unknown (never resent)."""
    provider_id, attempts, requested = await store.redis.hmget(
        Keys(message.tenant).delivery(message.id), "provider_id", "attempts", "requested"
    )
    if provider_id:
        return "sent", provider_id.decode()
    if requested is None or int(requested) != int(attempts or 0):
        return "not_sent", ""
    return "unknown", ""
