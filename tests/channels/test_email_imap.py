"""Mail fetched from a tenant's mailbox over IMAP, against a real Dovecot started by the
tests: each message becomes a contact exactly once, through the same path as SMTP, and a
crash between fetching and marking loses and duplicates nothing."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import msgspec
import pytest
from imapclient import IMAPClient

from channels.email import imap
from channels.email.imap import ACCEPTED, REFUSED, MailboxFetcher
from router import events
from router.config import resolve_secrets
from router.errors import ConfigError
from router.keys import Keys
from router.settings import Settings
from tests.channels.imap_server import DovecotMissing, DovecotServer
from tests.channels.test_email_delivery import Certificate, certificate
from tests.channels.test_email_inbound import mail
from tests.factories import World, deployment, route_inbound, world
from workers import imap as imap_worker

pytestmark = pytest.mark.e2e  # a real Dovecot on a loopback port
__all__ = ["certificate"]  # the session fixture

USER, PASSWORD = "help@acme.example", "imap-s3cret"
MAX_BYTES = 64_000


def tenants(port: int, done_folder: str = "") -> str:
    return f"""
[[tenants]]
id = "acme"
entry = {{ default = "support" }}

[tenants.email]
addresses = ["help@acme.example"]

[tenants.email.imap]
host = "127.0.0.1"
port = {port}
tls = "none"
user = "{USER}"
password_env = "ACME_IMAP_PASSWORD"
done_folder = "{done_folder}"

[[tenants.queues]]
id = "support"
"""


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotServer]:
    try:
        server = DovecotServer({USER: PASSWORD})
    except DovecotMissing as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {exc}: the IMAP tests must run in CI", pytrace=False)
        pytest.skip(f"IMAP test needs Dovecot: {exc}")
    with server:
        yield server


@dataclass
class Desk:
    world: World
    server: DovecotServer
    settings: Settings

    def customer_writes(self, message: EmailMessage | bytes, folder: str = "INBOX") -> None:
        """The provider delivers a mail into the mailbox (an IMAP APPEND, as a client would)."""
        data = message if isinstance(message, bytes) else message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
        with self.mailbox() as client:
            client.append(folder, data)

    def mailbox(self) -> IMAPClient:
        client = IMAPClient("127.0.0.1", port=self.server.port, ssl=False, timeout=10)
        client.login(USER, PASSWORD)
        return client

    def flags(self, folder: str = "INBOX") -> list[set[bytes]]:
        with self.mailbox() as client:
            client.select_folder(folder, readonly=True)
            found = client.get_flags(client.search("ALL"))
            return [set(found[uid]) - {b"\\Recent"} for uid in sorted(found)]  # \Recent is the server's

    def fetcher(self) -> MailboxFetcher:
        [fetcher] = imap_worker.fetchers(self.world.store, self.world.deployment, self.settings)
        return fetcher

    async def contacts(self) -> list[events.InboundContact]:
        rows = await self.world.store.redis.xrange(Keys("acme").inbound)
        return [events.decode_inbound(fields[b"e"]) for _id, fields in rows]


async def open_desk(dovecot: DovecotServer, tmp_path: Path, done_folder: str = "") -> Desk:
    """A world whose tenant fetches the (emptied) mailbox."""
    empty_mailbox(dovecot)
    the_world = await world(tenants(dovecot.port, done_folder), env={"ACME_IMAP_PASSWORD": PASSWORD})
    settings = Settings(attachment_dir=str(tmp_path / "att"), smtp_max_bytes=MAX_BYTES)
    return Desk(the_world, dovecot, settings)


def empty_mailbox(server: DovecotServer) -> None:
    """Each test starts with an empty mailbox (the server is the module's)."""
    with IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=10) as client:
        client.login(USER, PASSWORD)
        for _flags, _delimiter, name in client.list_folders():
            if name != "INBOX":
                client.delete_folder(name)
        client.select_folder("INBOX")
        if uids := client.search("ALL"):
            client.delete_messages(uids)
            client.expunge()


@pytest.fixture
async def desk(dovecot: DovecotServer, tmp_path: Path) -> AsyncIterator[Desk]:
    the_desk = await open_desk(dovecot, tmp_path)
    try:
        yield the_desk
    finally:
        await the_desk.world.store.close()


