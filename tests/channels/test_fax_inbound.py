"""Fax-to-email in: real SMTP conversations (smtplib as the client) with the `smtp`
process's aiosmtpd server, from two gateways that write their mail differently."""

from __future__ import annotations

import asyncio
import contextlib
import io
import smtplib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
from fpdf import FPDF
from PIL import Image

from ops.redis_server import free_port
from router import bus, events
from router.attachments import AttachmentStore
from router.keys import Keys
from router.settings import Settings
from tests.factories import World, route_inbound, world
from workers import smtp

# Two gateways: an eFax-like one that puts everything in the subject (US numbers),
# and one that writes the number and pages in the body (UK numbers), sending TIFFs.
TENANTS = r"""
[[tenants]]
id = "acme"
name = "Acme Energy"
entry = { default = "support" }
email = { addresses = ["help@acme.example", "fax@acme.example"] }

[tenants.fax]
address = "fax@acme.example"

[[tenants.fax.gateways]]
name = "efax"
from_domains = ["efax.example"]
search_in = "subject"
number_pattern = 'eFax from .*? - (?P<pages>\d+) page\(s\), Caller ID: (?P<number>[-\d ().+]+)'
outbound_address = "{number}@send.efax.example"
status_pattern_ok = 'fax to .* was sent successfully'
status_pattern_failed = 'fax to .* (?:failed|could not be sent)(?:: (?P<reason>.+))?'

[[tenants.fax.gateways]]
name = "faxgate"
from_addresses = ["noreply@faxgate.example"]
search_in = "body"
region = "GB"
number_pattern = '(?m)^Sender:\s*(?P<number>\+?[\d ]+)$'
pages_pattern = 'Pages:\s*(?P<pages>\d+)'
outbound_address = "{number}@out.faxgate.example"
number_format = "national_digits"
status_pattern_ok = 'Job (?P<ref>[^\s<>]+) delivered'
status_pattern_failed = 'Job (?P<ref>[^\s<>]+) failed, (?P<reason>.+)'

[[tenants.queues]]
id = "support"
"""
MAX_BYTES = 2_000_000


def pdf_of(pages: int, text: str = "Meter reading") -> bytes:
    """A fax as a PDF of this many pages, made with fpdf2."""
    pdf = FPDF()
    pdf.set_font("helvetica", size=14)
    for page in range(1, pages + 1):
        pdf.add_page()
        pdf.cell(text=f"{text}, page {page}")
    return bytes(pdf.output())


def tiff_of(pages: int) -> bytes:
    """A fax as a multi-page bilevel TIFF (one frame a page), made with Pillow."""
    frames = [Image.new("1", (200, 100), color=1) for _ in range(pages)]
    out = io.BytesIO()
    frames[0].save(out, format="TIFF", save_all=True, append_images=frames[1:], compression="group4")
    return out.getvalue()


