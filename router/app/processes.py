"""Process roles and how one process runs one or several of them.

Each role is `async def run(store, deployment, settings, stop)`. With REDIS_URL
set, the Procfile runs one role per process; `contactrouter up` runs them all
in one process on the embedded store.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from ops import health
from router import bus, logcontext, queues
from router.config import Deployment
from router.keys import DISPATCH_GROUP, ROUTING_GROUP, Keys
from router.settings import Settings
from router.stopping import stopped
from router.store import STORE_ERRORS, Store, StoreOutage

if TYPE_CHECKING:
    from router.records.archive import Archive

log = logging.getLogger(__name__)

Role = Callable[[Store, Deployment, Settings, asyncio.Event], Awaitable[None]]
T = TypeVar("T")
EXIT_GRACE_S = 3.0  # how long tasks left over at exit get to end after they are cancelled


def run_to_exit(main: Coroutine[Any, Any, T], grace_s: float = EXIT_GRACE_S) -> T:
    """asyncio.run, except that the tasks still running when `main` returns get `grace_s` to
    end once cancelled, not forever: a Redis read that misses its cancel (redis-py can lose
    one inside a blocking XREAD) kept `run web` on a busy port alive after it said it stops,
    deaf to SIGTERM. Those left are named in one warning and abandoned with the loop."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main)
    finally:
        stray = asyncio.all_tasks(loop)
        for task in stray:
            task.cancel()
        if stray:
            loop.run_until_complete(asyncio.wait(stray, timeout=grace_s))
        if left := sorted(task.get_name() for task in stray if not task.done()):
            log.warning("exiting without waiting for %s: not ended %.0f s after cancelled", ", ".join(left), grace_s)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def roles() -> dict[str, Role]:
    # Imported when asked for, not with this module: the CLI imports it for every command,
    # and the roles load every channel adapter and worker.
    from channels.telegram import polling as telegram_polling
    from router.app import web
    from workers import archive, dispatch, imap, routing, smtp, timers
    from workers.campaigns import worker as campaigns_worker

    return {
        "web": web.run,
        "routing": routing.run,
        "dispatch": dispatch.run,
        "timers": timers.run,
        "smtp": smtp.run,
        "imap": imap.run,
        "campaigns": campaigns_worker.run,
        "telegram": telegram_polling.run,
        "archive": archive.run,
    }


# The ids a line is about (router/logcontext.py, or a call's `extra`), and the access log's
# parts; JSON logs carry them as fields of their own.
CONTEXT_FIELDS = logcontext.FIELDS
ACCESS_FIELDS = ("method", "path", "status", "ms", "peer")


