"""SMS through Twilio Messaging: inbound webhooks, opt-out keywords, outbound
sending (or the sandbox outbox without credentials), delivery status callbacks."""

from __future__ import annotations

from channels.sms.inbound import setup
from channels.sms.outbound import SmsSender

__all__ = ["SmsSender", "setup"]
