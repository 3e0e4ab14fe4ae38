"""The dispatch worker: outbound messages to their channel's provider.

At most once: the attempt is recorded (begin_send) before the provider is
called; a message found mid-send after a crash is reconciled with the provider,
never blindly sent again. A campaign message's lease also judges every rule of its
campaign again, in the same step (workers/campaigns/gate.py). Temporary failures
are retried with backoff from a per-shard schedule; the final status is recorded
and appended as an event.

A read batch is delivered concurrently (at most `concurrency` sends at once per
process), but the messages of one conversation, or to one recipient, go one
after the other in stream order. The lease and outcome scripts of concurrent
sends travel together: calls made while a pipeline is on its way leave in the
next one, so a batch costs a few round trips instead of several per message.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import traceback
from collections.abc import Awaitable, Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from channels import sandbox_senders
from channels import senders as default_senders
from channels.transport import OutcomeUnknown, PermanentFailure, Refused, Sender, TemporaryFailure
from router import atomic, bus, events, logcontext, scripts
from router.config import Deployment
from router.customers import WITHHELD
from router.errors import UnknownTenant
from router.keys import DISPATCH_GROUP, Keys
from router.settings import Settings
from router.stopping import stopped
from router.store import STORE_ERRORS, Store, StoreOutage, text
from workers.campaigns.gate import SendGate, is_campaign_message

Ref = TypeVar("Ref", bound=Hashable)  # what a caller of _deliver_all gets back for a settled item

log = logging.getLogger(__name__)

BACKOFF_S = (2, 10, 60, 300, 900)  # wait before attempt 2, 3, ...
# An attempt older than this is presumed dead and reconciled with the provider;
# every sender's own timeout must be shorter.
SEND_LEASE_MS = 120_000
MAX_ATTEMPTS = len(BACKOFF_S) + 1  # for temporary failures
# Attempts that ended in an error outside the transport contract (a bug, a library's
# own exception) or in a dead dispatcher; Settings.max_deliveries in the worker.
MAX_DELIVERIES = 5
RETRY_POLL_S = 1.0  # how often the retry schedule is looked at
CONCURRENCY = 16  # sends in flight at once per process (Settings.dispatch_concurrency)

ERROR_CHARS = 160  # of an unexpected exception's text kept in the record, the event and the log
# Provider libraries put request URLs (Telegram: the bot token is in the path) and
# credentials into their exception texts; none of it may reach the record or the log.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S*")
_SECRET = re.compile(
    r"(?i)\b(\w*(?:token|secret|password|passwd|key|auth\w*|signature))(\s*[=:]\s*)(?:(?:basic|bearer)\s+)?\S+"
)
_LONG_WORD = re.compile(r"[A-Za-z0-9_:+/=-]{32,}")  # API keys, tokens, base64 credentials


def describe(exc: BaseException) -> str:
    """An exception as `Class: first line of its text`, short, without URLs or secrets."""
    lines = str(exc).strip().splitlines()
    words = _LONG_WORD.sub("<redacted>", _SECRET.sub(r"\1\2<redacted>", _URL.sub("<url>", lines[0] if lines else "")))
    if len(words) > ERROR_CHARS:
        words = words[: ERROR_CHARS - 3] + "..."
    return f"{type(exc).__name__}: {words}" if words else type(exc).__name__


def _where(exc: BaseException) -> str:
    """The innermost frames of a traceback (file:line function): enough to find a bug,
    without the exception texts a formatted traceback would repeat."""
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    return " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames))


class _Pipeliner:
    """Script calls made while a pipeline is on its way wait and leave together in the
    next one (router.scripts.run_pipelined): concurrent sends share round trips, yet
    each message still takes its lease right before its own send."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self._queue: list[tuple[Any, str, list, asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None

    async def call(self, call: scripts.Call) -> Any:
        future = asyncio.get_running_loop().create_future()
        self._queue.append((*call, future))
        if self._flusher is None:
            # Started after the tasks already scheduled, so their calls of this moment go along.
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        calls: list[tuple[Any, str, list, asyncio.Future]] = []
        try:
            while self._queue:
                calls, self._queue = self._queue, []
                try:
                    results = await scripts.run_pipelined(
                        self.redis, [scripts.Call(s, base, args) for s, base, args, _ in calls]
                    )
                except Exception as exc:  # the pipeline as a whole failed (connection lost): every caller hears it
                    results = [exc] * len(calls)
                for (*_call, future), result in zip(calls, results, strict=True):
                    if future.done():  # its caller was cancelled
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
                calls = []
        finally:
            self._flusher = None
            for *_call, future in calls + self._queue:  # cancelled mid-flight: nobody waits for ever
                future.cancel()
            self._queue = []