class JsonLogs(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        for name in CONTEXT_FIELDS:  # passed as log.info(..., extra={"tenant": ..., "conversation": ...})
            value = getattr(record, name, None)
            if value:
                entry[name] = str(value)
        for name in ACCESS_FIELDS:  # router/app/web.py's access log: numbers stay numbers
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class TextLogs(logging.Formatter):
    """A line for people: the ids it is about after the message, `[tenant=acme conversation=...]`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        ids = " ".join(f"{name}={value}" for name in CONTEXT_FIELDS if (value := getattr(record, name, None)))
        return f"{line} [{ids}]" if ids else line


def setup_logging(settings: Settings, *, json_logs: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogs() if json_logs else TextLogs())
    handler.addFilter(logcontext.LogContext())  # every line inside one contact's handling carries its ids
    logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)


def consumer_name(role: str, settings: Settings) -> str:
    return settings.consumer or f"{role}-{socket.gethostname()}-{os.getpid()}"


async def prepare(store: Store, deployment: Deployment, stop: asyncio.Event | None = None) -> None:
    """Apply the configuration and create the consumer groups (idempotent; every process does it).

    A store that is down (a Redis restarting, a worker started before it) is waited for
    with a capped backoff and one log line per attempt, until it answers or `stop` is set;
    a worker started during an outage comes up when Redis does instead of exiting.
    """
    outage = StoreOutage("start-up")
    while True:
        try:
            # A fast probe first: the main client retries each command for seconds.
            await store.probe.ping()
            await _prepare(store, deployment)
        except STORE_ERRORS as exc:
            wait = outage.failed(exc, every_attempt=True)
            if stop is None:
                await asyncio.sleep(wait)
            elif await stopped(stop, wait):
                return
            continue
        outage.recovered()
        return


async def _prepare(store: Store, deployment: Deployment) -> None:
    await store.load_scripts()
    for tenant in deployment.tenants:
        await queues.apply_tenant(store, tenant)
        keys = Keys(tenant.id)
        await bus.ensure_group(store, keys.inbound, ROUTING_GROUP)
        await bus.ensure_group(store, keys.outbound, DISPATCH_GROUP)


async def run_roles(
    names: list[str], store: Store, deployment: Deployment, settings: Settings, stop: asyncio.Event | None = None
) -> list[str]:
    """Run roles until SIGTERM/SIGINT (or `stop`), then let them finish their batch.

    Returns the roles that stopped by error (or ended on their own): the caller exits
    non-zero then, so a process manager that restarts on failure restarts the process.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    await prepare(store, deployment, stop)
    if stop.is_set():  # asked to stop while waiting for the store
        return []
    if settings.database_url and store.archive is None:
        store.archive = await open_archive(settings, stop, wait="archive" in names)
        if store.archive is None:  # asked to stop while waiting for the database
            return []
    try:
        return await _run(names, store, deployment, settings, stop)
    finally:
        if store.archive is not None:
            await store.archive.close()
            store.archive = None


async def open_archive(settings: Settings, stop: asyncio.Event, *, wait: bool) -> Archive | None:
    """The system of record's connection pool (router/records). The archive role waits for
    PostgreSQL and a current schema; the other roles only read from it, and open the pool
    without waiting, so that the web process serves without it (an archived conversation
    answers with an error until it is back)."""
    from router.records.archive import Archive
    from workers.archive import DATABASE_ERRORS

    assert settings.database_url
    if not wait:
        return await Archive.connect(settings.database_url, size=settings.archive_pool)
    outage = StoreOutage("archive database")
    while True:
        try:
            archive = await Archive.open(settings.database_url, size=settings.archive_pool)
        except DATABASE_ERRORS as exc:
            if await stopped(stop, outage.failed(exc, every_attempt=True)):
                return None
            continue
        outage.recovered()
        return archive


async def _run(
    names: list[str], store: Store, deployment: Deployment, settings: Settings, stop: asyncio.Event
) -> list[str]:
    available = roles()
    tasks = []
    for name in names:
        role_settings = _with_consumer(settings, consumer_name(name, settings))
        tasks.append(asyncio.create_task(available[name](store, deployment, role_settings, stop), name=name))
    # Readiness learns from these beats that this process serves every tenant's routing,
    # dispatch or timers (ops/health.py); a process that stops, or cannot reach a shard, stops them.
    beats = asyncio.create_task(
        health.heartbeat(store, deployment, names, consumer_name("+".join(names), settings), stop), name="heartbeat"
    )
    if settings.metrics_port:  # a port per process: web's too, beside its PORT shared by every web process
        from ops import metrics

        tasks.append(asyncio.create_task(metrics.serve(store, deployment, settings, stop), name="metrics"))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([*tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
    # A role that ended before anyone asked it to stopped working: that is a failure too.
    early = {task.get_name() for task in tasks if task.done() and not stop.is_set()}
    stop.set()
    await asyncio.gather(*tasks, stopping, beats, return_exceptions=True)
    failed = []
    for task in tasks:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            log.error("role %s failed, so the process stops: %r", task.get_name(), error, exc_info=error)
        elif task.get_name() in early:
            log.error("role %s ended before a stop was requested, so the process stops", task.get_name())
        else:
            continue
        failed.append(task.get_name())
    return failed


def _with_consumer(settings: Settings, name: str) -> Settings:
    import msgspec

    return msgspec.structs.replace(settings, consumer=name)
