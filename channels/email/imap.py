"""Mail fetched from a tenant's mailbox at a provider (IMAP), taken in as if it had come by
SMTP to the tenant's address: through the same InboundHandler.take_in, so the same
parsing, limits, trust rules, fax claims and de-duplication apply.

The client is imapclient (IMAPClient), whose response parser handles what servers
actually send (literals, odd quoting, FETCH items in any order). It is blocking, so each
call runs in a worker thread; one mailbox is one connection used by one task at a time.

Each message becomes a contact exactly once, however the process dies:
1. The folder is searched for messages carrying neither ACCEPTED nor REFUSED (our
   keywords), and each is read with BODY.PEEK[] (which sets no flag).
2. A message already taken in under this UIDVALIDITY and UID (its marker, below) is
   not taken in again: only step 4 is done for it.
3. Otherwise it is taken in: on 250 it is on the inbound stream, and a repeat of this
   step (a crash before step 4) adds nothing, since ingest de-duplicates by Message-ID
   (or the content's hash) as it does an SMTP retry. A temporary refusal (4xx) leaves it
   unmarked for the next round; a permanent one (5xx: too big, unreadable) marks it
   REFUSED, kept in the folder for a person to look at.
4. The marker `seen:imap:<mailbox>:<uidvalidity>:<uid>` is set, then the message is
   flagged \\Seen and ACCEPTED in the mailbox and, with a done_folder, moved there.
A crash between fetching and marking therefore loses nothing (the message is still
unmarked) and duplicates nothing (ingest and the marker both say it is in).

One process fetches a mailbox at a time: it holds the mailbox's lease in the store
(lease.lua, renewed while it waits), and another `imap` process stands by until the
lease lapses, so two never race to mark the same messages.

Delivery reports fetched from a mailbox are not trusted to mark our messages (nor is a
fax gateway's mail taken as a fax): the server that handed the mail to the provider is
not one we can see, so the peer is no address of our own mail servers.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
import time
from email.parser import BytesHeaderParser
from email.utils import parseaddr

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from channels.email.inbound import InboundHandler
from router import atomic
from router.config import Tenant
from router.config.email import ImapMailbox
from router.keys import PROVIDER_ID_TTL_S, Keys
from router.store import STORE_ERRORS, Store

log = logging.getLogger(__name__)

ACCEPTED = b"ContactRouterAccepted"  # keywords (RFC 3501 flag atoms) we set on messages we took in
REFUSED = b"ContactRouterRefused"  # or refused for good
SEEN = b"\\Seen"
TIMEOUT_S = 30.0  # one command's answer
IDLE_RENEW_S = 25 * 60  # RFC 2177: re-issue IDLE before the server's 30-minute cut-off
POLL_S = 30.0  # how often a server without IDLE is asked
IDLE_CHECK_S = 1.0  # how long one wait for news lasts, so a stop is heard within a second
BACKOFF_S = (1, 2, 5, 10, 30, 60)  # reconnects after a failure, then every minute
LEASE_MS = 60_000  # the mailbox's lease: renewed every third of it; a dead process's lapses

Outcome = str  # "accepted" | "refused" | "retry"


def mailbox_id(mailbox: ImapMailbox) -> str:
    """A short stable name for the mailbox in marker keys (its host, user and folder)."""
    return hashlib.sha256(f"{mailbox.host}\0{mailbox.user}\0{mailbox.folder}".encode()).hexdigest()[:16]


def envelope_sender(raw: bytes) -> str:
    """The message's return path as its final server recorded it (Return-Path), else its
    From: "" for a null return path, which marks an automatic message as SMTP's does."""
    headers = BytesHeaderParser().parsebytes(raw[:65536])
    return_path = headers.get("Return-Path")
    if return_path is not None:
        return parseaddr(str(return_path))[1] or ""
    return parseaddr(str(headers.get("From", "")))[1]  # none: refused, no one to answer (550)


