"""Channel adapters: one module per channel, each with the same shape
(parse, validate, normalise, append; render, send, follow status)."""

from __future__ import annotations

from channels.sandbox import SandboxSender
from channels.transport import Sender
from router.events import CHANNELS
from router.store import Store


def senders(store: Store) -> dict[str, Sender]:
    """The sender of every channel. Providers' own senders replace the sandbox as
    their adapters land; until a channel is configured, it sends to the outbox."""
    return {channel: SandboxSender(store, channel) for channel in CHANNELS}
