"""The routing scripts (router/lua/*.lua), each one atomic decision.

Every script gets lib.lua prepended and the shard's base key as KEYS[1], so it
runs inside one cluster slot. redis-py's Script sends EVALSHA and falls back to
EVAL after a restart emptied the script cache.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

NAMES = (
    "intake",
    "assign_queue",
    "assign_agent",
    "respond",
    "close",
    "wrapup",
    "transfer",
    "presence",
    "escalate",
    "sla",
    "claim_timers",
    "ingest",
    "begin_send",
    "finish_send",
)


@cache
def source(name: str) -> str:
    if name not in NAMES:
        raise KeyError(name)
    folder = resources.files("router").joinpath("lua")
    return folder.joinpath("lib.lua").read_text("utf-8") + "\n" + folder.joinpath(f"{name}.lua").read_text("utf-8")


class Scripts:
    """The scripts registered on one client; attribute access by script name."""

    def __init__(self, redis: Any) -> None:
        self._scripts = {name: redis.register_script(source(name)) for name in NAMES}

    async def load(self, redis: Any) -> None:
        """SCRIPT LOAD them all now. redis-py reloads after NOSCRIPT on its own,
        but fakeredis's TCP server drops the connection on NOSCRIPT instead."""
        for script in self._scripts.values():
            sha = await redis.script_load(script.script)
            script.sha = sha.decode() if isinstance(sha, bytes) else sha

    def __getattr__(self, name: str) -> Any:
        try:
            return self._scripts[name]
        except KeyError:
            raise AttributeError(name) from None
