"""Channel adapters: one package per channel, each with the same shape (parse, validate,
normalise, append; render, send, follow status) and the same file names (inbound,
outbound, status, cli). ADAPTERS is the one table of them: the dispatcher takes every
channel's sender from it, and the web process mounts every channel's webhooks from it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from channels import email, fax, sms, telegram, voice, webchat
from channels.sandbox import SandboxSender
from channels.transport import Sender
from router.config import Deployment
from router.events import CHANNELS
from router.settings import Settings
from router.store import Store


@dataclass(frozen=True)
class Adapter:
    """What the processes need of a channel package."""

    sender: Callable[[Store, Deployment, Settings], Sender]  # sends for every tenant (the sandbox without a provider)
    setup: Callable[[web.Application], None] | None = None  # mounts its webhooks on the web process; None: it has none


ADAPTERS: dict[str, Adapter] = {
    "sms": Adapter(sms.SmsSender, sms.setup),
    "voice": Adapter(voice.VoiceSender, voice.setup),
    "email": Adapter(email.EmailSender),  # mail comes in through the smtp process
    "fax": Adapter(fax.FaxSender),  # faxes come in as mail from the tenants' gateways
    "webchat": Adapter(webchat.sender, webchat.setup),
    "telegram": Adapter(telegram.TelegramSender, telegram.setup),
}


def sandbox_senders(store: Store) -> dict[str, Sender]:
    """Every channel to the sandbox outbox: what runs with no provider configured."""
    return {channel: SandboxSender(store, channel) for channel in CHANNELS}


def senders(store: Store, deployment: Deployment, settings: Settings) -> dict[str, Sender]:
    """The sender of every channel. A channel's own sender sends through its
    provider for tenants that configured one, and to the sandbox for the others."""
    return {channel: adapter.sender(store, deployment, settings) for channel, adapter in ADAPTERS.items()}


def setup_webhooks(app: web.Application) -> None:
    """Mount every channel's provider webhooks on the web process."""
    for adapter in ADAPTERS.values():
        if adapter.setup is not None:
            adapter.setup(app)
