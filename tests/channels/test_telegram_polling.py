"""The `telegram` process: long polling for bots Telegram cannot reach by webhook,
with the real python-telegram-bot client against a local Bot API server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from channels.telegram import polling
from channels.telegram.bots import TelegramBots
from channels.telegram.polling import Poller
from router import bus, events
from router.attachments import AttachmentStore
from router.keys import Keys
from router.settings import Settings
from tests.channels import telegram_api
from tests.channels.telegram_api import TelegramApi
from tests.factories import World, world

TOKEN = "7000000001:AAHacmeTestToken-0123456789abcdefghi"

TENANTS = """
[[tenants]]
id = "acme"
telegram = { token_env = "ACME_TELEGRAM_TOKEN", mode = "polling" }
[[tenants.queues]]
id = "support"

[[tenants]]
id = "globex"
telegram = { token_env = "GLOBEX_TELEGRAM_TOKEN", secret_env = "GLOBEX_TELEGRAM_SECRET" }
[[tenants.queues]]
id = "sales"
"""
ENV = {
    "ACME_TELEGRAM_TOKEN": TOKEN,
    "GLOBEX_TELEGRAM_TOKEN": "7000000002:AAHglobexTestToken-0123456789abcdefgh",
    "GLOBEX_TELEGRAM_SECRET": "globex-secret",
}


@pytest.fixture
async def api():
    async with TelegramApi(TOKEN) as server:
        yield server


@pytest.fixture
async def w() -> World:
    return await world(TENANTS, ENV)


@pytest.fixture
async def make_poller(api: TelegramApi, w: World, tmp_path: Path):
    bots = TelegramBots(Settings(telegram_api_base=api.url))
    files = AttachmentStore(tmp_path / "files")

    def make(owner: str = "telegram-1") -> Poller:
        return Poller(w.store, w.tenant, bots.bot(w.tenant), files, owner, poll_timeout_s=0)

    yield make
    await bots.close()


async def bodies(w: World) -> list[str]:
    rows = await w.store.redis.xrange(Keys("acme").inbound)
    return [events.decode_inbound(fields[b"e"]).body for _id, fields in rows]


async def test_polled_updates_are_stored_once_and_only_then_confirmed_to_telegram(api, w, make_poller):
    first = api.push(telegram_api.message(message_id=1, text="hello"))
    api.push(telegram_api.message(message_id=2, text="anyone there?"))
    poller = make_poller()
    assert await poller.poll_once() == 2
    assert await bodies(w) == ["hello", "anyone there?"]
    assert api.pending() == [first["update_id"], first["update_id"] + 1]  # Telegram still keeps them
    assert await poller.poll_once() == 0  # this poll's offset confirmed both
    assert api.pending() == []
    assert await bodies(w) == ["hello", "anyone there?"]


async def test_a_store_failure_never_moves_the_offset_past_the_update_that_was_not_stored(
    api, w, make_poller, monkeypatch
):
    for number in (1, 2, 3):
        api.push(telegram_api.message(message_id=number, text=f"message {number}"))
    [first, second, _third] = api.pending()
    poller = make_poller()
    real_ingest = bus.ingest

    async def failing_on_the_second(store, contact):
        if contact.body == "message 2":
            raise RedisConnectionError("store down")
        return await real_ingest(store, contact)

    with monkeypatch.context() as patch:
        patch.setattr(bus, "ingest", failing_on_the_second)
        with pytest.raises(RedisConnectionError):
            await poller.poll_once()
    assert poller.offset == first + 1  # the second was not stored: Telegram must keep it
    assert await poller.poll_once() == 2
    assert api.pending()[0] == second  # confirmed only by the next poll
    await poller.poll_once()
    assert api.pending() == []
    assert await bodies(w) == ["message 1", "message 2", "message 3"]


async def test_a_restarted_poller_drops_the_updates_it_had_stored_but_not_confirmed(api, w, make_poller):
    api.push(telegram_api.message(text="only once"))
    assert await make_poller().poll_once() == 1
    # The process died before its next poll confirmed the update: Telegram sends it again.
    assert await make_poller().poll_once() == 1
    assert await bodies(w) == ["only once"]
    [update_id] = api.pending()
    assert await w.store.redis.zscore(Keys("acme").telegram_updates("7000000001"), str(update_id)) is not None


async def test_one_process_at_a_time_polls_a_bot(w, make_poller):
    first, second = make_poller("telegram-a"), make_poller("telegram-b")
    assert await first.hold_lease()
    assert not await second.hold_lease()
    assert await first.hold_lease()  # renewing its own lease
    await first.release_lease()
    assert await second.hold_lease()


async def test_the_telegram_role_polls_the_polling_bots_until_stopped(api, w, tmp_path):
    api.webhook = {"url": "https://old.example.com/hook"}  # left over from webhook mode
    settings = Settings(telegram_api_base=api.url, attachment_dir=str(tmp_path / "files"), consumer="telegram-1")
    assert [t.id for t in polling.polling_tenants(w.deployment)] == ["acme"]  # globex takes webhooks
    stop = asyncio.Event()
    role = asyncio.create_task(polling.run(w.store, w.deployment, settings, stop))
    api.push(telegram_api.message(text="polled"))
    for _ in range(200):
        if await bodies(w):
            break
        await asyncio.sleep(0.02)
    assert await bodies(w) == ["polled"]
    assert api.webhook == {}  # deleted, keeping the pending updates
    stop.set()
    await asyncio.wait_for(role, 5)  # a long poll in progress does not hold the stop
    assert await w.store.redis.exists(Keys("acme").telegram_poller("7000000001")) == 0
