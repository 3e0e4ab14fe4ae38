"""The dispatch worker: outbound messages to their channel's provider.

At most once: the attempt is recorded (begin_send) before the provider is
called; a message found mid-send after a crash is reconciled with the provider,
never blindly sent again. Temporary failures are retried with backoff from a
per-shard schedule; the final status is recorded and appended as an event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import msgspec

from channels import sandbox_senders
from channels import senders as default_senders
from channels.transport import OutcomeUnknown, PermanentFailure, Refused, Sender, TemporaryFailure
from router import bus, events
from router.config import Deployment, Settings
from router.customers import WITHHELD
from router.keys import DISPATCH_GROUP, Keys
from router.store import Store, text

log = logging.getLogger(__name__)

BACKOFF_S = (2, 10, 60, 300, 900)  # wait before attempt 2, 3, ...
# An attempt older than this is presumed dead and reconciled with the provider;
# every sender's own timeout must be shorter.
SEND_LEASE_MS = 120_000
MAX_ATTEMPTS = len(BACKOFF_S) + 1


class Dispatcher:
    def __init__(
        self,
        store: Store,
        senders: dict[str, Sender] | None = None,
        *,
        dead_letter: Callable[[bus.Entry, str], Awaitable[None]] | None = None,
        lease_ms: int = SEND_LEASE_MS,
    ) -> None:
        self.store = store
        self.senders = senders if senders is not None else sandbox_senders(store)
        self.dead_letter = dead_letter
        self.lease_ms = lease_ms

    async def handle(self, entries: list[bus.Entry]) -> set[str]:
        """Deliver a batch; each entry on its own, so one bad entry holds back no other."""
        done = set()
        for entry in entries:
            try:
                message = events.decode_outbound(entry.payload)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                if self.dead_letter is not None:
                    await self.dead_letter(entry, f"undecodable outbound message: {exc}")
                    done.add(entry.id)
                continue
            try:
                await self.deliver(message, entry.payload)
            except Exception:
                # Left pending: its lease lets a later pass reconcile and finish it.
                log.exception("delivering %s of %s failed", message.id, message.tenant)
                continue
            done.add(entry.id)
        return done

    async def deliver(self, message: events.OutboundMessage, payload: bytes) -> str:
        """Send a message unless it was already attempted; returns its status afterwards."""
        keys = Keys(message.tenant)
        status, attempt = await self.store.scripts.begin_send(
            keys=[keys.base], args=[message.id, payload, self.lease_ms]
        )
        status, attempt = text(status), int(attempt)
        if status == "go":
            return await self._attempt(message, attempt)
        if status == "stale":  # a dispatcher died (or hung past its lease) mid-send
            outcome, provider_id = await self.senders[message.channel].reconcile(message)
            if outcome == "sent":
                return await self._finish(message, "sent", attempt, provider_id=provider_id)
            if outcome == "not_sent":
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
            due_ms = int((time.time() + BACKOFF_S[attempt - 1]) * 1000)
            return await self._finish(message, "retry", attempt, error=str(exc), due_ms=due_ms)
        except OutcomeUnknown as exc:
            return await self._finish(message, "unknown", attempt, error=str(exc))
        except Refused as exc:
            return await self._finish(message, "refused", attempt, error=str(exc))
        except PermanentFailure as exc:
            return await self._finish(message, "failed", attempt, error=str(exc))
        return await self._finish(message, "sent", attempt, provider_id=provider_id)

    async def _finish(
        self,
        message: events.OutboundMessage,
        status: str,
        attempt: int,
        *,
        provider_id: str = "",
        error: str = "",
        due_ms: int = 0,
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
        )
        recorded = await self.store.scripts.finish_send(
            keys=[keys.base],
            args=[message.id, attempt, status, provider_id, error, due_ms, events.encode(event)],
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
        due = await self.store.redis.zrangebyscore(keys.retries, "-inf", int(time.time() * 1000), start=0, num=100)
        for message_id in due:
            payload = await self.store.redis.hget(keys.delivery(text(message_id)), "payload")
            if payload is None:
                await self.store.redis.zrem(keys.retries, message_id)
                continue
            try:
                await self.deliver(events.decode_outbound(payload), payload)
            except Exception:
                log.exception("retrying %s of %s failed", text(message_id), tenant)
        return len(due)


async def run(store: Store, deployment: Deployment, settings: Settings, stop: asyncio.Event) -> None:
    dispatcher = Dispatcher(store, default_senders(store, deployment, settings), lease_ms=settings.send_lease_ms)
    streams = [Keys(t.id).outbound for t in deployment.tenants]
    consumer = dispatcher_consumer = bus.Consumer(
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

    dispatcher.dead_letter = dispatcher_consumer.dead_letter

    async def retries() -> None:
        while not stop.is_set():
            for tenant in deployment.tenants:
                try:
                    await dispatcher.run_retries(tenant.id)
                except Exception:
                    log.exception("retrying messages of %s failed", tenant.id)
            await asyncio.sleep(1.0)

    log.info("dispatch worker %s reading %d outbound streams", settings.consumer, len(streams))
    try:
        await asyncio.gather(consumer.run(stop), retries())
    finally:
        for sender in dispatcher.senders.values():
            close = getattr(sender, "close", None)
            if close is not None:
                await close()
