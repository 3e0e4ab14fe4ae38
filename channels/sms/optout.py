"""SMS opt-out: the keywords carriers and Twilio honour, and the tenant's suppression list."""

from __future__ import annotations

from typing import Literal

from router.keys import Keys
from router.store import Store

Keyword = Literal["stop", "start", "help"]

# Whole-body keywords, any case (Twilio's defaults and CTIA's list).
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
START_WORDS = frozenset({"START", "UNSTOP", "YES"})
HELP_WORDS = frozenset({"HELP", "INFO"})


def keyword(body: str) -> Keyword | None:
    """The opt-out keyword a message consists of, if it is one (whole body, any case)."""
    word = body.strip().strip(".!").upper()
    if word in STOP_WORDS:
        return "stop"
    if word in START_WORDS:
        return "start"
    if word in HELP_WORDS:
        return "help"
    return None


async def suppress(store: Store, tenant: str, number: str) -> bool:
    """Add a number to the tenant's SMS suppression list; True if it was not there yet."""
    return bool(await store.redis.sadd(Keys(tenant).suppression("sms"), number))


async def lift(store: Store, tenant: str, number: str) -> bool:
    """Take a number off the list (START); True if it was on it."""
    return bool(await store.redis.srem(Keys(tenant).suppression("sms"), number))


async def is_suppressed(store: Store, tenant: str, number: str) -> bool:
    return bool(await store.redis.sismember(Keys(tenant).suppression("sms"), number))
