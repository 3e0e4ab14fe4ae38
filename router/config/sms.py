"""A tenant's SMS section."""

from __future__ import annotations

import msgspec

from router.config.fields import E164


class SmsChannel(msgspec.Struct, forbid_unknown_fields=True):
    """SMS for a tenant: its numbers (inbound: how the tenant is found; outbound: the sender).
    A number belongs to one tenant (`Deployment` checks that across tenants)."""

    numbers: list[E164] = []  # the first one sends unless a messaging service is set
    messaging_service_sid: str = ""
    help_text: str = "Reply STOP to stop messages, START to receive them again."
    stop_text: str = "You will receive no more messages from us. Reply START to resubscribe."
    start_text: str = "You are subscribed again. Reply STOP to stop, HELP for help."
