"""Telegram through python-telegram-bot: one bot per tenant; updates by webhook (the web
process) or long polling (the `telegram` process), each stored once by update_id;
replies through the bot (or the sandbox outbox without one)."""

from __future__ import annotations

from aiohttp import web

from channels.telegram import webhook
from channels.telegram.outbound import TelegramSender

__all__ = ["TelegramSender", "setup"]


def setup(app: web.Application) -> None:
    """Mount the Telegram webhook."""
    webhook.setup(app)
