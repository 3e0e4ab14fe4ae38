"""Telegram's satisfaction survey end to end in the sandbox: the customer writes to the bot
through the webhook, an agent closes the conversation, the timers ask with five rating
buttons (through the real python-telegram-bot client against a local Bot API), and a tap
(a callback query to the webhook) or a typed digit records the rating."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from channels.telegram.outbound import TelegramSender
from channels.telegram.webhook import SECRET_HEADER
from router import agents, events
from router.app.web import application
from router.keys import Keys
from router.settings import Settings
from tests.channels import telegram_api
from tests.channels.telegram_api import TelegramApi
from tests.factories import World, read_inbound, route_entries, world
from workers.dispatch import Dispatcher

TOKEN = "7000000001:AAHacmeTestToken-0123456789abcdefghi"
SECRET = "acme-webhook-secret_0123456789"
CHAT = 4242
TENANTS = """
[[tenants]]
id = "acme"
name = "Acme"
entry = { default = "support" }
telegram = { token_env = "ACME_TELEGRAM_TOKEN", secret_env = "ACME_TELEGRAM_SECRET" }
survey = { channels = ["telegram"] }
[[tenants.queues]]
id = "support"
[[tenants.agents]]
id = "amy"
"""


class Bot:
    """Plays Telegram towards the web process, and the Bot API towards the dispatcher."""

    def __init__(self, client: TestClient, w: World, api: TelegramApi, settings: Settings) -> None:
        self.client, self.world, self.api, self.settings = client, w, api, settings

    async def post(self, update: dict) -> int:
        response = await self.client.post("/telegram/acme", json=self.api.push(update), headers={SECRET_HEADER: SECRET})
        return response.status

    async def route(self) -> None:
        entries = await read_inbound(self.world.store, "acme")
        assert await route_entries(self.world.store, self.world.deployment, entries) == set(entries)

    async def dispatch(self, message: events.OutboundMessage) -> str:
        sender = TelegramSender(self.world.store, self.world.deployment, self.settings)
        try:
            return await Dispatcher(self.world.store, {"telegram": sender}).deliver(message, events.encode(message))
        finally:
            await sender.close()


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Bot]:
    w = await world(TENANTS, {"ACME_TELEGRAM_TOKEN": TOKEN, "ACME_TELEGRAM_SECRET": SECRET})
    async with TelegramApi(TOKEN) as api:
        settings = Settings(telegram_api_base=api.url, attachment_dir=str(tmp_path / "files"))
        async with TestClient(TestServer(application(w.store, w.deployment, settings))) as client:
            yield Bot(client, w, api, settings)


async def surveyed(bot: Bot) -> tuple[str, events.OutboundMessage]:
    """The customer wrote, Amy answered and closed; the survey went out. (conversation, survey)."""
    assert await bot.post(telegram_api.message(text="My meter is broken")) == 200
    await bot.world.available("amy")
    await bot.route()
    conversation = await bot.world.accept_offer("amy")
    await agents.close(bot.world.store, bot.world.tenant, "amy", conversation, "resolved")
    await bot.world.fire("survey:")
    [survey] = [m for m in await bot.world.outgoing() if m.metadata.get("survey")]
    assert await bot.dispatch(survey) == "sent"
    return conversation, survey


async def test_the_survey_has_a_button_per_rating_and_a_tap_records_it(bot):
    conversation, survey = await surveyed(bot)
    [call] = [c for c in bot.api.sent() if c.params.get("reply_markup")]
    assert (call.method, call.params["chat_id"], call.params["text"]) == ("sendMessage", str(CHAT), survey.body)
    [row] = json.loads(call.params["reply_markup"])["inline_keyboard"]
    assert [(b["text"], b["callback_data"]) for b in row] == [(str(n), f"csat:{conversation}:{n}") for n in range(1, 6)]

    assert await bot.post(telegram_api.callback_query(f"csat:{conversation}:4")) == 200
    record = await bot.world.conversation(conversation)
    assert (record["survey"], record["survey_rating"]) == ("rated", "4")
    assert [c.method for c in bot.api.calls if c.method in ("answerCallbackQuery", "editMessageReplyMarkup")] == [
        "answerCallbackQuery",
        "editMessageReplyMarkup",
    ]
    # a second tap (another button, the same update redelivered) changes nothing
    assert await bot.post(telegram_api.callback_query(f"csat:{conversation}:1", query_id="q2")) == 200
    assert (await bot.world.conversation(conversation))["survey_rating"] == "4"
    assert [e.rating for e in await bot.world.events(events.SurveyResult)] == [4]


async def test_a_tap_from_another_chat_or_with_made_up_data_counts_nothing(bot):
    conversation, _survey = await surveyed(bot)
    assert await bot.post(telegram_api.callback_query(f"csat:{conversation}:1", chat_id=5151)) == 200
    assert await bot.post(telegram_api.callback_query(f"csat:{conversation}:9", query_id="q3")) == 200
    assert await bot.post(telegram_api.callback_query("something-else", query_id="q4")) == 200
    assert "survey_rating" not in await bot.world.conversation(conversation)
    assert await bot.world.events(events.SurveyResult) == []


async def test_a_typed_digit_is_the_rating_and_a_sentence_is_a_new_message(bot):
    conversation, _survey = await surveyed(bot)
    assert await bot.post(telegram_api.message(message_id=18, text="5")) == 200
    await bot.route()
    assert (await bot.world.conversation(conversation))["survey_rating"] == "5"
    queued = len(await bot.world.events(events.Queued))
    assert await bot.post(telegram_api.message(message_id=19, text="Thanks, but the meter broke again")) == 200
    await bot.route()
    assert len(await bot.world.events(events.Queued)) == queued + 1
    rows = await bot.world.store.redis.xrange(Keys("acme").inbound)
    assert len(rows) == 3  # every message reached the stream; none was lost
