"""Channel adapters: one module (or package) per channel, each with the same shape
(parse, validate, normalise, append; render, send, follow status)."""

from __future__ import annotations

from aiohttp import web

from channels.sandbox import SandboxSender
from channels.transport import Sender
from router.config import Deployment
from router.events import CHANNELS
from router.settings import Settings
from router.store import Store


def sandbox_senders(store: Store) -> dict[str, Sender]:
    """Every channel to the sandbox outbox: what runs with no provider configured."""
    return {channel: SandboxSender(store, channel) for channel in CHANNELS}


def senders(store: Store, deployment: Deployment, settings: Settings) -> dict[str, Sender]:
    """The sender of every channel. A channel's own sender sends through its
    provider for tenants that configured one, and to the sandbox for the others."""
    from channels.sms import SmsSender
    from channels.voice.dialer import VoiceSender

    result = sandbox_senders(store)
    result["sms"] = SmsSender(store, deployment, settings)
    result["voice"] = VoiceSender(store, deployment, settings)
    from channels.email.outbound import EmailSender

    result["email"] = EmailSender(store, deployment, settings)
    from channels.webchat import WebchatSender

    result["webchat"] = WebchatSender(store, deployment)
    from channels.telegram import TelegramSender

    result["telegram"] = TelegramSender(store, deployment, settings)
    from channels.fax.outbound import FaxSender

    result["fax"] = FaxSender(store, deployment, settings)
    return result


def setup_webhooks(app: web.Application) -> None:
    """Mount every channel's provider webhooks on the web process."""
    from channels import sms, voice

    sms.setup(app)
    voice.setup(app)
    from channels import webchat

    webchat.setup(app)
    from channels import telegram

    telegram.setup(app)
