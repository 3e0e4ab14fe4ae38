"""The `smtp` process: an aiosmtpd server on SMTP_HOST:SMTP_PORT until stop, offering
STARTTLS when SMTP_TLS_CERT and SMTP_TLS_KEY name a certificate. It decides which
channel a mail is for: the fax channel claims its gateways' mail first, then a campaign
email's mailto: unsubscribe is honoured (workers/campaigns/unsubscribe.py), and email
takes the rest, so no channel knows another's.

The server runs on this process's event loop (not aiosmtpd's Controller, which
starts its own thread and loop) so the handler shares the store's connection.

Lines of mail that end in a bare LF (Python's `sendmail(..., msg.as_bytes())`, many
scripts and appliances) are taken as lines ending in CRLF, as Postfix does
(`smtpd_forbid_bare_newline = normalize`); the mail still ends only at CRLF.CRLF.
A line longer than RFC 5321's 998 octets is refused, after the whole message was
read, with "500 Line too long" (its section 4.5.3.1.10), and more mail than
SMTP_MAX_BYTES with 552: both by aiosmtpd.
"""

from __future__ import annotations

import asyncio
import logging
import ssl

from aiosmtpd.smtp import SMTP

from channels.email import mime
from channels.email.inbound import Addressed, InboundHandler
from channels.email.trust import MailTrust
from channels.fax import inbound as fax_inbound
from ops import metrics
from router import logcontext
from router.attachments import AttachmentStore
from router.config import Deployment
from router.errors import ConfigError
from router.settings import Settings
from router.store import Store
from workers.campaigns import unsubscribe

log = logging.getLogger(__name__)

SWEEP_EVERY_S = 3600.0


def inbound_handler(store: Store, deployment: Deployment, settings: Settings) -> InboundHandler:
    """What takes in a mail, however it came (SMTP here, a mailbox in workers.imap): the fax
    channel's claim first, then a campaign's mailto: unsubscribe, then email."""
    attachments = AttachmentStore(settings.attachment_dir, settings.attachment_max_bytes)
    trust = MailTrust.from_settings(settings)

    async def fax(
        tenants: Addressed, mail: mime.Mail, sender: str, provider_id: str, peer: object
    ) -> tuple[str | None, Addressed]:
        # mail from a tenant's fax gateway is a received fax, or a report on one we sent
        return await fax_inbound.receive(store, attachments, tenants, mail, sender, provider_id, trust, peer)

    async def unsubscribing(
        tenants: Addressed, mail: mime.Mail, sender: str, provider_id: str, peer: object
    ) -> tuple[str | None, Addressed]:
        # mail to a campaign email's mailto: List-Unsubscribe (a signed token in its subject)
        return await unsubscribe.by_mail(store, tenants, mail.subject, provider_id)

    return InboundHandler(store, deployment, attachments, trust, claims=[fax, unsubscribing])


async def start(store: Store, deployment: Deployment, settings: Settings) -> asyncio.Server:
    """Listen for mail; returns the server (close it to stop)."""
    handler = inbound_handler(store, deployment, settings)
    attachments = handler.attachments
    tls = tls_context(settings)

    def protocol() -> SMTP:
        # SIZE is advertised in EHLO; MAIL FROM with a bigger SIZE, or more DATA
        # than this, is refused with 552 before the handler sees it.
        return _Server(
            handler,
            hostname=settings.smtp_hostname or None,  # None: aiosmtpd's socket.getfqdn()
            data_size_limit=settings.smtp_max_bytes,
            enable_SMTPUTF8=True,
            timeout=60,
            tls_context=tls,
            require_starttls=tls is not None and settings.smtp_require_starttls,
        )

    server = await asyncio.get_running_loop().create_server(protocol, settings.smtp_host, settings.smtp_port)
    log.info(
        "smtp listening on %s:%d (STARTTLS %s; attachments in %s)",
        settings.smtp_host,
        settings.smtp_port,
        ("required" if settings.smtp_require_starttls else "offered") if tls else "off",
        attachments.root,
    )
    return server


class _DataLines:
    """The reader aiosmtpd's DATA phase uses, as it uses it (`readuntil(CRLF)`, and `read`
    after an overlong line), giving it lines that end in a bare LF as lines ending in CRLF.

    aiosmtpd reads DATA up to each CRLF within its line limit, so a message whose lines
    end in LF alone was one line, refused "500 Line too long" from about 1,000 bytes on.
    A lone dot ends the mail only after a CRLF and before one (RFC 5321 4.1.1.4): a dot
    next to a bare LF is text, given on as a stuffed dot, so no one can end a message
    early where another server would not (SMTP smuggling)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self._after_bare_lf = False

    async def readuntil(self, separator: bytes = b"\r\n") -> bytes:
        assert separator == b"\r\n", separator  # the only way aiosmtpd reads DATA
        line = await self._reader.readuntil(b"\n")  # LimitOverrunError as before: an overlong line
        bare = not line.endswith(b"\r\n")
        if bare:
            line = line[:-1] + b"\r\n"
        if line == b".\r\n" and (bare or self._after_bare_lf):
            line = b"..\r\n"
        self._after_bare_lf = bare
        return line

    async def read(self, n: int = -1) -> bytes:
        return await self._reader.read(n)


class _Server(SMTP):
    """aiosmtpd's SMTP server, reading DATA through _DataLines."""

    async def push(self, status: str | bytes) -> None:
        code = status[:3].decode() if isinstance(status, bytes) else status[:3]
        metrics.SMTP_REPLIES.labels(code).inc()  # every reply, by its code (250, 451, 550, ...)
        await super().push(status)

    async def smtp_DATA(self, arg: str) -> None:
        reader = self._reader
        self._reader = _DataLines(reader)  # type: ignore[assignment]
        try:
            with logcontext.about():  # a mail's lines carry its tenant and contact once taken in, not the next mail's
                await super().smtp_DATA(arg)
        finally:
            self._reader = reader


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """STARTTLS with the configured certificate, or None without one (Settings has
    checked that the two come together). A certificate that does not load stops start-up:
    mail must not silently arrive in the clear."""
    if not settings.smtp_tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.smtp_tls_cert, settings.smtp_tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"SMTP_TLS_CERT / SMTP_TLS_KEY: cannot load the certificate: {exc}") from None
    return context


async def sweep_attachments(attachments: AttachmentStore, stop: asyncio.Event) -> None:
    """Until stop: remove the temporary files of attachments whose write a killed process
    abandoned, now and every hour (a crash would otherwise leave them for ever)."""
    while not stop.is_set():
        try:
            if removed := await asyncio.to_thread(attachments.sweep):
                log.info("removed %d abandoned temporary attachment file(s) from %s", removed, attachments.root)
        except OSError as exc:  # a missing or unreadable store: the next sweep tries again
            log.warning("attachment store %s not swept: %s", attachments.root, exc)
        try:
            await asyncio.wait_for(stop.wait(), timeout=SWEEP_EVERY_S)
        except TimeoutError:
            continue


async def run(store: Store, deployment: Deployment, settings: Settings, stop: asyncio.Event) -> None:
    server = await start(store, deployment, settings)
    attachments = AttachmentStore(settings.attachment_dir, settings.attachment_max_bytes)
    sweeping = asyncio.create_task(sweep_attachments(attachments, stop))
    try:
        await stop.wait()
    finally:
        sweeping.cancel()
        server.close()
        try:
            await asyncio.wait_for(server.wait_closed(), timeout=5)
        except TimeoutError:
            log.warning("smtp sessions still open at shutdown were left to close")
