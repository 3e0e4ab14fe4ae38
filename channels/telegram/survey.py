"""Telegram's satisfaction survey: a button per rating under the question, and the
callback query a tap sends back.

The buttons' data is "csat:<conversation>:<rating>". A Telegram client can send any data
with a callback query, so the data proves nothing by itself: the rating counts only for
the conversation of the customer whose chat tapped it (survey_answer.lua checks the
chat's identity against the conversation's customer). A reply "1".."5" typed instead
takes the routing path like an SMS (router/surveys.py).
"""

from __future__ import annotations

import logging
import re

from telegram import Bot, CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import TelegramError
from telegram.ext import CallbackQueryHandler

from router import surveys
from router.config import Tenant
from router.customers import identity
from router.store import Store

log = logging.getLogger(__name__)

PREFIX = "csat"
PATTERN = re.compile(rf"^{PREFIX}:([A-Za-z0-9._-]{{1,56}}):([1-5])$")  # Telegram allows 64 bytes of data
THANKS = "Thank you for your rating."


async def _unused(_update: Update, _context: object) -> None:
    """The handler matches updates here; receive() acts on them (no telegram.ext Application runs)."""


# python-telegram-bot's own matching of a callback query's data against the pattern
HANDLER = CallbackQueryHandler(_unused, pattern=PATTERN)


def keyboard(conversation: str) -> InlineKeyboardMarkup | None:
    """The five rating buttons of a survey, or None when the conversation's id does not fit."""
    if not PATTERN.match(f"{PREFIX}:{conversation}:1"):
        return None
    row = [InlineKeyboardButton(str(n), callback_data=f"{PREFIX}:{conversation}:{n}") for n in range(1, 6)]
    return InlineKeyboardMarkup([row])


def matches(update: Update) -> bool:
    return update.callback_query is not None and bool(HANDLER.check_update(update))


async def answer(store: Store, tenant: Tenant, bot: Bot, query: CallbackQuery) -> str:
    """A tap on a rating button: recorded for the tapping chat's own conversation, then
    acknowledged to Telegram (the buttons go, a short thank-you shows). Store failures
    propagate, so Telegram delivers the update again; Telegram's own refusals of the
    acknowledgement are logged, the rating stands."""
    found = PATTERN.match(query.data or "")
    message = query.message
    if found is None or message is None or message.chat.type != "private":
        return "ignored"
    conversation, rating = found.group(1), int(found.group(2))
    chat = str(message.chat.id)
    try:
        outcome, _counted = await surveys.rate(
            store, tenant, conversation, rating, channel="telegram", ident=identity("telegram", chat)
        )
    except surveys.SurveyError as exc:  # the tenant asks no surveys (any more)
        outcome = str(exc)
    if outcome not in ("rated", "already"):
        log.info("Telegram rating of %s for %s not recorded: %s", chat, tenant.id, outcome)
    text = THANKS if outcome in ("rated", "already") else "This survey is closed."
    try:
        await bot.answer_callback_query(query.id, text=text)
        await bot.edit_message_reply_markup(chat_id=message.chat.id, message_id=message.message_id, reply_markup=None)
    except TelegramError as exc:
        log.info("Telegram did not take the rating's acknowledgement for %s: %s", tenant.id, exc)
    return "rated" if outcome == "rated" else "ignored"
