"""Outbound fax: a reply rendered to PDF (channels.fax.render) and mailed, as an
attachment, to the gateway's email-to-fax address through the SMTP relay
(channels.email.delivery); with no relay configured, to the sandbox outbox.

The gateway is the one the customer's number last faxed in by (else the
message's `gateway` metadata, else the tenant's first gateway that sends). The
mail's Message-ID is recorded against our message before the relay is called,
so the gateway's confirmation or failure mail (channels.fax.status) finds the
message however fast it comes.
"""

from __future__ import annotations

import asyncio
import logging
from email.message import EmailMessage
from email.utils import formataddr, formatdate

import jinja2
import msgspec
import phonenumbers
from fpdf.errors import FPDFException

from channels.email import delivery
from channels.fax import gateways, render
from channels.fax.status import REFERENCE_PREFIX
from channels.sandbox import SandboxSender
from channels.transport import PermanentFailure, Reconciled, TemporaryFailure, reconcile_from_record
from router import events
from router.attachments import AttachmentStore, AttachmentTooLarge
from router.config import Deployment, Tenant
from router.config.fax import FaxGateway
from router.keys import PROVIDER_ID_TTL_S, Keys
from router.settings import Settings
from router.store import Store

log = logging.getLogger(__name__)


def reference(message: events.OutboundMessage, sender: str) -> str:
    """The fax mail's Message-ID (without brackets): the same for every attempt of a message."""
    return f"{REFERENCE_PREFIX}{message.id}@{sender.rpartition('@')[2]}"


def compose(
    tenant: Tenant, gateway: FaxGateway, message: events.OutboundMessage, rendered: render.RenderedFax, sender: str
) -> EmailMessage:
    """The mail a gateway turns into a fax: to its address for the number, the PDF attached."""
    try:
        to = gateways.outbound_address(gateway, message.to)
    except phonenumbers.NumberParseException as exc:
        raise PermanentFailure(f"{message.to!r} is not a fax number: {exc}") from None
    name = tenant.email.from_name or tenant.name or tenant.id
    mail = EmailMessage()
    mail["From"] = formataddr((name, sender))
    mail["To"] = to
    # one line: a header cannot hold a line break (the email package refuses one)
    mail["Subject"] = " ".join(message.subject.split()) or f"Fax from {name}"
    mail["Date"] = formatdate(message.occurred_at / 1000)
    mail["Message-ID"] = f"<{reference(message, sender)}>"
    mail.set_content(f"Fax for {message.to} from {name}: {rendered.pages} page(s), attached.\n")
    mail.add_attachment(rendered.pdf, maintype="application", subtype="pdf", filename="fax.pdf")
    return mail


class FaxSender:
    channel = "fax"

    def __init__(
        self, store: Store, deployment: Deployment, settings: Settings, *, attachments: AttachmentStore | None = None
    ) -> None:
        self.store = store
        self.deployment = deployment
        self.settings = settings
        self.sandbox = SandboxSender(store, self.channel)
        self.attachments = attachments or AttachmentStore(settings.attachment_dir, settings.attachment_max_bytes)

    async def close(self) -> None:
        """Nothing held between sends."""

    async def send(self, message: events.OutboundMessage) -> str:
        tenant = self.deployment.tenant(message.tenant)
        gateway = await self._gateway(tenant, message)
        sender = tenant.fax.address or tenant.email.sender()
        if not sender:
            raise PermanentFailure(f"tenant {tenant.id} has no address to send faxes from (fax.address)")
        try:
            rendered = await asyncio.to_thread(render.reply_pdf, tenant, message)
        except (jinja2.TemplateError, FPDFException) as exc:  # the same message would fail the same way again
            raise PermanentFailure(f"the fax could not be rendered: {type(exc).__name__}: {exc}") from exc
        mail = compose(tenant, gateway, message, rendered, sender)
        pdf = await self._keep(rendered)
        ref = reference(message, sender)
        await self.store.redis.set(Keys(message.tenant).provider_message(ref), message.id, ex=PROVIDER_ID_TTL_S)
        fields = {
            "fax_ref": ref,
            "fax_gateway": gateway.name,
            "fax_to": str(mail["To"]),
            "fax_pages": str(rendered.pages),
            "fax_note": rendered.note,
            "fax_pdf": pdf.url,
        }
        if not self.settings.smtp_relay_host:
            await self.store.redis.hset(Keys(message.tenant).delivery(message.id), "fax_pdf", pdf.url)
            return await self._to_sandbox(message, pdf, fields)
        await delivery.send_recorded(self.store, self.settings, message, mail, ref, fields)
        log.info(
            "fax %s of %s to %s via %s (%d pages)", message.id, tenant.id, message.to, gateway.name, rendered.pages
        )
        return ref

    async def reconcile(self, message: events.OutboundMessage) -> tuple[Reconciled, str]:
        """After a dispatcher died mid-send (channels.transport.reconcile_from_record)."""
        if not self.settings.smtp_relay_host:
            return await self.sandbox.reconcile(message)
        return await reconcile_from_record(self.store, message)

    async def _gateway(self, tenant: Tenant, message: events.OutboundMessage) -> FaxGateway:
        sending = [g for g in tenant.fax.gateways if g.outbound_address]
        if not sending:
            raise PermanentFailure(f"tenant {tenant.id} has no fax gateway with an outbound_address")
        wanted = message.metadata.get("gateway")
        if not wanted:
            route = await self.store.redis.hget(Keys(tenant.id).fax_routes, message.to)
            wanted = route.decode() if route else ""
        return next((g for g in sending if g.name == wanted), sending[0])

    async def _keep(self, rendered: render.RenderedFax) -> events.Attachment:
        """The PDF as faxed, in the attachment store (the same bytes are stored once)."""
        try:
            url = await self.attachments.put(rendered.pdf)
        except AttachmentTooLarge as exc:
            raise PermanentFailure(f"the fax PDF is too large to keep: {exc}") from exc
        except OSError as exc:
            raise TemporaryFailure(f"the fax PDF could not be stored: {exc}") from exc
        return events.Attachment(url=url, content_type="application/pdf", filename="fax.pdf", size=len(rendered.pdf))

    async def _to_sandbox(
        self, message: events.OutboundMessage, attachment: events.Attachment, fields: dict[str, str]
    ) -> str:
        """No relay: the outbox keeps the message with its PDF, so the inbox can show what would have gone."""
        kept = msgspec.structs.replace(
            message,
            attachments=(*message.attachments, attachment),
            metadata={**message.metadata, **{k: v for k, v in fields.items() if v}},
        )
        return await self.sandbox.send(kept)
