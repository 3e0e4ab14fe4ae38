"""STARTTLS on the `smtp` process: offered when a certificate is configured (a
self-signed one made in the test), optionally required, never half-configured."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from ops.redis_server import free_port
from router import events
from router.errors import ConfigError
from router.keys import Keys
from router.settings import Settings
from tests.channels.test_email_delivery import Certificate, certificate
from tests.channels.test_email_inbound import TENANTS, mail
from tests.factories import World, world
from workers import smtp

__all__ = ["certificate"]  # the session fixture


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Callable]:
    """Start the smtp process's server with these settings; returns (world, port)."""
    opened: list = []

    async def starter(**fields: object) -> tuple[World, int]:
        the_world = await world(TENANTS)
        settings = Settings(smtp_port=free_port(), attachment_dir=str(tmp_path / "att"), **fields)
        opened.append((await smtp.start(the_world.store, the_world.deployment, settings), the_world))
        return the_world, settings.smtp_port

    try:
        yield starter
    finally:
        for server, the_world in opened:
            server.close()
            await the_world.store.close()


def client_context(cert: Certificate) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert.cert))


def conversation(port: int, *, tls: ssl.SSLContext | None) -> tuple[bool, int, int]:
    """(STARTTLS offered, MAIL reply, DATA reply) of one SMTP transaction, upgrading when given a context."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("mx.example.com")
        offered = client.has_extn("starttls")
        if tls is not None:
            client.starttls(context=tls)
            client.ehlo("mx.example.com")
        code, _ = client.mail("jane@example.com")
        if code != 250:
            return offered, code, 0
        client.rcpt("help@acme.example")
        return offered, code, client.data(mail().as_bytes())[0]


async def test_mail_arrives_over_starttls_with_the_configured_certificate(start, certificate: Certificate) -> None:
    the_world, port = await start(smtp_tls_cert=str(certificate.cert), smtp_tls_key=str(certificate.key))
    offered, _mail, data = await asyncio.to_thread(conversation, port, tls=client_context(certificate))
    assert offered and data == 250
    [(_id, fields)] = await the_world.store.redis.xrange(Keys("acme").inbound)
    assert events.decode_inbound(fields[b"e"]).subject == "Invoice"


async def test_starttls_stays_optional_unless_required(start, certificate: Certificate) -> None:
    _world, port = await start(smtp_tls_cert=str(certificate.cert), smtp_tls_key=str(certificate.key))
    assert (await asyncio.to_thread(conversation, port, tls=None))[2] == 250


async def test_required_starttls_refuses_mail_in_the_clear(start, certificate: Certificate) -> None:
    the_world, port = await start(
        smtp_tls_cert=str(certificate.cert), smtp_tls_key=str(certificate.key), smtp_require_starttls=True
    )
    _offered, code, _data = await asyncio.to_thread(conversation, port, tls=None)
    assert code == 530
    assert await the_world.store.redis.xlen(Keys("acme").inbound) == 0
    assert (await asyncio.to_thread(conversation, port, tls=client_context(certificate)))[2] == 250


async def test_without_a_certificate_starttls_is_not_offered(start) -> None:
    _world, port = await start()
    offered, _mail, data = await asyncio.to_thread(conversation, port, tls=None)
    assert not offered and data == 250


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"smtp_tls_cert": "/nonexistent/cert.pem"}, "set both or neither"),
        ({"smtp_require_starttls": True}, "needs SMTP_TLS_CERT"),
        ({"smtp_tls_cert": "/nonexistent/cert.pem", "smtp_tls_key": "/nonexistent/key.pem"}, "cannot load"),
    ],
)
async def test_a_broken_tls_configuration_stops_start_up(start, fields: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        await start(**fields)