def tls_context(mailbox: ImapMailbox) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=mailbox.ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class MailboxFetcher:
    """One tenant's mailbox: `fetch_new` takes in what waits there, `run` keeps doing so,
    woken by IDLE, until stopped."""

    def __init__(
        self,
        store: Store,
        tenant: Tenant,
        handler: InboundHandler,
        *,
        max_bytes: int,
        mailbox: ImapMailbox,
        owner: str = "imap",
    ) -> None:
        self.store = store
        self.tenant = tenant
        self.mailbox = mailbox
        self.handler = handler
        self.max_bytes = max_bytes  # SMTP_MAX_BYTES: a bigger message is refused, as by SMTP (552)
        self.address = tenant.email.imap_address()
        self.peer = f"imap:{mailbox.host}"  # no IP address: never one of our own mail servers
        self.keys = Keys(tenant.id)
        self.owner = owner  # this process's name, on the mailbox's lease
        self.lease_key = self.keys.imap_fetcher(mailbox_id(mailbox))
        self.name = f"{mailbox.user}@{mailbox.host}/{mailbox.folder}"  # for logs: never the password
        self.client: IMAPClient | None = None
        self.uidvalidity = 0
        self.can_idle = False
        self.can_move = False

    # -- connection -------------------------------------------------------------

    async def connect(self) -> None:
        self.client, self.uidvalidity, self.can_idle, self.can_move = await asyncio.to_thread(self._connect)
        log.info("imap %s connected (UIDVALIDITY %d, IDLE %s)", self.name, self.uidvalidity, self.can_idle)

    def _connect(self) -> tuple[IMAPClient, int, bool, bool]:
        mailbox = self.mailbox
        context = tls_context(mailbox) if mailbox.tls != "none" else None
        client = IMAPClient(
            mailbox.host, port=mailbox.server_port, ssl=mailbox.tls == "tls", ssl_context=context, timeout=TIMEOUT_S
        )
        try:
            if mailbox.tls == "starttls":
                client.starttls(context)  # refused or failed: we never log in in the clear
            client.login(mailbox.user, mailbox.password)
            selected = client.select_folder(mailbox.folder)
            if b"\\*" not in selected.get(b"PERMANENTFLAGS", ()) and not mailbox.done_folder:
                # our keywords will not stick: every pass would read the folder's mail again
                # (de-duplication keeps it from becoming contacts twice, at the cost of reading it)
                log.warning("imap %s keeps no keywords of ours: set done_folder", self.name)
            if mailbox.done_folder and not client.folder_exists(mailbox.done_folder):
                client.create_folder(mailbox.done_folder)
            capabilities = client.capabilities()
        except BaseException:
            _close(client)
            raise
        return client, int(selected[b"UIDVALIDITY"]), b"IDLE" in capabilities, b"MOVE" in capabilities

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await asyncio.to_thread(_close, client)

    # -- one pass -----------------------------------------------------------------

    async def fetch_new(self) -> dict[str, int]:
        """Take in every message of the folder not yet marked; returns how many ended each way."""
        if self.client is None:
            await self.connect()
        counts = {"accepted": 0, "refused": 0, "retry": 0}
        uids = await asyncio.to_thread(self._unmarked)
        for uid in uids:
            outcome = await self._take(uid)
            counts[outcome] += 1
        if uids:
            log.info("imap %s: %s", self.name, ", ".join(f"{n} {k}" for k, n in counts.items() if n))
        return counts

    def _unmarked(self) -> list[int]:
        assert self.client is not None
        return sorted(self.client.search(["NOT", "DELETED", "UNKEYWORD", ACCEPTED, "UNKEYWORD", REFUSED]))

    async def _take(self, uid: int) -> Outcome:
        marker = self.keys.seen("imap", f"{mailbox_id(self.mailbox)}:{self.uidvalidity}:{uid}")
        done = await self.store.redis.get(marker)
        if done is not None:  # taken in before a crash stopped the marking: mark only
            outcome = done.decode()
        else:
            outcome = await self._hand_over(uid)
            if outcome == "retry":
                return outcome
            await self.store.redis.set(marker, outcome, ex=PROVIDER_ID_TTL_S)
        await asyncio.to_thread(self._mark, uid, outcome)
        return outcome

    async def _hand_over(self, uid: int) -> Outcome:
        size, raw = await asyncio.to_thread(self._read, uid)
        if raw is None:
            if size is None:  # expunged meanwhile by someone else: nothing to take in
                return "retry"
            log.warning("imap %s: message %d refused: %d bytes is over SMTP_MAX_BYTES", self.name, uid, size)
            return "refused"
        reply = await self.handler.take_in(raw, envelope_sender(raw), [self.address], self.peer)
        if reply.startswith("2"):
            return "accepted"
        if reply.startswith("5"):
            log.warning("imap %s: message %d refused for good: %s", self.name, uid, reply)
            return "refused"
        log.warning("imap %s: message %d not taken in (%s); tried again next round", self.name, uid, reply)
        return "retry"

    def _read(self, uid: int) -> tuple[int | None, bytes | None]:
        """(its size, the message) without setting \\Seen; (size, None) when too big to read."""
        assert self.client is not None
        sizes = self.client.fetch([uid], [b"RFC822.SIZE"])
        if uid not in sizes:
            return None, None
        size = int(sizes[uid][b"RFC822.SIZE"])
        if size > self.max_bytes:
            return size, None
        body = self.client.fetch([uid], [b"BODY.PEEK[]"]).get(uid, {}).get(b"BODY[]")
        return (size, bytes(body)) if body is not None else (None, None)

    def _mark(self, uid: int, outcome: Outcome) -> None:
        """Flag the message and, once accepted, move it to the done folder."""
        assert self.client is not None
        if outcome == "refused":
            self.client.add_flags([uid], [REFUSED])
            return
        self.client.add_flags([uid], [SEEN, ACCEPTED])
        if self.mailbox.done_folder:
            if self.can_move:
                self.client.move([uid], self.mailbox.done_folder)
            else:  # RFC 6851's fallback: copy, then delete the original
                self.client.copy([uid], self.mailbox.done_folder)
                self.client.delete_messages([uid])
                if b"UIDPLUS" in self.client.capabilities():
                    self.client.uid_expunge([uid])
                else:
                    self.client.expunge()

    # -- until stopped --------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Take in mail until `stop`: a pass, then wait for news (IDLE, or a poll without
        it), again; a lost connection or a refused login is retried with backoff."""
        failures = 0
        while not stop.is_set():
            try:
                if not await self.hold_lease():
                    await self.close()  # another process fetches the mailbox; stand by
                    await _stopped(stop, LEASE_MS / 4000)
                    continue
                await self.fetch_new()
                failures = 0
                await self._wait(stop)
            except STORE_ERRORS as exc:
                log.warning("imap %s: the store is away (%s); trying again", self.name, type(exc).__name__)
                failures += 1
            except LoginError:
                # the password may be rotated meanwhile; never logged
                log.error("imap %s: login refused (check the user and %s)", self.name, self.mailbox.password_env)
                failures += 1
            except (IMAPClientError, OSError, ssl.SSLError, TimeoutError) as exc:
                log.warning("imap %s: %s: %s; reconnecting", self.name, type(exc).__name__, exc)
                failures += 1
            except Exception:  # a bug of ours or the store's outage: keep the mailbox served
                log.exception("imap %s: pass failed; trying again", self.name)
                failures += 1
            if failures:
                await self.close()
                await _stopped(stop, BACKOFF_S[min(failures, len(BACKOFF_S)) - 1])
        await self.close()
        await self.release_lease()

    async def hold_lease(self) -> bool:
        """Take the mailbox's lease, or renew it when we hold it (atomic: lease.lua)."""
        return await atomic.lease(self.store, key=self.lease_key, owner=self.owner, lease_ms=LEASE_MS)

    async def release_lease(self) -> None:
        """Hand the mailbox over at once to a process standing by (else it lapses)."""
        try:
            if await self.store.redis.get(self.lease_key) == self.owner.encode():
                await self.store.redis.delete(self.lease_key)
        except STORE_ERRORS:
            pass

    async def _wait(self, stop: asyncio.Event) -> None:
        """Until the server says the folder changed (IDLE), POLL_S passed (no IDLE), or stop."""
        if not self.can_idle:
            await _stopped(stop, POLL_S)  # below LEASE_MS: the next pass renews the lease in time
            return
        assert self.client is not None
        await asyncio.to_thread(self.client.idle)
        began = renewed = time.monotonic()
        try:
            while not stop.is_set() and time.monotonic() - began < IDLE_RENEW_S:
                if await asyncio.to_thread(self.client.idle_check, IDLE_CHECK_S):
                    break  # EXISTS, EXPUNGE, FETCH: something changed; look
                if time.monotonic() - renewed > LEASE_MS / 3000:
                    if not await self.hold_lease():
                        break  # another process took the mailbox over: the next turn stands by
                    renewed = time.monotonic()
        finally:
            await asyncio.to_thread(self.client.idle_done)


async def _stopped(stop: asyncio.Event, seconds: float) -> None:
    """Wait `seconds`, or less when stopped meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


def _close(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:  # a connection already gone has nothing to log out of
        try:
            client.shutdown()
        except Exception:
            pass
