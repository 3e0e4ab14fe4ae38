"""Inbound Telegram through the webhook, as a specification: Telegram (played by
a test client) posts updates to POST /telegram/{tenant}; files are fetched by the
real python-telegram-bot client from a local server that speaks the Bot API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from redis.exceptions import ConnectionError as RedisConnectionError

from channels.telegram import deeplinks, reachability
from channels.telegram.webhook import SECRET_HEADER
from router import bus, events
from router.app.web import application
from router.attachments import AttachmentStore
from router.customers import find, identity
from router.keys import Keys
from router.settings import Settings
from tests.channels import telegram_api
from tests.channels.telegram_api import TelegramApi
from tests.factories import World, read_inbound, route_entries, world

TOKEN = "7000000001:AAHacmeTestToken-0123456789abcdefghi"
SECRET = "acme-webhook-secret_0123456789"
LINK_KEY = "acme-link-key-0123456789abcdef"
ENV = {
    "ACME_TELEGRAM_TOKEN": TOKEN,
    "ACME_TELEGRAM_SECRET": SECRET,
    "ACME_TELEGRAM_LINK_KEY": LINK_KEY,
    "GLOBEX_TELEGRAM_TOKEN": "7000000002:AAHglobexTestToken-0123456789abcdefgh",
    "HOOLI_TELEGRAM_TOKEN": "7000000003:AAHhooliTestToken-0123456789abcdefghij",
    "HOOLI_TELEGRAM_SECRET": "hooli-webhook-secret_0123456789",
}
CHAT = 4242

# acme's and hooli's bots take webhooks; globex's bot polls; initech has no bot at all.
TENANTS = """
[[tenants]]
id = "acme"
entry = { default = "support" }
[tenants.telegram]
token_env = "ACME_TELEGRAM_TOKEN"
secret_env = "ACME_TELEGRAM_SECRET"
link_key_env = "ACME_TELEGRAM_LINK_KEY"
start_queues = { pay = "billing" }
[[tenants.queues]]
id = "support"
[[tenants.queues]]
id = "billing"
[[tenants.agents]]
id = "amy"

[[tenants]]
id = "globex"
telegram = { token_env = "GLOBEX_TELEGRAM_TOKEN", mode = "polling" }
[[tenants.queues]]
id = "sales"

[[tenants]]
id = "initech"
[[tenants.queues]]
id = "desk"

