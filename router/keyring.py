"""Secrets rotated without downtime: the environment variable that holds one may hold
several, separated by commas, newest first ("NEW,OLD"). The newest signs and authenticates
to providers; every one still verifies, so what the old key signed (a visitor's token, a
link in a sent email, a webhook in flight) keeps working while the processes restart one
by one. Once no process and nothing outstanding needs the old key, drop it from the list.
docs/operations.md walks through each secret."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

SEPARATOR = ","


@dataclass(frozen=True, slots=True)
class KeyRing:
    """One secret's keys, newest first (never empty once parsed from a set variable)."""

    keys: tuple[str, ...]

    @classmethod
    def parse(cls, value: str) -> KeyRing:
        return cls(tuple(part.strip() for part in value.split(SEPARATOR) if part.strip()))

    @property
    def current(self) -> str:
        """The key that signs now ("" when there is none)."""
        return self.keys[0] if self.keys else ""

    def __bool__(self) -> bool:
        return bool(self.keys)

    def any(self, check: Callable[[str], bool]) -> bool:
        """Whether some key passes `check` (e.g. a signature made with it matches); every key
        is tried, so the time taken does not tell which one matched."""
        results = [check(key) for key in self.keys]
        return any(results)


def ring(secret: KeyRing | str) -> KeyRing:
    """A key ring from either a ring or one key (as tests and one-key callers pass)."""
    return secret if isinstance(secret, KeyRing) else KeyRing((secret,) if secret else ())
