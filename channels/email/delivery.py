"""The SMTP client side: one message through the deployment's relay (aiosmtplib).

The outcome follows channels.transport, so no customer gets a message twice:
- a 4xx reply, a refused or timed-out connection, or a drop before the DATA
  command: TemporaryFailure (the relay has nothing; a retry is safe);
- a 5xx reply at any step: PermanentFailure;
- a drop or a silence once the DATA command went out: OutcomeUnknown. The relay
  may have queued the message before the connection died, and SMTP has no way
  to ask it afterwards, so it is never sent again.

No relay configured (SMTP_RELAY_HOST unset): NoRelay, and the caller uses the
sandbox outbox. The relay's password comes from the environment (Settings) and
never appears in a log line or an error.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from email.message import EmailMessage
from email.utils import getaddresses

import aiosmtplib

from channels.transport import OutcomeUnknown, PermanentFailure, TemporaryFailure
from router import atomic
from router.events import OutboundMessage
from router.keys import Keys
from router.settings import Settings
from router.store import Store

log = logging.getLogger(__name__)

# One whole delivery (connect, TLS, login, envelope, data). The dispatcher presumes
# a send older than its lease (workers.dispatch.SEND_LEASE_MS, 120 s) dead, so a
# delivery must always end well before that.
TIMEOUT_S = 60.0
# The Message-IDs of mail sent for the fax channel begin so (channels.fax.outbound makes
# them): a bounce quoting one is a failed fax, and a gateway's report may settle only those.
FAX_REFERENCE_PREFIX = "fax."


# Reports on mail we sent (a DSN, a fax gateway's mail) only ever move a message forward,
# and the first that settles it (delivered, failed) is final: a late failure never undoes a
# delivery, nor a late "delivered" a failure, and a repeated report counts once.
RANK = {"sending": 0, "retry": 0, "sent": 1, "unknown": 1, "delivered": 3, "failed": 3, "refused": 3}


class NoRelay(Exception):
    """No SMTP relay is configured: the caller keeps the message in the sandbox outbox."""


async def deliver(settings: Settings, message: EmailMessage, *, timeout_s: float = TIMEOUT_S) -> None:
    """Send `message` to its To/Cc/Bcc recipients through the relay; the envelope
    sender is the Sender header, else the From address (where bounces return).

    Raises NoRelay, TemporaryFailure, PermanentFailure or OutcomeUnknown.
    """
    if not settings.smtp_relay_host:
        raise NoRelay("no SMTP relay configured (SMTP_RELAY_HOST)")
    sender, recipients = envelope(message)
    data = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
    client = aiosmtplib.SMTP(
        hostname=settings.smtp_relay_host,
        port=settings.smtp_relay_port,
        local_hostname=settings.smtp_hostname or None,  # None: aiosmtplib's socket.getfqdn()
        timeout=timeout_s,
        use_tls=settings.smtp_relay_tls == "tls",
        # False, not None: aiosmtplib's None means "STARTTLS if offered", and a
        # relay that stopped offering it must not get our login in the clear
        start_tls=settings.smtp_relay_tls == "starttls",
        tls_context=_tls_context(settings) if settings.smtp_relay_tls != "none" else None,
    )
    relay = f"{settings.smtp_relay_host}:{settings.smtp_relay_port}"
    data_sent = False
    try:
        async with asyncio.timeout(timeout_s):
            await client.connect()
            try:
                if client.is_ehlo_or_helo_needed:
                    await client.ehlo()  # the extensions (SIZE, SMTPUTF8, AUTH) before MAIL
                if settings.smtp_relay_user:
                    await client.login(settings.smtp_relay_user, settings.smtp_relay_password)
                await client.mail(sender, options=_mail_options(client, data, [sender, *recipients]))
                for recipient in recipients:
                    await client.rcpt(recipient)
                data_sent = True
                await client.data(data)
            finally:
                client.close()  # no QUIT round trip: the outcome is already known
    except aiosmtplib.SMTPResponseException as exc:
        raise _refusal(relay, exc) from None
    except (OSError, TimeoutError, aiosmtplib.SMTPException, ssl.SSLError) as exc:
        # aiosmtplib's disconnect and timeout errors are OSErrors too
        what = f"{type(exc).__name__}: {exc}"
        if data_sent:
            raise OutcomeUnknown(f"relay {relay} gave no answer after DATA ({what}); not resent") from None
        raise TemporaryFailure(f"relay {relay} failed before DATA ({what})") from None
    log.info("mail %s for %d recipient(s) accepted by %s", message["Message-ID"], len(recipients), relay)


async def send_recorded(
    store: Store,
    settings: Settings,
    message: OutboundMessage,
    mail: EmailMessage,
    provider_id: str,
    fields: dict[str, str] | None = None,
    *,
    timeout_s: float = TIMEOUT_S,
) -> str:
    """One attempt of an outbound message (an email, a fax's mail) through the relay,
    recorded so that channels.transport.reconcile_from_record can answer after a crash: the mark before the relay is
    called (with `fields`, and the conversation a report's event names), the provider
    id as soon as the relay took it. Raises as `deliver` does."""
    keys = Keys(message.tenant)
    record = {"conversation": message.conversation, **(fields or {})}
    await atomic.mark_requested(store, message.tenant, message.id, **record)
    await deliver(settings, mail, timeout_s=timeout_s)
    # written at once, so a dispatcher that dies now is reconciled as sent
    await store.redis.hset(keys.delivery(message.id), "provider_id", provider_id)
    return provider_id


async def mark(store: Store, tenant: str, ref: str, channel: str, status: str, error: str) -> tuple[str, str]:
    """Apply a report on the message we sent as `ref` (its Message-ID) and append its
    delivery event, atomically (router/lua/delivery_status.lua, which SMS's status
    callbacks' order also fits): ("updated", status), ("unchanged", current), or
    ("unknown", "") when `ref` is none of this tenant's messages."""
    return await atomic.delivery_status(store, tenant, ref=ref, channel=channel, status=status, error=error, order=RANK)


def envelope(message: EmailMessage) -> tuple[str, list[str]]:
    """MAIL FROM and RCPT TO for a message; PermanentFailure when it has no recipient."""
    senders = getaddresses([str(v) for v in message.get_all("Sender", []) or message.get_all("From", [])])
    sender = next((a for _n, a in senders if "@" in a), "")
    fields = [str(v) for name in ("To", "Cc", "Bcc") for v in message.get_all(name, [])]
    recipients = list(dict.fromkeys(a for _n, a in getaddresses(fields) if "@" in a))
    if not recipients:
        raise PermanentFailure("the message has no recipient address (To, Cc, Bcc)")
    return sender, recipients


def _mail_options(client: aiosmtplib.SMTP, data: bytes, addresses: list[str]) -> list[str]:
    """SIZE lets the relay refuse an oversized message before we send it; 8-bit content
    says so (BODY=8BITMIME) and non-ASCII addresses ask for SMTPUTF8, where offered
    (a relay without them answers for itself)."""
    options = [f"SIZE={len(data)}"] if client.supports_extension("size") else []
    if not data.isascii() and client.supports_extension("8bitmime"):
        options.append("BODY=8BITMIME")
    if not all(a.isascii() for a in addresses) and client.supports_extension("smtputf8"):
        options.append("SMTPUTF8")
    return options


def _refusal(relay: str, exc: aiosmtplib.SMTPResponseException) -> TemporaryFailure | PermanentFailure:
    detail = f"relay {relay} answered {exc.code} {exc.message}"
    if 400 <= exc.code < 500:
        return TemporaryFailure(detail)
    return PermanentFailure(detail)


def _tls_context(settings: Settings) -> ssl.SSLContext:
    """Verified TLS: the system's trust store, or the CA bundle the deployment names."""
    return ssl.create_default_context(cafile=settings.smtp_relay_ca_file or None)