[[tenants]]
id = "hooli"
telegram = { token_env = "HOOLI_TELEGRAM_TOKEN", secret_env = "HOOLI_TELEGRAM_SECRET" }
[[tenants.queues]]
id = "desk"
"""


@dataclass
class Telegram:
    """Plays Telegram: posts updates to the web process's webhook with the bot's secret."""

    client: TestClient
    world: World
    api: TelegramApi
    files: AttachmentStore

    async def post(self, update: dict, *, secret: str | None = SECRET, tenant: str = "acme") -> ClientResponse:
        headers = {SECRET_HEADER: secret} if secret is not None else {}
        return await self.client.post(f"/telegram/{tenant}", json=update, headers=headers)

    async def inbound(self, tenant: str = "acme") -> list[events.InboundContact]:
        rows = await self.world.store.redis.xrange(Keys(tenant).inbound)
        return [events.decode_inbound(fields[b"e"]) for _id, fields in rows]


@pytest.fixture
async def telegram(tmp_path: Path) -> AsyncIterator[Telegram]:
    w = await world(TENANTS, ENV)
    async with TelegramApi(TOKEN) as api:
        settings = Settings(telegram_api_base=api.url, attachment_dir=str(tmp_path / "files"))
        async with TestClient(TestServer(application(w.store, w.deployment, settings))) as client:
            yield Telegram(client, w, api, AttachmentStore(settings.attachment_dir))


async def test_a_text_with_the_right_secret_becomes_one_contact_before_telegram_gets_200(telegram):
    response = await telegram.post(telegram.api.push(telegram_api.message(text="My meter is broken")))
    assert response.status == 200
    [contact] = await telegram.inbound()
    assert (contact.channel, contact.address, contact.body) == ("telegram", str(CHAT), "My meter is broken")
    assert contact.provider_id == f"{CHAT}:17"
    assert contact.metadata["telegram_username"] == "janed"
    assert contact.metadata["telegram_name"] == "Jane Doe"
    assert contact.name == "Jane Doe"  # what the desk calls her
    conversation = await telegram.world.deliver(contact)
    assert (await telegram.world.conversation(conversation))["channel"] == "telegram"
    customer = await find(telegram.world.store, "acme", identity("telegram", str(CHAT)))
    assert customer is not None


@pytest.mark.parametrize("secret", [None, "", "wrong-secret", SECRET + "x", "ünïcode"])
async def test_a_webhook_without_the_right_secret_is_refused_403_and_stores_nothing(telegram, secret):
    response = await telegram.post(telegram_api.message(text="forged") | {"update_id": 1}, secret=secret)
    assert response.status == 403
    assert await telegram.inbound() == []
    assert await telegram.world.store.redis.exists(Keys("acme").telegram_updates("7000000001")) == 0


async def test_another_tenants_secret_does_not_open_this_tenants_webhook(telegram):
    update = telegram_api.message(text="hi") | {"update_id": 1}
    assert (await telegram.post(update, tenant="hooli")).status == 403  # acme's secret
    assert (await telegram.post(update, secret=ENV["HOOLI_TELEGRAM_SECRET"])).status == 403
    # globex polls: it takes no webhooks at all; initech has no bot; nobody is "umbrella".
    for tenant in ("globex", "initech", "umbrella"):
        assert (await telegram.post(update, tenant=tenant)).status == 404
    for tenant in ("acme", "hooli", "globex", "initech"):
        assert await telegram.inbound(tenant) == []
    assert (await telegram.post(update, secret=ENV["HOOLI_TELEGRAM_SECRET"], tenant="hooli")).status == 200
    assert [c.body for c in await telegram.inbound("hooli")] == ["hi"] and await telegram.inbound() == []


async def test_a_redelivered_update_is_one_contact_whatever_came_in_between(telegram):
    first = telegram.api.push(telegram_api.message(message_id=1, text="first"))
    second = telegram.api.push(telegram_api.message(message_id=2, text="second"))
    # Telegram retries the first after the second arrived: lower than the last update_id,
    # yet new to us would be wrong; it is dropped because it is in the set.
    for update in (first, second, first, second):
        assert (await telegram.post(update)).status == 200
    assert [c.body for c in await telegram.inbound()] == ["first", "second"]
    # An update lower than any seen but never stored is no duplicate: it is taken.
    late = telegram_api.message(message_id=3, text="late") | {"update_id": first["update_id"] - 10}
    assert (await telegram.post(late)).status == 200
    assert [c.body for c in await telegram.inbound()] == ["first", "second", "late"]


async def test_an_inbound_photo_is_downloaded_in_its_largest_size_into_the_attachment_store(telegram):
    picture = b"\xff\xd8\xff\xe0 a jpeg of a broken meter" * 100
    sizes = telegram_api.photo_sizes(telegram.api, picture)
    update = telegram.api.push(telegram_api.message(photo=sizes, caption="See the display"))
    assert (await telegram.post(update)).status == 200
    [contact] = await telegram.inbound()
    assert contact.body == "See the display"
    [attachment] = contact.attachments
    assert attachment.url.startswith("store:")
    assert (attachment.content_type, attachment.size) == ("image/jpeg", len(picture))
    assert telegram.files.read(attachment.url) == picture
    assert telegram.api.downloads == ["photos/file_1280.jpg"]  # only the largest was fetched
    [get_file] = [c for c in telegram.api.calls if c.method == "getFile"]
    assert get_file.params["file_id"] == sizes[-1]["file_id"] and get_file.token == TOKEN


async def test_documents_and_voice_notes_become_stored_attachments(telegram):
    pdf_id, pdf_unique = telegram.api.add_file(b"%PDF-1.7 an invoice", "documents/file_9.pdf")
    document = {
        "file_id": pdf_id,
        "file_unique_id": pdf_unique,
        "file_name": "invoice.pdf",
        "mime_type": "application/pdf",
        "file_size": 19,
    }
    ogg_id, ogg_unique = telegram.api.add_file(b"OggS voice", "voice/file_3.oga")
    voice = {"file_id": ogg_id, "file_unique_id": ogg_unique, "duration": 7, "mime_type": "audio/ogg", "file_size": 10}
    await telegram.post(telegram.api.push(telegram_api.message(message_id=1, document=document)))
    await telegram.post(telegram.api.push(telegram_api.message(message_id=2, voice=voice)))
    doc_contact, voice_contact = await telegram.inbound()
    [pdf] = doc_contact.attachments
    assert (pdf.filename, pdf.content_type) == ("invoice.pdf", "application/pdf")
    assert telegram.files.read(pdf.url) == b"%PDF-1.7 an invoice"
    [note] = voice_contact.attachments
    assert note.content_type == "audio/ogg" and telegram.files.read(note.url) == b"OggS voice"
    assert voice_contact.metadata["voice_seconds"] == "7"


async def test_a_file_over_the_cap_is_kept_as_a_telegram_reference_and_noted(telegram):
    big = {
        "file_id": "BQACAgIAAxkBAAIbig",
        "file_unique_id": "AgADbig",
        "file_name": "scan.tiff",
        "mime_type": "image/tiff",
        "file_size": 30 * 1024 * 1024,
    }
    await telegram.post(telegram.api.push(telegram_api.message(document=big, caption="my scan")))
    [contact] = await telegram.inbound()
    [attachment] = contact.attachments
    assert attachment.url == "telegram:BQACAgIAAxkBAAIbig" and attachment.size == 30 * 1024 * 1024
    assert "over the" in contact.metadata["attachments_left_out"]
    assert telegram.api.downloads == []  # never fetched


async def test_a_shared_contact_becomes_a_readable_message(telegram):
    shared = {"phone_number": "+447700900123", "first_name": "Jane", "last_name": "Doe", "user_id": CHAT}
    await telegram.post(telegram.api.push(telegram_api.message(contact=shared)))
    [contact] = await telegram.inbound()
    assert contact.body == "Shared contact: Jane Doe, +447700900123"
    assert contact.metadata["contact_phone"] == "+447700900123"
    assert contact.metadata["contact_is_sender"] == "yes"


async def test_a_start_deep_link_listed_by_the_tenant_picks_the_queue(telegram):
    await telegram.post(telegram.api.push(telegram_api.message(message_id=1, text="/start pay")))
    await telegram.post(telegram.api.push(telegram_api.message(message_id=2, chat_id=99, text="/start unknown")))
    listed, unlisted = await telegram.inbound()
    assert (listed.queue, listed.metadata["telegram_start"]) == ("billing", "pay")
    assert listed.body == "Started a chat on Telegram"
    assert unlisted.queue == ""  # the tenant's entry queue
    conversation = await telegram.world.deliver(listed)
    assert (await telegram.world.conversation(conversation))["queue"] == "billing"


async def test_a_signed_start_link_joins_the_chat_to_the_customers_history(telegram):
    w = telegram.world
    conversation = await w.arrive(channel="sms", address="+15551230000", body="bill question")
    customer = (await w.conversation(conversation))["customer"]
    payload = deeplinks.customer_payload(w.tenant, customer)
    assert len(payload) <= 64
    await telegram.post(telegram.api.push(telegram_api.message(text=f"/start {payload}")))
    assert await find(w.store, "acme", identity("telegram", str(CHAT))) == customer
    [contact] = [c for c in await telegram.inbound() if c.channel == "telegram"]
    assert (await w.conversation(await w.deliver(contact)))["customer"] == customer


async def test_a_forged_start_link_links_nobody(telegram):
    w = telegram.world
    conversation = await w.arrive(channel="sms", address="+15551230000", body="bill question")
    customer = (await w.conversation(conversation))["customer"]
    forged = f"c{customer}{'A' * 22}"
    await telegram.post(telegram.api.push(telegram_api.message(text=f"/start {forged}")))
    assert await find(w.store, "acme", identity("telegram", str(CHAT))) is None
    [contact] = [c for c in await telegram.inbound() if c.channel == "telegram"]
    assert contact.metadata["telegram_start_forged"] == "yes"


async def test_blocking_the_bot_marks_the_chat_unreachable_and_unblocking_lifts_it(telegram):
    def member_update(old: str, new: str) -> dict:
        chat = {"id": CHAT, "type": "private", "first_name": "Jane"}
        return {
            "my_chat_member": {
                "chat": chat,
                "from": telegram_api.user(CHAT),
                "date": 1_700_000_000,
                "old_chat_member": {"status": old, "user": telegram.api.bot_user(), "until_date": 0},
                "new_chat_member": {"status": new, "user": telegram.api.bot_user(), "until_date": 0},
            }
        }

    store = telegram.world.store
    assert (await telegram.post(telegram.api.push(member_update("member", "kicked")))).status == 200
    assert await reachability.is_unreachable(store, "acme", str(CHAT))
    assert (await telegram.post(telegram.api.push(member_update("kicked", "member")))).status == 200
    assert not await reachability.is_unreachable(store, "acme", str(CHAT))
    opted = await telegram.world.events(events.OptedOut, events.OptedIn)
    assert [(type(e).__name__, e.channel, e.address, e.keyword) for e in opted] == [
        ("OptedOut", "telegram", str(CHAT), "telegram:blocked"),
        ("OptedIn", "telegram", str(CHAT), "telegram:unblocked"),
    ]
    assert await telegram.inbound() == []  # neither is a customer's message


async def test_group_chats_and_edited_messages_are_acknowledged_and_ignored(telegram):
    group = telegram_api.message(text="hello all")
    group["message"]["chat"] = {"id": -100123, "type": "supergroup", "title": "Fans"}
    edited = {"edited_message": telegram_api.message(text="edited")["message"] | {"edit_date": 1_700_000_001}}
    for update in (group, edited):
        assert (await telegram.post(telegram.api.push(update))).status == 200
    assert await telegram.inbound() == []


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"update_id": "7"}', b'{"update_id": 5, "message": 3}'])
async def test_a_malformed_update_is_refused_400_and_stores_nothing(telegram, body):
    response = await telegram.client.post(
        "/telegram/acme", data=body, headers={SECRET_HEADER: SECRET, "Content-Type": "application/json"}
    )
    assert response.status == 400
    assert await telegram.inbound() == []


async def test_a_store_that_is_away_answers_503_so_telegram_retries_and_the_retry_is_stored_once(telegram, monkeypatch):
    update = telegram.api.push(telegram_api.message(text="please call me"))

    async def broken(*args, **kwargs):
        raise RedisConnectionError("store down")

    with monkeypatch.context() as patch:
        patch.setattr(bus, "ingest", broken)
        assert (await telegram.post(update)).status == 503
    assert await telegram.inbound() == []
    assert (await telegram.post(update)).status == 200
    assert (await telegram.post(update)).status == 200
    assert [c.body for c in await telegram.inbound()] == ["please call me"]


async def test_a_contact_with_a_stored_photo_reaches_routing_with_its_reference(telegram):
    sizes = telegram_api.photo_sizes(telegram.api, b"jpeg bytes" * 10)
    await telegram.post(telegram.api.push(telegram_api.message(photo=sizes)))
    [contact] = await telegram.inbound()
    [entry] = await read_inbound(telegram.world.store, "acme")
    assert entry in await route_entries(telegram.world.store, telegram.world.deployment, [entry])
    assert contact.body == "" and contact.attachments[0].url.startswith("store:")


async def test_a_user_who_blocked_the_bot_and_writes_again_can_be_answered_again(telegram):
    store = telegram.world.store
    await reachability.unreachable(store, "acme", str(CHAT), "blocked")
    assert (await telegram.post(telegram.api.push(telegram_api.message(text="I'm back")))).status == 200
    assert not await reachability.is_unreachable(store, "acme", str(CHAT))
    [contact] = await telegram.inbound()
    assert contact.body == "I'm back"


async def test_an_attachment_disk_failure_answers_500_and_the_retry_stores_the_photo(telegram, monkeypatch):
    sizes = telegram_api.photo_sizes(telegram.api, b"jpeg" * 100)
    update = telegram.api.push(telegram_api.message(photo=sizes))

    async def disk_full(self, data: bytes) -> str:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(AttachmentStore, "put", disk_full)
        assert (await telegram.post(update)).status == 500
    assert await telegram.inbound() == []
    assert (await telegram.post(update)).status == 200
    [contact] = await telegram.inbound()
    assert telegram.files.read(contact.attachments[0].url) == b"jpeg" * 100


async def test_a_file_of_unknown_size_is_streamed_and_kept_as_a_reference_once_past_the_cap(tmp_path: Path):
    cap = 1000
    w = await world(TENANTS, ENV)
    sent_past_the_cap, done = asyncio.Event(), asyncio.Event()

    async def get_file_without_a_size(params: dict) -> web.Response:
        # file_size is optional in the Bot API: here Telegram does not say it
        body = {"file_id": params["file_id"], "file_unique_id": "AgADhuge", "file_path": "documents/huge.bin"}
        return web.json_response({"ok": True, "result": body})

    async def endless_download(request: web.Request) -> web.StreamResponse:
        # chunked, no Content-Length: past the cap, then nothing until the client gives up
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"x" * (cap + 1))
        sent_past_the_cap.set()
        await done.wait()  # a client reading it whole would wait here until its read timeout
        return response

    api = TelegramApi(TOKEN)
    api._getFile = get_file_without_a_size
    api._download = endless_download
    huge = {"file_id": "BQACAgIAAxkBAAIhuge", "file_unique_id": "AgADhuge", "file_name": "scan.bin"}
    try:
        async with api:
            settings = Settings(telegram_api_base=api.url, attachment_dir=str(tmp_path), attachment_max_bytes=cap)
            async with TestClient(TestServer(application(w.store, w.deployment, settings))) as client:
                telegram = Telegram(client, w, api, AttachmentStore(settings.attachment_dir))
                assert (await telegram.post(api.push(telegram_api.message(document=huge)))).status == 200
                [contact] = await telegram.inbound()
    finally:
        done.set()
    assert sent_past_the_cap.is_set()
    [attachment] = contact.attachments
    assert attachment.url == "telegram:BQACAgIAAxkBAAIhuge"
    assert "over the 1000-byte cap (size not given; stopped there)" in contact.metadata["attachments_left_out"]
    assert await asyncio.to_thread(lambda: list(tmp_path.rglob("*"))) == []  # nothing of it stored