def efax_mail(
    *,
    pages: int = 2,
    caller: str = "555-123-4567",
    document: bytes | None = None,
    message_id: str = "<ef1@efax.example>",
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "eFax <message@efax.example>"
    msg["To"] = "fax@acme.example"
    msg["Subject"] = f"eFax from Acme Customer - {pages} page(s), Caller ID: {caller}"
    msg["Message-ID"] = message_id
    msg.set_content("You have received a new fax. Please see the attached document.")
    if document is not None:
        msg.add_attachment(document, maintype="application", subtype="pdf", filename="fax.pdf")
    return msg


def faxgate_mail(*, sender: str = "020 7946 0018", pages: int = 3, document: bytes | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "FaxGate <noreply@faxgate.example>"
    msg["To"] = "fax@acme.example"
    msg["Subject"] = "New fax received"
    msg["Message-ID"] = "<fg1@faxgate.example>"
    msg.set_content(f"A fax arrived for you.\nSender: {sender}\nPages: {pages}\n\nFaxGate - faxing made easy")
    if document is not None:
        msg.add_attachment(document, maintype="image", subtype="tiff", filename="fax0001.tif")
    return msg


@dataclass
class FaxServer:
    """The `smtp` process under test, and a client that speaks SMTP to it."""

    world: World
    port: int
    attachments: AttachmentStore

    async def send(
        self, message: EmailMessage, *, to: str | list[str] = "fax@acme.example", sender: str = ""
    ) -> tuple[int, str]:
        data = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
        return await self.send_raw(data, to=to, sender=sender or str(message["From"]).rpartition("<")[2].rstrip(">"))

    async def send_raw(self, data: bytes, *, to: str | list[str] = "fax@acme.example", sender: str) -> tuple[int, str]:
        """One SMTP transaction; sender "" is the null return path of automatic mail."""

        def transaction() -> tuple[int, str]:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
                client.ehlo("gateway.example")
                client.mail(sender)
                for recipient in [to] if isinstance(to, str) else to:
                    code, text = client.rcpt(recipient)
                    if code != 250:
                        return code, text.decode()
                code, text = client.data(data)
                return code, text.decode()

        return await asyncio.to_thread(transaction)

    async def contacts(self) -> list[events.InboundContact]:
        rows = await self.world.store.redis.xrange(Keys("acme").inbound)
        return [events.decode_inbound(fields[b"e"]) for _id, fields in rows]


async def serve(
    the_world: World, tmp_path: Path, *, attachment_max_bytes: int = MAX_BYTES, **smtp_settings: object
) -> tuple[FaxServer, object]:
    """Start the `smtp` process's server on a free port; returns it and the asyncio server."""
    settings = Settings(
        smtp_port=free_port(),
        smtp_max_bytes=MAX_BYTES,
        attachment_dir=str(tmp_path / "att"),
        attachment_max_bytes=attachment_max_bytes,
        **smtp_settings,
    )
    server = await smtp.start(the_world.store, the_world.deployment, settings)
    return FaxServer(the_world, settings.smtp_port, AttachmentStore(settings.attachment_dir)), server


@pytest.fixture
async def faxes(tmp_path: Path) -> AsyncIterator[FaxServer]:
    the_world = await world(TENANTS)
    fax_server, server = await serve(the_world, tmp_path)
    try:
        yield fax_server
    finally:
        server.close()
        await the_world.store.close()


async def test_an_efax_with_a_pdf_becomes_a_fax_contact_from_the_caller_in_e164(faxes: FaxServer) -> None:
    document = pdf_of(2)
    code, text = await faxes.send(efax_mail(pages=2, document=document))
    assert code == 250, text
    [fax] = await faxes.contacts()
    assert (fax.channel, fax.address, fax.to, fax.provider_id) == (
        "fax",
        "+15551234567",
        "fax@acme.example",
        "ef1@efax.example",
    )
    assert fax.body.startswith("Fax from +15551234567, 2 page(s)")
    assert "You have received a new fax" in fax.body
    assert (fax.metadata["gateway"], fax.metadata["pages"], fax.metadata["claimed_pages"]) == ("efax", "2", "2")
    assert "note" not in fax.metadata
    [attachment] = fax.attachments
    assert (attachment.content_type, attachment.filename, attachment.size) == (
        "application/pdf",
        "fax.pdf",
        len(document),
    )
    assert faxes.attachments.read(attachment.url) == document


async def test_a_body_pattern_gateway_with_a_tiff_reads_a_national_number_in_its_region(faxes: FaxServer) -> None:
    document = tiff_of(3)
    code, text = await faxes.send(faxgate_mail(sender="020 7946 0018", pages=3, document=document))
    assert code == 250, text
    [fax] = await faxes.contacts()
    assert (fax.channel, fax.address) == ("fax", "+442079460018")
    assert (fax.metadata["gateway"], fax.metadata["pages"], fax.metadata["claimed_pages"]) == ("faxgate", "3", "3")
    assert fax.body.startswith("Fax from +442079460018, 3 page(s)")
    [attachment] = fax.attachments
    assert attachment.content_type == "image/tiff"
    assert faxes.attachments.read(attachment.url) == document


async def test_a_fax_routes_into_a_conversation_on_the_fax_channel(faxes: FaxServer) -> None:
    await faxes.send(efax_mail(document=pdf_of(2)))
    await route_inbound(faxes.world.store, faxes.world.deployment, "acme")
    [added] = await faxes.world.events(events.MessageAdded)
    conversation = await faxes.world.conversation(added.conversation)
    assert (conversation["channel"], conversation["last_address"]) == ("fax", "+15551234567")
    # a reply to this number goes back through the gateway the fax came by
    route = await faxes.world.store.redis.hget(Keys("acme").fax_routes, "+15551234567")
    assert route == b"efax"


async def test_a_page_count_the_file_contradicts_is_noted_and_the_file_wins(faxes: FaxServer) -> None:
    await faxes.send(efax_mail(pages=3, document=pdf_of(2)))
    [fax] = await faxes.contacts()
    assert (fax.metadata["pages"], fax.metadata["claimed_pages"]) == ("2", "3")
    assert fax.metadata["note"] == "the gateway reports 3 page(s), the file has 2"
    assert fax.body.startswith("Fax from +15551234567, 2 page(s)\n\nthe gateway reports 3 page(s), the file has 2")


async def test_a_gateway_mail_without_the_fax_file_still_arrives_with_a_note(faxes: FaxServer) -> None:
    code, _ = await faxes.send(faxgate_mail(pages=1, document=None))
    assert code == 250
    [fax] = await faxes.contacts()
    assert (fax.channel, fax.address, fax.attachments) == ("fax", "+442079460018", ())
    assert "pages" not in fax.metadata and fax.metadata["claimed_pages"] == "1"
    assert fax.metadata["note"] == "no PDF or TIFF came with the gateway's mail: the fax itself is missing"
    assert fax.body.startswith("Fax from +442079460018, 1 page(s)")


async def test_an_unreadable_fax_file_is_kept_and_noted(faxes: FaxServer) -> None:
    broken = b"%PDF-1.4\n this is not really a PDF at all"
    await faxes.send(efax_mail(pages=2, document=broken))
    [fax] = await faxes.contacts()
    assert "pages" not in fax.metadata
    assert fax.metadata["note"].startswith("fax.pdf: not a readable PDF")
    assert fax.metadata["note"].endswith("pages not counted")
    assert faxes.attachments.read(fax.attachments[0].url) == broken


async def test_the_same_fax_delivered_twice_is_one_contact(faxes: FaxServer) -> None:
    for _ in range(2):
        code, _ = await faxes.send(efax_mail(document=pdf_of(2)))
        assert code == 250
    assert len(await faxes.contacts()) == 1


async def test_gateway_mail_with_no_number_to_read_stays_an_email_so_nothing_is_lost(faxes: FaxServer) -> None:
    notice = efax_mail(document=None)
    notice.replace_header("Subject", "Your eFax account statement")
    code, _ = await faxes.send(notice)
    assert code == 250
    [mail] = await faxes.contacts()
    assert (mail.channel, mail.address) == ("email", "message@efax.example")


async def test_a_withheld_caller_id_stays_an_email_from_the_gateway(faxes: FaxServer) -> None:
    code, _ = await faxes.send(efax_mail(caller="Unknown", document=pdf_of(1)))
    assert code == 250
    [mail] = await faxes.contacts()
    assert mail.channel == "email"
    assert mail.attachments[0].filename == "fax.pdf"


async def test_mail_that_only_looks_like_a_fax_from_a_stranger_is_ordinary_email(faxes: FaxServer) -> None:
    forged = efax_mail(document=pdf_of(1))
    forged.replace_header("From", "someone@elsewhere.example")
    await faxes.send(forged, sender="someone@elsewhere.example")
    [mail] = await faxes.contacts()
    assert (mail.channel, mail.address) == ("email", "someone@elsewhere.example")


async def test_a_redis_failure_answers_451_so_the_gateway_retries(faxes: FaxServer, monkeypatch) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    async def down(*_args, **_kwargs):
        raise RedisConnectionError("redis is down")

    monkeypatch.setattr(bus, "ingest", down)
    code, _ = await faxes.send(efax_mail(document=pdf_of(2)))
    assert code == 451
    monkeypatch.undo()
    code, _ = await faxes.send(efax_mail(document=pdf_of(2)))
    assert code == 250
    assert len(await faxes.contacts()) == 1


async def test_a_fax_file_over_the_attachment_cap_is_left_out_and_noted(tmp_path: Path) -> None:
    the_world = await world(TENANTS)
    faxes, server = await serve(the_world, tmp_path, attachment_max_bytes=100)
    try:
        code, _ = await faxes.send(efax_mail(pages=2, document=pdf_of(2)))
        assert code == 250
        [fax] = await faxes.contacts()
        assert fax.attachments == () and "pages" not in fax.metadata
        assert fax.metadata["note"].startswith("fax.pdf (") and fax.metadata["note"].endswith("left out: too large")
        assert fax.body.startswith("Fax from +15551234567, 2 page(s)")  # the gateway's count, for want of the file
    finally:
        server.close()
        await the_world.store.close()


async def test_a_gateways_mail_also_addressed_to_a_tenant_without_that_gateway_reaches_it_as_email(
    tmp_path: Path,
) -> None:
    the_world = await world(
        TENANTS
        + """
[[tenants]]
id = "globex"
entry = { default = "desk" }
email = { addresses = ["help@globex.example"] }
[[tenants.queues]]
id = "desk"
"""
    )
    faxes, server = await serve(the_world, tmp_path)
    try:
        mail = efax_mail(document=pdf_of(1))
        for _ in range(2):  # the gateway's server retried: still one of each
            code, text = await faxes.send(mail, to=["fax@acme.example", "help@globex.example"])
            assert code == 250, text
        [fax] = await faxes.contacts()
        assert (fax.channel, fax.address) == ("fax", "+15551234567")
        rows = await the_world.store.redis.xrange(Keys("globex").inbound)
        [email] = [events.decode_inbound(fields[b"e"]) for _id, fields in rows]
        assert (email.channel, email.address, email.to) == ("email", "message@efax.example", "help@globex.example")
    finally:
        server.close()
        await the_world.store.close()


@contextlib.asynccontextmanager
async def fax_server(tmp_path: Path, tenants: str = TENANTS, **smtp_settings: object) -> AsyncIterator[FaxServer]:
    the_world = await world(tenants)
    faxes, server = await serve(the_world, tmp_path, **smtp_settings)
    try:
        yield faxes
    finally:
        server.close()
        await the_world.store.close()


# The tests' SMTP client connects from 127.0.0.1: these put it outside the trusted networks.
ELSEWHERE = ["192.0.2.0/24"]
PINNED = TENANTS.replace('name = "efax"\n', 'name = "efax"\ntrusted_networks = ["192.0.2.0/24"]\n')


async def test_gateway_mail_from_a_network_the_gateway_is_not_trusted_from_is_ordinary_email(
    tmp_path: Path, caplog
) -> None:
    async with fax_server(tmp_path, PINNED) as faxes:
        code, _ = await faxes.send(efax_mail(document=pdf_of(1)))
        assert code == 250
        [mail] = await faxes.contacts()
        assert (mail.channel, mail.address) == ("email", "message@efax.example")  # no fax from +15551234567
    assert "names fax gateway efax of acme but came from ('127.0.0.1'" in caplog.text


async def test_without_networks_of_its_own_a_gateway_is_trusted_only_through_our_mail_servers(tmp_path: Path) -> None:
    async with fax_server(tmp_path, smtp_trusted_networks=ELSEWHERE) as faxes:
        await faxes.send(efax_mail(document=pdf_of(1)))
        [mail] = await faxes.contacts()
        assert mail.channel == "email"
    async with fax_server(tmp_path) as faxes:  # the default: the local MX in front of us
        await faxes.send(efax_mail(document=pdf_of(1)))
        [fax] = await faxes.contacts()
        assert (fax.channel, fax.address) == ("fax", "+15551234567")


@pytest.mark.parametrize(
    ("stamp", "channel"),
    [
        ("mx.acme.example; dkim=pass (2048-bit key) header.d=efax.example header.s=s1; spf=none", "fax"),
        ("mx.acme.example 1; spf=pass smtp.mailfrom=bounces@mail.efax.example", "fax"),
        ("mx.acme.example; dkim=fail header.d=efax.example; spf=softfail smtp.mailfrom=efax.example", "email"),
        ("mx.acme.example; dkim=pass header.d=elsewhere.example", "email"),
        ("mx.forger.example; dkim=pass header.d=efax.example", "email"),  # not our MX's stamp
    ],
)
async def test_our_mx_s_authentication_results_vouch_for_a_gateway(tmp_path: Path, stamp: str, channel: str) -> None:
    async with fax_server(tmp_path, PINNED, smtp_authserv_id="mx.acme.example") as faxes:
        mail = efax_mail(document=pdf_of(1))
        mail["Authentication-Results"] = stamp
        await faxes.send(mail)
        [contact] = await faxes.contacts()
        assert contact.channel == channel
