"""SMS through Twilio Messaging: inbound webhooks, opt-out keywords, outbound
sending (or the sandbox outbox without credentials), delivery status callbacks."""

from __future__ import annotations

from aiohttp import web

from channels.sms import inbound, status
from channels.sms.outbound import SmsSender

__all__ = ["SmsSender", "setup"]


def setup(app: web.Application) -> None:
    """Mount the SMS webhooks: inbound messages and delivery status callbacks."""
    inbound.setup(app)
    status.setup(app)