class Dispatcher:
    def __init__(
        self,
        store: Store,
        senders: dict[str, Sender] | None = None,
        *,
        dead_letter: Callable[[bus.Entry, str], Awaitable[None]] | None = None,
        lease_ms: int = SEND_LEASE_MS,
        concurrency: int = CONCURRENCY,
        max_deliveries: int = MAX_DELIVERIES,
        deployment: Deployment | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"dispatch concurrency must be at least 1, not {concurrency}")
        if max_deliveries < 1:
            raise ValueError(f"max deliveries must be at least 1, not {max_deliveries}")
        self.store = store
        self.senders = senders if senders is not None else sandbox_senders(store)
        self.dead_letter = dead_letter
        self.lease_ms = lease_ms
        self.max_deliveries = max_deliveries
        self._gate = asyncio.Semaphore(concurrency)  # for the process: batches and retry passes together
        self._scripts = _Pipeliner(store.redis)
        # A campaign message's lease judges its campaign's every rule again, in the same step.
        self.campaign_gate = SendGate(store, deployment)

    async def handle(self, entries: list[bus.Entry]) -> set[bus.Entry]:
        """Deliver a batch; each entry on its own, so one bad entry holds back no other.
        Returns the entries whose outcome is stored (the consumer acknowledges only those)."""
        done: set[bus.Entry] = set()
        work: list[tuple[events.OutboundMessage, bytes, bus.Entry]] = []
        for entry in entries:
            try:
                message = events.decode_outbound(entry.payload)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                if self.dead_letter is not None:
                    await self.dead_letter(entry, f"undecodable outbound message: {exc}")
                    done.add(entry)
                continue
            work.append((message, entry.payload, entry))
        done.update(await self._deliver_all(work))
        return done

    async def _deliver_all(self, work: list[tuple[events.OutboundMessage, bytes, Ref]]) -> set[Ref]:
        """Deliver (message, payload, ref) items: sequences side by side, each in its order;
        returns the refs (the caller's: stream entries, message ids) that were settled."""
        done: set[Ref] = set()

        async def in_order(sequence: list[tuple[events.OutboundMessage, bytes, Ref]]) -> None:
            for message, payload, ref in sequence:
                with logcontext.about(tenant=message.tenant, conversation=message.conversation):
                    try:
                        async with self._gate:
                            await self.deliver(message, payload)
                    except Exception:
                        # Left pending: its lease lets a later pass reconcile and finish it.
                        log.exception("delivering %s of %s failed", message.id, message.tenant)
                        continue
                done.add(ref)

        if not work:
            return done
        tasks = [
            asyncio.create_task(in_order([work[i] for i in indexes]))
            for indexes in sequences([message for message, _payload, _ref in work])
        ]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            # Only a dying process gets here (a kill, a cancellation): the other sends are
            # cancelled too and stay leased, to be reconciled. The original error goes on,
            # not wrapped in a group as a TaskGroup would.
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
            raise
        return done

    async def deliver(self, message: events.OutboundMessage, payload: bytes) -> str:
        """Send a message unless it was already attempted; returns its status afterwards."""
        if is_campaign_message(message):  # the lease, or the refusal (held or refused) the rules call for now
            lease = await self.campaign_gate.lease_call(message, payload, self.lease_ms)
        else:
            lease = atomic.begin_send_call(
                self.store, message.tenant, message_id=message.id, payload=payload, lease_ms=self.lease_ms
            )
        status, attempt, *why = await self._scripts.call(lease)
        status, attempt = text(status), int(attempt)
        if why:
            log.info("campaign message %s of %s %s at send: %s", message.id, message.tenant, status, text(why[0]))
        if status == "go":
            return await self._attempt(message, attempt)
        if status == "stale":  # a dispatcher died (or hung past its lease) mid-send
            outcome, provider_id = await self.senders[message.channel].reconcile(message)
            if outcome == "sent":
                return await self._finish(message, "sent", attempt, provider_id=provider_id)
            if outcome == "not_sent":
                if attempt >= self.max_deliveries:  # a message that kills its dispatcher must not do so for ever
                    error = f"gave up after {attempt} attempts: the dispatcher died mid-send"
                    return await self._finish(message, "failed", attempt, error=error)
                await self._finish(message, "retry", attempt, error="dispatcher died before sending", due_ms=0)
                return await self.deliver(message, payload)
            return await self._finish(message, "unknown", attempt, error="provider outcome unknown; not resent")
        # in flight elsewhere, scheduled for later, or already final: nothing to do now
        return status

    async def _attempt(self, message: events.OutboundMessage, attempt: int) -> str:
        if message.to.startswith(WITHHELD):  # a caller who withheld their number: nothing reaches them
            return await self._finish(message, "refused", attempt, error="the customer withheld their number")
        sender = self.senders[message.channel]
        try:
            provider_id = await sender.send(message)
        except TemporaryFailure as exc:
            if attempt >= MAX_ATTEMPTS:
                return await self._finish(message, "failed", attempt, error=f"gave up after {attempt} attempts: {exc}")
            return await self._finish(message, "retry", attempt, error=str(exc), due_ms=_due_ms(attempt))
        except OutcomeUnknown as exc:
            return await self._finish(message, "unknown", attempt, error=str(exc))
        except Refused as exc:
            return await self._finish(message, "refused", attempt, error=str(exc))
        except PermanentFailure as exc:
            return await self._finish(message, "failed", attempt, error=str(exc), permanent=True)
        except UnknownTenant as exc:  # a tenant since removed from the deployment: never sendable
            error = f"unknown tenant {exc.tenant_id!r}"
            return await self._finish(message, "failed", attempt, error=error, permanent=True)
        except Exception as exc:
            failure = exc
        else:
            return await self._finish(message, "sent", attempt, provider_id=provider_id)
        # Handled outside the except clause: an error while recording it must not carry
        # the sender's exception (and its text) along as its context into a traceback.
        return await self._unexpected(message, attempt, failure)

    async def _unexpected(self, message: events.OutboundMessage, attempt: int, exc: Exception) -> str:
        """A sender broke its contract (a bug, a library's own exception). Whether the
        provider got the message is then unknown, so its own record decides, as after a
        crash; a message not sent is tried again with backoff, up to max_deliveries."""
        error = describe(exc)
        log.warning(
            "message %s of %s: attempt %d ended in %s (at %s)", message.id, message.tenant, attempt, error, _where(exc)
        )
        outcome, provider_id = await self.senders[message.channel].reconcile(message)
        if outcome == "sent":
            return await self._finish(message, "sent", attempt, provider_id=provider_id)
        if outcome == "unknown":
            return await self._finish(message, "unknown", attempt, error=f"{error}; provider outcome unknown")
        if attempt >= self.max_deliveries:
            return await self._finish(message, "failed", attempt, error=f"gave up after {attempt} attempts: {error}")
        return await self._finish(message, "retry", attempt, error=error, due_ms=_due_ms(attempt))

    async def _finish(
        self,
        message: events.OutboundMessage,
        status: str,
        attempt: int,
        *,
        provider_id: str = "",
        error: str = "",
        due_ms: int = 0,
        permanent: bool = False,
    ) -> str:
        """Record this attempt's outcome, unless another pass already settled it."""
        keys = Keys(message.tenant)
        event = events.DeliveryStatus(
            tenant=message.tenant,
            occurred_at=events.now_ms(),
            channel=message.channel,
            direction="out",
            provider_id=provider_id,
            conversation=message.conversation,
            message=message.id,
            status=status,
            error=error,
            attempt=attempt,
            permanent=permanent,
        )
        recorded = await self._scripts.call(
            atomic.finish_send_call(
                self.store,
                message.tenant,
                message_id=message.id,
                attempt=attempt,
                status=status,
                provider_id=provider_id,
                error=error,
                retry_at_ms=due_ms,
                event=events.encode(event),
            )
        )
        if not int(recorded):
            current = await self.store.redis.hget(keys.delivery(message.id), "status")
            return text(current or b"")
        if status in ("failed", "unknown"):
            log.warning("message %s of %s %s: %s", message.id, message.tenant, status, error)
        return status

    async def run_retries(self, tenant: str) -> int:
        """Attempt again the messages whose backoff has passed, and reconcile stale sends."""
        keys = Keys(tenant)
        due = [
            text(message_id)
            for message_id in await self.store.redis.zrangebyscore(
                keys.retries, "-inf", int(time.time() * 1000), start=0, num=100
            )
        ]
        if not due:
            return 0
        async with self.store.redis.pipeline(transaction=False) as pipe:
            for message_id in due:
                pipe.hget(keys.delivery(message_id), "payload")
            payloads = await pipe.execute()
        work = []
        for message_id, payload in zip(due, payloads, strict=True):
            if payload is None:
                await self.store.redis.zrem(keys.retries, message_id)
                continue
            try:
                work.append((events.decode_outbound(payload), payload, message_id))
            except (msgspec.ValidationError, msgspec.DecodeError):
                log.exception("retrying %s of %s: its stored payload is unreadable", message_id, tenant)
        await self._deliver_all(work)
        return len(due)


