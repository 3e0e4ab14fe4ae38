"""What a log line is about: the tenant, conversation and contact being handled.

Set once where the handling of one begins (a webhook's request, a routing batch's entry,
a send, a timer, a mail), and every line logged inside it carries them, whichever module
logs it: `LogContext`, installed on the log handler, copies them onto each record, where the
JSON logs write them as fields of their own (router/app/processes.py). They live in a
contextvar, so each asyncio task (a request, a send running beside others) has its own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

FIELDS = ("tenant", "conversation", "contact")

_about: ContextVar[dict[str, str]] = ContextVar("log_about", default={})  # noqa: B039 (never mutated)


@contextmanager
def about(*, tenant: str = "", conversation: str = "", contact: str = "") -> Iterator[None]:
    """Lines logged inside carry these ids (added to those already set; empty ones are not set)."""
    token = _about.set(_merged(tenant=tenant, conversation=conversation, contact=contact))
    try:
        yield
    finally:
        _about.reset(token)


def bind(*, tenant: str = "", conversation: str = "", contact: str = "") -> None:
    """The rest of the current task's lines carry these ids, up to the end of the enclosing
    `about` (a webhook learns its tenant only once it has read the request)."""
    _about.set(_merged(tenant=tenant, conversation=conversation, contact=contact))


def current() -> dict[str, str]:
    return dict(_about.get())


def _merged(**ids: str) -> dict[str, str]:
    return {**_about.get(), **{name: value for name, value in ids.items() if value}}


class LogContext(logging.Filter):
    """Copies the ids being handled onto each record; an id a call passes in `extra` wins."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _about.get().items():
            if not getattr(record, name, None):
                setattr(record, name, value)
        return True
