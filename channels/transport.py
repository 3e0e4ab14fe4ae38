"""What every channel's sender promises the dispatcher."""

from __future__ import annotations

from typing import Literal, Protocol

from router.events import OutboundMessage

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
        """Hand the message to the provider; returns the provider's id for it."""
        ...

    async def reconcile(self, message: OutboundMessage) -> tuple[Reconciled, str]:
        """After a dispatcher died mid-send: did the provider get it? (outcome, provider id)."""
        ...