async def test_each_message_in_the_mailbox_becomes_a_contact_once_and_is_flagged(desk: Desk) -> None:
    desk.customer_writes(mail("My invoice is wrong.", Message_ID="<i1@example.com>"))
    desk.customer_writes(mail("And my meter.", subject="Meter", Message_ID="<i2@example.com>"))
    fetcher = desk.fetcher()
    try:
        assert await fetcher.fetch_new() == {"accepted": 2, "refused": 0, "retry": 0}
        assert await fetcher.fetch_new() == {"accepted": 0, "refused": 0, "retry": 0}  # nothing twice
    finally:
        await fetcher.close()
    first, second = await desk.contacts()
    assert (first.channel, first.address, first.to, first.provider_id) == (
        "email", "jane@example.com", "help@acme.example", "i1@example.com",
    )  # fmt: skip
    assert first.body.strip() == "My invoice is wrong." and first.metadata["raw"].startswith("store:")
    assert second.subject == "Meter"
    assert desk.flags() == [{b"\\Seen", ACCEPTED}, {b"\\Seen", ACCEPTED}]
    # routed like mail that came by SMTP: two threads, two conversations
    await route_inbound(desk.world.store, desk.world.deployment, "acme")
    opened = [e.conversation for e in await desk.world.events(events.Queued)]
    assert len(set(opened)) == 2


async def test_taken_in_mail_is_moved_to_the_done_folder(dovecot: DovecotServer, tmp_path: Path) -> None:
    desk = await open_desk(dovecot, tmp_path, done_folder="Done")
    try:
        desk.customer_writes(mail("Hello", Message_ID="<m1@example.com>"))
        fetcher = desk.fetcher()
        try:
            assert (await fetcher.fetch_new())["accepted"] == 1
        finally:
            await fetcher.close()
        assert desk.flags("INBOX") == [] and desk.flags("Done") == [{b"\\Seen", ACCEPTED}]
        assert len(await desk.contacts()) == 1
    finally:
        await desk.world.store.close()


