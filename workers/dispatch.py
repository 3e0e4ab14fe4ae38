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

from channels import senders as default_senders
from channels.transport import PermanentFailure, Sender, TemporaryFailure
from router import bus, events
from router.config import Deployment, Settings
from router.keys import DISPATCH_GROUP, Keys
from router.store import Store

log = logging.getLogger(__name__)

BACKOFF_S = (2, 10, 60, 300, 900)  # wait before attempt 2, 3, ...
MAX_ATTEMPTS = len(BACKOFF_S) + 1


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Dispatcher:
    def __init__(self, store: Store, senders: dict[str, Sender] | None = None) -> None:
        self.store = store
        self.senders = senders if senders is not None else default_senders(store)

    async def handle(self, entries: list[bus.Entry]) -> set[str]:
        done = set()
        for entry in entries:
            message = events.decode_outbound(entry.payload)
            await self.deliver(message, entry.payload)
            done.add(entry.id)
        return done

    async def deliver(self, message: events.OutboundMessage, payload: bytes) -> str:
        """Send a message unless it was already attempted; returns its status afterwards."""
        keys = Keys(message.tenant)
        status, attempt = await self.store.scripts.begin_send(keys=[keys.base], args=[message.id, payload])
        status = _text(status)
        if status == "go":
            return await self._attempt(message, int(attempt))
        if status == "sending":  # a dispatcher died between recording and finishing the attempt
            outcome, provider_id = await self.senders[message.channel].reconcile(message)
            if outcome == "sent":
                return await self._record(message, "sent", int(attempt), provider_id=provider_id)
            if outcome == "not_sent":
                await self.store.redis.hset(keys.delivery(message.id), "status", "retry")
                return await self.deliver(message, payload)
            return await self._record(message, "unknown", int(attempt), error="provider outcome unknown; not resent")
        return status  # already sent, failed or refused: a redelivered entry has no second effect

    async def _attempt(self, message: events.OutboundMessage, attempt: int) -> str:
        sender = self.senders[message.channel]
        try:
            provider_id = await sender.send(message)
        except TemporaryFailure as exc:
            if attempt >= MAX_ATTEMPTS:
                return await self._record(message, "failed", attempt, error=f"gave up: {exc}")
            due = time.time() + BACKOFF_S[attempt - 1]
            keys = Keys(message.tenant)
            await self.store.redis.zadd(keys.retries, {message.id: int(due * 1000)})
            return await self._record(message, "retry", attempt, error=str(exc))
        except PermanentFailure as exc:
            return await self._record(message, "failed", attempt, error=str(exc))
        return await self._record(message, "sent", attempt, provider_id=provider_id)

    async def _record(
        self, message: events.OutboundMessage, status: str, attempt: int, *, provider_id: str = "", error: str = ""
    ) -> str:
        keys = Keys(message.tenant)
        fields = {"status": status, "error": error, "updated_at": str(events.now_ms())}
        if provider_id:
            fields["provider_id"] = provider_id
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
        async with self.store.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.delivery(message.id), mapping=fields)
            pipe.xadd(keys.events, {"e": events.encode(event)})
            await pipe.execute()
        if status in ("failed", "unknown"):
            log.warning("message %s of %s %s: %s", message.id, message.tenant, status, error)
        return status

    async def run_retries(self, tenant: str) -> int:
        """Attempt again the messages whose backoff has passed."""
        keys = Keys(tenant)
        due = await self.store.redis.zrangebyscore(keys.retries, "-inf", int(time.time() * 1000), start=0, num=100)
        for message_id in due:
            payload = await self.store.redis.hget(keys.delivery(_text(message_id)), "payload")
            if payload is None:
                await self.store.redis.zrem(keys.retries, message_id)
                continue
            await self.deliver(events.decode_outbound(payload), payload)
        return len(due)


async def run(store: Store, deployment: Deployment, settings: Settings, stop: asyncio.Event) -> None:
    dispatcher = Dispatcher(store)
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
    )

    async def retries() -> None:
        while not stop.is_set():
            for tenant in deployment.tenants:
                try:
                    await dispatcher.run_retries(tenant.id)
                except Exception:
                    log.exception("retrying messages of %s failed", tenant.id)
            await asyncio.sleep(1.0)

    log.info("dispatch worker %s reading %d outbound streams", settings.consumer, len(streams))
    await asyncio.gather(consumer.run(stop), retries())
