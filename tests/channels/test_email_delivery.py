"""Delivery through the SMTP relay (channels.email.delivery), against a real aiosmtpd
relay on a free loopback port that answers as each test needs. The relay sink and
the self-signed certificate here are shared by the other email tests."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from channels.email.delivery import NoRelay, deliver
from channels.transport import OutcomeUnknown, PermanentFailure, TemporaryFailure
from ops.redis_server import free_port
from router.errors import ConfigError
from router.settings import Settings

pytestmark = pytest.mark.e2e  # a real SMTP relay on a loopback port, TLS with an openssl-made certificate


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    tls: bool
    login: str
    ehlo: str = ""


@dataclass
class RelaySink:
    """A relay that records what it accepts. `answers` maps a step (rcpt, data) to the
    reply it gives; `data_then` is "reply", "drop" (close without a reply) or "hang"."""

    port: int
    received: list[Received] = field(default_factory=list)
    answers: dict[str, str] = field(default_factory=dict)
    data_then: str = "reply"
    logins: dict[str, str] = field(default_factory=dict)  # user -> password it accepts

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if "rcpt" in self.answers:
            return self.answers["rcpt"]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.data_then == "drop":
            server.transport.close()
            return "250 OK"  # never reaches the client
        if self.data_then == "hang":
            await asyncio.sleep(3600)
        if "data" in self.answers:
            return self.answers["data"]
        message = BytesParser(policy=policy.default).parsebytes(envelope.original_content)
        tls, login = session.ssl is not None, session.auth_data or ""
        received = Received(envelope.mail_from, list(envelope.rcpt_tos), message, tls, login, session.host_name or "")
        self.received.append(received)
        return "250 2.0.0 queued as sink-1"

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        login = auth_data.login.decode() if isinstance(auth_data, LoginPassword) else ""
        ok = bool(login) and self.logins.get(login) == auth_data.password.decode()
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1, made by the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a self-signed certificate (cryptography is not installed)")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return Certificate(cert, key)


async def start_sink(certificate: Certificate | None = None, **options) -> tuple[RelaySink, asyncio.Server]:
    sink = RelaySink(free_port(), **options)
    context = certificate.server_context() if certificate else None

    def protocol() -> SMTP:
        return SMTP(sink, tls_context=context, authenticator=sink.authenticate, timeout=30)

    server = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", sink.port)
    return sink, server


@pytest.fixture
async def sink() -> AsyncIterator[RelaySink]:
    relay, server = await start_sink()
    try:
        yield relay
    finally:
        server.close()


def relay_settings(port: int, **fields) -> Settings:
    return Settings(
        smtp_relay_host="127.0.0.1", smtp_relay_port=port, smtp_relay_tls=fields.pop("tls", "none"), **fields
    )


def letter(**headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = headers.pop("From", "Acme Help <help@acme.example>")
    message["To"] = headers.pop("To", "jane@example.com")
    message["Subject"] = "Your invoice"
    message["Message-ID"] = "<m1@acme.example>"
    for name, value in headers.items():
        message[name] = value
    message.set_content("Fixed it.")
    return message


async def test_a_message_reaches_the_relay_with_its_envelope(sink: RelaySink) -> None:
    await deliver(relay_settings(sink.port), letter(Cc="boss@example.com"))
    [got] = sink.received
    assert (got.mail_from, got.rcpt_tos) == ("help@acme.example", ["jane@example.com", "boss@example.com"])
    assert got.message["Message-ID"] == "<m1@acme.example>" and got.message.get_content().strip() == "Fixed it."


async def test_the_relay_is_greeted_with_the_configured_ehlo_name(sink: RelaySink) -> None:
    await deliver(relay_settings(sink.port, smtp_hostname="mx.acme.example"), letter())
    assert sink.received[0].ehlo == "mx.acme.example"


def test_the_ehlo_name_must_be_a_host_name() -> None:
    assert Settings.from_env({"SMTP_HOSTNAME": "MX.Acme.Example."}).smtp_hostname == "mx.acme.example"
    assert Settings.from_env({}).smtp_hostname == ""  # this machine's FQDN
    for bad in ("mx acme", "mx.acme.example\r\nRCPT TO:<x@y>", "-mx.example", "a" * 64 + ".example"):
        with pytest.raises(ConfigError, match=r"SMTP_HOSTNAME: .* is not a host name"):
            Settings.from_env({"SMTP_HOSTNAME": bad})


async def test_without_a_relay_the_caller_is_told_to_use_the_sandbox() -> None:
    with pytest.raises(NoRelay):
        await deliver(Settings(), letter())


async def test_a_4xx_reply_is_a_temporary_failure(sink: RelaySink) -> None:
    sink.answers["rcpt"] = "451 4.7.1 greylisted, come back later"
    with pytest.raises(TemporaryFailure, match=r"451 4\.7\.1 greylisted"):
        await deliver(relay_settings(sink.port), letter())
    assert sink.received == []


async def test_a_5xx_reply_is_a_permanent_failure(sink: RelaySink) -> None:
    sink.answers["data"] = "554 5.7.1 message rejected as spam"
    with pytest.raises(PermanentFailure, match=r"554 5\.7\.1"):
        await deliver(relay_settings(sink.port), letter())


async def test_a_relay_that_is_not_listening_is_a_temporary_failure() -> None:
    with pytest.raises(TemporaryFailure, match="before DATA"):
        await deliver(relay_settings(free_port()), letter())


@pytest.mark.parametrize("then", ["drop", "hang"])
async def test_no_answer_after_the_data_is_an_unknown_outcome_never_a_retry(sink: RelaySink, then: str) -> None:
    sink.data_then = then
    with pytest.raises(OutcomeUnknown, match="after DATA"):
        await deliver(relay_settings(sink.port), letter(), timeout_s=1.0)


async def test_a_message_without_recipients_fails_before_connecting() -> None:
    message = letter()
    del message["To"]
    with pytest.raises(PermanentFailure, match="no recipient"):
        await deliver(relay_settings(free_port()), message)


@pytest.fixture
async def tls_sink(certificate: Certificate) -> AsyncIterator[RelaySink]:
    relay, server = await start_sink(certificate, logins={"acme-relay": "s3cret"})
    try:
        yield relay
    finally:
        server.close()


async def test_starttls_and_login_with_the_relay_s_certificate_trusted(tls_sink: RelaySink, certificate) -> None:
    settings = relay_settings(
        tls_sink.port, tls="starttls", smtp_relay_user="acme-relay", smtp_relay_password="s3cret",
        smtp_relay_ca_file=str(certificate.cert),
    )  # fmt: skip
    await deliver(settings, letter())
    [got] = tls_sink.received
    assert got.tls and got.login == "acme-relay"


async def test_a_wrong_password_is_refused_and_never_logged(tls_sink: RelaySink, certificate, caplog) -> None:
    settings = relay_settings(
        tls_sink.port, tls="starttls", smtp_relay_user="acme-relay", smtp_relay_password="wrong-pw",
        smtp_relay_ca_file=str(certificate.cert),
    )  # fmt: skip
    with pytest.raises(PermanentFailure, match="535") as refused:
        await deliver(settings, letter())
    assert "wrong-pw" not in str(refused.value) and "wrong-pw" not in caplog.text
    assert tls_sink.received == []


async def test_an_untrusted_relay_certificate_is_never_sent_the_login(tls_sink: RelaySink) -> None:
    settings = relay_settings(tls_sink.port, tls="starttls", smtp_relay_user="acme-relay", smtp_relay_password="s3cret")
    with pytest.raises(TemporaryFailure, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        await deliver(settings, letter())
    assert tls_sink.received == []


def test_relay_settings_come_from_the_environment() -> None:
    env = {"SMTP_RELAY_HOST": "smtp.example.net", "SMTP_RELAY_TLS": "tls", "SMTP_RELAY_USER": "u"}
    settings = Settings.from_env(env | {"SMTP_RELAY_PASSWORD": "p"})
    assert (settings.smtp_relay_host, settings.smtp_relay_port, settings.smtp_relay_tls) == (
        "smtp.example.net",
        465,
        "tls",
    )
    assert Settings.from_env({"SMTP_RELAY_PORT": "2587"}).smtp_relay_port == 2587
    assert Settings.from_env({}).smtp_relay_tls == "starttls"
    with pytest.raises(ConfigError, match="SMTP_RELAY_TLS: must be one of starttls, tls, none, not 'ssl'"):
        Settings.from_env({"SMTP_RELAY_TLS": "ssl"})
