"""Inbound SMS webhooks (placeholder: being written)."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Mount the SMS webhooks (inbound message, status callback)."""