async def retry_loop(dispatcher: Dispatcher, deployment: Deployment, stop: asyncio.Event) -> None:
    """Every second, the due retries of every tenant; an unreachable store is waited out
    with one warning and a capped backoff, not a traceback per tenant per second."""
    outage = StoreOutage("dispatch retries")
    while not stop.is_set():
        wait = RETRY_POLL_S
        for tenant in deployment.tenants:
            try:
                await dispatcher.run_retries(tenant.id)
            except STORE_ERRORS as exc:
                wait = outage.failed(exc)
                break
            except Exception:
                log.exception("retrying messages of %s failed", tenant.id)
        else:
            outage.recovered()
        await stopped(stop, wait)


def _due_ms(attempt: int) -> int:
    return int((time.time() + BACKOFF_S[min(attempt, len(BACKOFF_S)) - 1]) * 1000)


def sequences(messages: list[events.OutboundMessage]) -> list[list[int]]:
    """The indexes of messages, split into sequences that may go out side by side:
    messages of one conversation, or to one recipient, share a sequence, in their order."""
    root = list(range(len(messages)))

    def find(i: int) -> int:
        while root[i] != i:
            root[i] = root[root[i]]
            i = root[i]
        return i

    first: dict[tuple[str, ...], int] = {}  # a conversation or a recipient: its first message
    for i, message in enumerate(messages):
        for key in _order_keys(message):
            if key not in first:
                first[key] = i
                continue
            a, b = find(first[key]), find(i)
            root[max(a, b)] = min(a, b)
    found: dict[int, list[int]] = {}
    for i in range(len(messages)):
        found.setdefault(find(i), []).append(i)
    return list(found.values())


