"""The `imap` process: fetches each tenant's mailbox at a provider ([tenants.email.imap])
and takes its mail in through the same handler as the `smtp` process (workers.smtp), one
task per mailbox, woken by IDLE (channels.email.imap). One process fetches a mailbox
at a time (its lease): a second `imap` process stands by and takes over when the first
stops or dies.
"""

from __future__ import annotations

import asyncio
import logging

from channels.email.imap import MailboxFetcher
from router.config import Deployment
from router.settings import Settings
from router.store import Store
from workers import smtp

log = logging.getLogger(__name__)


def fetchers(store: Store, deployment: Deployment, settings: Settings) -> list[MailboxFetcher]:
    """One fetcher for each tenant's mailbox."""
    handler = smtp.inbound_handler(store, deployment, settings)
    return [
        MailboxFetcher(
            store,
            tenant,
            handler,
            max_bytes=settings.smtp_max_bytes,
            mailbox=tenant.email.imap,
            owner=settings.consumer or "imap",
        )
        for tenant in deployment.tenants
        if tenant.email.imap is not None
    ]


async def run(store: Store, deployment: Deployment, settings: Settings, stop: asyncio.Event) -> None:
    mailboxes = fetchers(store, deployment, settings)
    if not mailboxes:
        log.info("imap: no tenant has a mailbox to fetch ([tenants.email.imap]); idle until stopped")
        await stop.wait()
        return
    for fetcher in mailboxes:
        log.info("imap: fetching %s for %s", fetcher.name, fetcher.tenant.id)
    attachments = mailboxes[0].handler.attachments
    tasks = [asyncio.create_task(fetcher.run(stop)) for fetcher in mailboxes]
    tasks.append(asyncio.create_task(smtp.sweep_attachments(attachments, stop)))
    await asyncio.gather(*tasks)
