"""The `telegram` process: long polling (getUpdates) for the tenants whose bot runs in
polling mode, for deployments Telegram cannot reach with a webhook.

Telegram forgets an update once getUpdates is called with an offset past it, so
the offset moves past an update only after its effect is stored: a store failure
stops the batch there, and the next poll asks again from that update. Updates
already stored before a crash come again after a restart (the offset is not kept)
and are dropped by the update_id set. Telegram serves one getUpdates per bot at a
time, so one process polls a bot, holding a lease in the store; another `telegram`
process takes over when it lapses.
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError
from telegram import Bot
from telegram.error import InvalidToken, TelegramError

from channels.telegram import inbound
from channels.telegram.bots import TelegramBots, bot_id, config_of, redact
from router import atomic, logcontext
from router.attachments import AttachmentStore
from router.config import Deployment, Tenant
from router.keys import Keys
from router.settings import Settings
from router.stopping import stopped
from router.store import STORE_ERRORS, Store, StoreOutage

log = logging.getLogger(__name__)

POLL_TIMEOUT_S = 25  # how long Telegram holds a getUpdates open when there is nothing new
LEASE_MS = 60_000  # renewed before every poll: longer than one poll, short enough to fail over
BACKOFF_S = (1, 2, 5, 10, 30)
ALLOWED_UPDATES = ["message", "my_chat_member", "callback_query"]  # what inbound acts on; Telegram filters the rest
_STORE_ERRORS = (RedisError, OSError)


class Poller:
    """Long polling of one tenant's bot."""

    def __init__(
        self,
        store: Store,
        tenant: Tenant,
        bot: Bot,
        files: AttachmentStore,
        owner: str,
        *,
        poll_timeout_s: int = POLL_TIMEOUT_S,
        backoff_s: tuple[float, ...] = BACKOFF_S,
    ) -> None:
        self.store = store
        self.tenant = tenant
        self.bot = bot
        self.files = files
        self.owner = owner or "telegram"
        self.poll_timeout_s = poll_timeout_s
        self.backoff_s = backoff_s
        self.offset: int | None = None  # the next update_id to ask for; None: every unconfirmed one
        self.lease_key = Keys(tenant.id).telegram_poller(bot_id(config_of(tenant).token))

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        prepared = False
        outage = StoreOutage(f"Telegram polling for {self.tenant.id}")
        while not stop.is_set():
            try:
                if not await self.hold_lease():
                    outage.recovered()
                    await stopped(stop, LEASE_MS / 4000)
                    continue
                outage.recovered()
                if not prepared:
                    # getUpdates answers 409 while a webhook is set; the pending updates stay.
                    await self.bot.delete_webhook(drop_pending_updates=False)
                    prepared = True
                await self.poll_once(stop)
                failures = 0
            except asyncio.CancelledError:
                raise
            except STORE_ERRORS as exc:  # the store is away: one warning, not one per attempt
                await stopped(stop, outage.failed(exc))
            except InvalidToken as exc:
                log.error("Telegram refused the bot token of %s: %s", self.tenant.id, redact(str(exc), self.tenant))
                await stopped(stop, self.backoff_s[-1])
            except (TelegramError, *_STORE_ERRORS) as exc:
                failures += 1
                wait = self.backoff_s[min(failures, len(self.backoff_s)) - 1]
                detail = redact(f"{type(exc).__name__}: {exc}", self.tenant)
                log.warning("Telegram polling for %s failed (%s); again in %g s", self.tenant.id, detail, wait)
                await stopped(stop, wait)
        await self.release_lease()

    async def hold_lease(self) -> bool:
        """Take the poller lease, or renew it when we hold it (lease.lua: atomic, so two
        processes never both believe they hold it)."""
        return await atomic.lease(self.store, key=self.lease_key, owner=self.owner, lease_ms=LEASE_MS)

    async def release_lease(self) -> None:
        try:
            if await self.store.redis.get(self.lease_key) == self.owner.encode():
                await self.store.redis.delete(self.lease_key)
        except _STORE_ERRORS:
            pass  # it lapses on its own

    async def poll_once(self, stop: asyncio.Event | None = None) -> int:
        """One getUpdates and the effect of what it brought; returns how many updates came.
        A store failure propagates with the offset still at the update that failed."""
        poll = asyncio.ensure_future(
            self.bot.get_updates(offset=self.offset, timeout=self.poll_timeout_s, allowed_updates=ALLOWED_UPDATES)
        )
        if stop is not None:
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({poll, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not poll.done():
                poll.cancel()
                return 0
        updates = await poll
        for update in updates:
            # a batch with files to download can outlast the lease: renewed before each
            # update, so another process that took the bot over never works beside this one
            if not await self.hold_lease():
                log.warning("Telegram polling lease for %s lost mid-batch; left to its holder", self.tenant.id)
                break
            with logcontext.about(tenant=self.tenant.id):  # the update's contact is bound once taken in
                try:
                    outcome = await inbound.receive(self.store, self.tenant, self.bot, self.files, update)
                except inbound.MalformedUpdate as exc:
                    log.error("Telegram update %d for %s skipped: %s", update.update_id, self.tenant.id, exc)
                else:
                    log.debug("Telegram update %d for %s: %s", update.update_id, self.tenant.id, outcome)
            self.offset = update.update_id + 1
        return len(updates)


def polling_tenants(deployment: Deployment) -> list[Tenant]:
    return [
        t for t in deployment.tenants if t.telegram is not None and t.telegram.token and t.telegram.mode == "polling"
    ]


async def run(store: Store, deployment: Deployment, settings: Settings, stop: asyncio.Event) -> None:
    """The `telegram` process role."""
    tenants = polling_tenants(deployment)
    if not tenants:
        log.info("telegram process started; no tenant's bot is in polling mode, so it waits")
        await stop.wait()
        return
    bots = TelegramBots(settings)
    files = AttachmentStore(settings.attachment_dir, settings.attachment_max_bytes)
    pollers = [Poller(store, tenant, bots.bot(tenant), files, settings.consumer) for tenant in tenants]
    log.info("telegram polling for %s", ", ".join(t.id for t in tenants))
    try:
        await asyncio.gather(*(poller.run(stop) for poller in pollers))
    finally:
        await bots.close()