def _order_keys(message: events.OutboundMessage) -> list[tuple[str, ...]]:
    recipient = ("to", message.tenant, message.channel, message.to)
    return [("conversation", message.tenant, message.conversation), recipient] if message.conversation else [recipient]


async def run(store: Store, deployment: Deployment, settings: Settings, stop: asyncio.Event) -> None:
    dispatcher = Dispatcher(
        store,
        default_senders(store, deployment, settings),
        lease_ms=settings.send_lease_ms,
        concurrency=settings.dispatch_concurrency,
        max_deliveries=settings.max_deliveries,
        deployment=deployment,
    )
    streams = [Keys(t.id).outbound for t in deployment.tenants]
    consumer = bus.Consumer(
        store,
        DISPATCH_GROUP,
        settings.consumer,
        streams,
        dispatcher.handle,
        batch=settings.batch,
        block_ms=settings.block_ms,
        claim_idle_ms=settings.claim_idle_ms,
        max_deliveries=settings.max_deliveries,
        defer_acks=True,
    )
    dispatcher.dead_letter = consumer.dead_letter

    log.info(
        "dispatch worker %s reading %d outbound streams, %d sends at once",
        settings.consumer,
        len(streams),
        settings.dispatch_concurrency,
    )
    try:
        await asyncio.gather(consumer.run(stop), retry_loop(dispatcher, deployment, stop))
    finally:
        for sender in dispatcher.senders.values():
            await sender.close()
