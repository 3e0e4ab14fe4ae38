"""Outbound SMS (placeholder: being written; sends to the sandbox meanwhile)."""

from __future__ import annotations

from channels.sandbox import SandboxSender
from router.config import Deployment, Settings
from router.store import Store


class SmsSender(SandboxSender):
    def __init__(self, store: Store, deployment: Deployment, settings: Settings) -> None:
        super().__init__(store, "sms")