@pytest.mark.parametrize("crash_at", ["take_in", "marker", "mark"])
async def test_a_crash_between_fetching_and_marking_loses_and_duplicates_nothing(
    desk: Desk, crash_at: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies after reading the message: before it was taken in, after it was on
    the stream but before its marker, or after its marker but before the mailbox's flag.
    The next process takes it in once, whichever."""
    desk.customer_writes(mail("Please call me", Message_ID="<c1@example.com>"))

    class Killed(BaseException):  # as abrupt as it gets in-process: nothing catches it
        pass

    crashed = desk.fetcher()
    if crash_at == "take_in":

        async def dies(*_args: object) -> str:
            raise Killed

        monkeypatch.setattr(crashed.handler, "take_in", dies)
    elif crash_at == "marker":
        original = crashed.store.redis.set

        async def dies_setting(key: str, *args: object, **kwargs: object) -> object:
            if ":seen:imap:" in key:
                raise Killed
            return await original(key, *args, **kwargs)

        monkeypatch.setattr(crashed.store.redis, "set", dies_setting)
    else:

        def dies_marking(*_args: object) -> None:
            raise Killed

        monkeypatch.setattr(crashed, "_mark", dies_marking)
    with pytest.raises(Killed):
        await crashed.fetch_new()
    await crashed.close()
    monkeypatch.undo()
    assert desk.flags() == [set()]  # still unmarked in the mailbox: nothing lost

    restarted = desk.fetcher()
    try:
        counts = await restarted.fetch_new()
    finally:
        await restarted.close()
    assert counts["accepted"] == 1
    [contact] = await desk.contacts()
    assert contact.provider_id == "c1@example.com"
    assert desk.flags() == [{b"\\Seen", ACCEPTED}]


async def test_a_message_over_the_size_limit_is_refused_flagged_and_kept(desk: Desk) -> None:
    desk.customer_writes(mail("x" * (MAX_BYTES + 1000), Message_ID="<big@example.com>"))
    desk.customer_writes(mail("small", Message_ID="<small@example.com>"))
    fetcher = desk.fetcher()
    try:
        assert await fetcher.fetch_new() == {"accepted": 1, "refused": 1, "retry": 0}
        assert await fetcher.fetch_new() == {"accepted": 0, "refused": 0, "retry": 0}  # not tried again
    finally:
        await fetcher.close()
    assert desk.flags() == [{REFUSED}, {b"\\Seen", ACCEPTED}]  # unread: a person looks at it
    assert [c.provider_id for c in await desk.contacts()] == ["small@example.com"]


async def test_mail_from_a_null_return_path_is_automatic_and_a_bounce_marks_nothing(desk: Desk) -> None:
    auto = mail("I am away", Message_ID="<auto@example.com>")
    desk.customer_writes(b"Return-Path: <>\r\n" + auto.as_bytes(policy=auto.policy.clone(linesep="\r\n")))
    fetcher = desk.fetcher()
    try:
        assert (await fetcher.fetch_new())["accepted"] == 1
    finally:
        await fetcher.close()
    [contact] = await desk.contacts()
    assert contact.metadata.get("auto_submitted") == "1"  # never answered automatically


async def test_the_imap_process_takes_in_new_mail_as_idle_reports_it(desk: Desk) -> None:
    stop = asyncio.Event()
    process = asyncio.create_task(imap_worker.run(desk.world.store, desk.world.deployment, desk.settings, stop))
    try:
        for _ in range(100):  # connected and idling
            await asyncio.sleep(0.05)
        await asyncio.to_thread(desk.customer_writes, mail("Arrived while idling", Message_ID="<idle@example.com>"))
        for _ in range(200):
            if await desk.contacts():
                break
            await asyncio.sleep(0.05)
        [contact] = await desk.contacts()
        assert contact.body.strip() == "Arrived while idling"
    finally:
        stop.set()
        await asyncio.wait_for(process, timeout=15)


async def test_a_wrong_password_is_retried_and_never_logged(desk: Desk, caplog: pytest.LogCaptureFixture) -> None:
    wrong = deployment(tenants(desk.server.port))
    wrong = resolve_secrets(wrong, {"ACME_IMAP_PASSWORD": "not-the-password"})
    [fetcher] = imap_worker.fetchers(desk.world.store, wrong, desk.settings)
    stop = asyncio.Event()
    task = asyncio.create_task(fetcher.run(stop))
    for _ in range(100):
        if "login refused" in caplog.text:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, timeout=15)
    assert "login refused (check the user and ACME_IMAP_PASSWORD)" in caplog.text
    assert "not-the-password" not in caplog.text


def test_the_mailbox_password_comes_from_the_environment_only() -> None:
    with pytest.raises(ConfigError, match=r"email\.imap\.password_env`: environment variable ACME_IMAP_PASSWORD"):
        resolve_secrets(deployment(tenants(143)), {})
    with pytest.raises(ConfigError, match="secrets never go in the file"):
        deployment(tenants(143).replace('tls = "none"', 'tls = "none"\npassword = "hunter2"'))
    mailbox = resolve_secrets(deployment(tenants(0)), {"ACME_IMAP_PASSWORD": "p"}).tenants[0].email.imap
    assert (mailbox.password, mailbox.server_port, mailbox.folder) == ("p", 143, "INBOX")
    assert imap.mailbox_id(mailbox) == imap.mailbox_id(mailbox) and len(imap.mailbox_id(mailbox)) == 16


@pytest.fixture(scope="module")
def tls_dovecot(certificate: Certificate) -> Iterator[tuple[DovecotServer, Path]]:
    """Dovecot with the SMTP tests' self-signed certificate for 127.0.0.1: implicit TLS and STARTTLS."""
    try:
        server = DovecotServer({USER: PASSWORD}, certificate=(certificate.cert, certificate.key))
    except DovecotMissing as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {exc}: the IMAP tests must run in CI", pytrace=False)
        pytest.skip(f"IMAP test needs Dovecot: {exc}")
    with server:
        yield server, certificate.cert


def over_tls(port: int, tls: str, ca_file: str) -> str:
    return tenants(port).replace('tls = "none"', f'tls = "{tls}"\nca_file = "{ca_file}"')


@pytest.mark.parametrize("tls", ["tls", "starttls"])
async def test_a_mailbox_is_fetched_over_verified_tls(
    tls_dovecot: tuple[DovecotServer, Path], tls: str, tmp_path: Path
) -> None:
    server, ca = tls_dovecot
    empty_mailbox(server)
    port = server.tls_port if tls == "tls" else server.port
    the_world = await world(over_tls(port, tls, str(ca)), env={"ACME_IMAP_PASSWORD": PASSWORD})
    desk = Desk(the_world, server, Settings(attachment_dir=str(tmp_path), smtp_max_bytes=MAX_BYTES))
    try:
        desk.customer_writes(mail("Over TLS", Message_ID=f"<{tls}@example.com>"))
        fetcher = desk.fetcher()
        try:
            assert (await fetcher.fetch_new())["accepted"] == 1
        finally:
            await fetcher.close()
        assert [c.provider_id for c in await desk.contacts()] == [f"{tls}@example.com"]
    finally:
        await the_world.store.close()


async def test_an_untrusted_certificate_is_never_sent_the_password(
    tls_dovecot: tuple[DovecotServer, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server, _ca = tls_dovecot
    the_world = await world(over_tls(server.tls_port, "tls", ""), env={"ACME_IMAP_PASSWORD": PASSWORD})
    try:
        [fetcher] = imap_worker.fetchers(the_world.store, the_world.deployment, Settings(attachment_dir=str(tmp_path)))
        logins = server.log().count("Login: user=")
        stop = asyncio.Event()
        task = asyncio.create_task(fetcher.run(stop))
        for _ in range(100):
            if "CERTIFICATE_VERIFY_FAILED" in caplog.text:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, timeout=15)
        assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
        assert server.log().count("Login: user=") == logins  # the server never saw a login
    finally:
        await the_world.store.close()


async def test_a_second_imap_process_stands_by_and_takes_over_when_the_first_stops(desk: Desk) -> None:
    def fetcher(owner: str) -> MailboxFetcher:
        settings = msgspec.structs.replace(desk.settings, consumer=owner)
        [one] = imap_worker.fetchers(desk.world.store, desk.world.deployment, settings)
        return one

    first, second = fetcher("imap-a"), fetcher("imap-b")
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    running_first = asyncio.create_task(first.run(stop_first))
    for _ in range(100):
        if first.client is not None:
            break
        await asyncio.sleep(0.05)
    running_second = asyncio.create_task(second.run(stop_second))
    try:
        await asyncio.sleep(1)
        assert first.client is not None and second.client is None  # standing by: not even connected
        stop_first.set()
        await asyncio.wait_for(running_first, timeout=15)  # hands the lease over as it stops
        await asyncio.to_thread(desk.customer_writes, mail("After the hand-over", Message_ID="<h1@example.com>"))
        for _ in range(400):  # the standby looks again within a quarter of the lease
            if await desk.contacts():
                break
            await asyncio.sleep(0.05)
        [contact] = await desk.contacts()
        assert contact.provider_id == "h1@example.com" and second.client is not None
    finally:
        stop_first.set()
        stop_second.set()
        await asyncio.wait_for(asyncio.gather(running_first, running_second), timeout=15)


def test_config_check_warns_of_a_mailbox_fetched_in_the_clear_over_the_network() -> None:
    from router.config import warnings_of

    remote = resolve_secrets(
        deployment(tenants(143).replace("127.0.0.1", "imap.example.net")), {"ACME_IMAP_PASSWORD": "p"}
    )
    [warning] = warnings_of(remote)
    assert "email.imap.tls is none" in warning and "imap.example.net in the clear" in warning
    assert warnings_of(resolve_secrets(deployment(tenants(143)), {"ACME_IMAP_PASSWORD": "p"})) == []  # loopback


def test_the_envelope_sender_is_the_return_path_else_the_from_address() -> None:
    assert imap.envelope_sender(b"Return-Path: <bounces@list.example>\r\nFrom: Jane <jane@example.com>\r\n\r\nhi") == (
        "bounces@list.example"
    )
    assert imap.envelope_sender(b"Return-Path: <>\r\nFrom: jane@example.com\r\n\r\nhi") == ""  # a null return path
    assert imap.envelope_sender(b"From: Jane <jane@example.com>\r\n\r\nhi") == "jane@example.com"
    assert imap.envelope_sender(b"Subject: nobody\r\n\r\nhi") == ""
