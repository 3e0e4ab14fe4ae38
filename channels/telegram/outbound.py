"""Outbound Telegram: through the tenant's bot, or the sandbox outbox for a tenant
without one. Chats that blocked the bot are never sent to.

A message may take several Bot API requests: a body longer than one Telegram
message is split, and each attachment is its own photo or document (a single
attachment carries a short body as its caption). The parts confirmed so far are
recorded after each one, so a retry continues where the last attempt stopped
and no part reaches the customer twice.

Outcomes, as the dispatcher reads them (workers.dispatch): flood control
(RetryAfter) is waited out within a bound, else retried later; a request that
never connected is retried; a request that may have reached Telegram without an
answer is `unknown` and never resent (the Bot API has no idempotency key); a
user who blocked the bot is marked unreachable and the message failed.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass

import httpx
from telegram import Bot, InlineKeyboardMarkup, Message
from telegram.error import BadRequest, ChatMigrated, Forbidden, InvalidToken, NetworkError, RetryAfter, TelegramError

from channels.sandbox import SandboxSender
from channels.telegram import reachability, survey
from channels.telegram.bots import TIMEOUT_S, TelegramBots, period_s, redact
from channels.telegram.inbound import FILE_REF
from channels.transport import (
    OutcomeUnknown,
    PermanentFailure,
    Reconciled,
    Refused,
    TemporaryFailure,
    reconcile_from_record,
)
from router import atomic, events
from router.attachments import AttachmentStore
from router.config import Deployment, Tenant
from router.keys import Keys
from router.settings import Settings
from router.store import Store

log = logging.getLogger(__name__)

TEXT_LIMIT = 4096  # a message's text, in UTF-16 code units
CAPTION_LIMIT = 1024
PHOTO_TYPES = frozenset({"image/jpeg", "image/png", "image/webp"})
PHOTO_MAX_BYTES = 10 * 1024 * 1024  # bigger pictures go as documents
# All waiting for flood control in one send, and the whole send, stay well inside the
# dispatcher's lease (workers.dispatch.SEND_LEASE_MS, 120 s): no part starts after the
# budget, and one request takes at most connect + write + read timeouts (35 s).
MAX_FLOOD_WAIT_S = 30.0
SEND_BUDGET_S = 60.0
# Telegram's words for a chat that can never be answered again (until the user returns).
UNREACHABLE = {"blocked by the user": "blocked", "user is deactivated": "deactivated"}
CHAT_ID = re.compile(r"-?[0-9]{1,20}")
# httpx errors of a request that never left: safe to send again.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(slots=True)
class _Budget:
    """What one send may still spend: time, and waiting for flood control."""

    deadline: float
    flood_waited: float = 0.0


@dataclass(frozen=True, slots=True)
class _Part:
    text: str = ""  # a text message, or the caption of a file
    attachment: events.Attachment | None = None
    buttons: InlineKeyboardMarkup | None = None  # a survey's rating buttons (channels.telegram.survey)


class TelegramSender:
    channel = "telegram"

    def __init__(
        self,
        store: Store,
        deployment: Deployment,
        settings: Settings,
        *,
        timeout_s: float = TIMEOUT_S,
        max_flood_wait_s: float = MAX_FLOOD_WAIT_S,
    ) -> None:
        self.store = store
        self.deployment = deployment
        self.sandbox = SandboxSender(store, self.channel)
        self.bots = TelegramBots(settings, timeout_s=timeout_s)
        self.files = AttachmentStore(settings.attachment_dir, settings.attachment_max_bytes)
        self.max_flood_wait_s = max_flood_wait_s

    async def close(self) -> None:
        await self.bots.close()

    async def send(self, message: events.OutboundMessage) -> str:
        tenant = self.deployment.tenant(message.tenant)
        if tenant.telegram is None or not tenant.telegram.token:
            return await self.sandbox.send(message)
        if not CHAT_ID.fullmatch(message.to):
            raise PermanentFailure(f"{message.to!r} is not a Telegram chat id")
        if await reachability.is_unreachable(self.store, tenant.id, message.to):
            raise Refused(f"Telegram chat {message.to} blocked the bot")
        parts = _parts(message)
        keys = Keys(tenant.id)
        done, first = await self.store.redis.hmget(keys.delivery(message.id), "telegram_parts", "telegram_first")
        done, first = int(done or 0), (first.decode() if first else "")
        budget = _Budget(time.monotonic() + SEND_BUDGET_S)
        try:
            bot = await self.bots.ready(tenant)
        except InvalidToken as exc:  # its message quotes the token: never in a record or an event
            raise PermanentFailure(f"Telegram refused the bot's token: {redact(str(exc), tenant)}") from None
        except TelegramError as exc:  # getMe only: no part of the message was sent
            raise TemporaryFailure(f"Telegram bot not ready: {redact(str(exc), tenant)}") from exc
        for index in range(done, len(parts)):
            if time.monotonic() > budget.deadline:
                raise TemporaryFailure(f"sent {index} of {len(parts)} parts; the rest later")
            message_id = await self._send_part(tenant, bot, message, parts[index], budget)
            first = first or f"{message.to}:{message_id}"
            confirmed: dict[str, str | int] = {"telegram_parts": index + 1, "telegram_first": first}
            if index + 1 == len(parts):
                # written with the last part's confirmation: reconcile trusts it
                confirmed["provider_id"] = first
            async with self.store.redis.pipeline(transaction=True) as pipe:
                pipe.hset(keys.delivery(message.id), mapping=confirmed)
                # nothing is in flight any more: a dispatcher that dies before the next
                # part is reconciled as not sent, and a new attempt sends only the rest
                # (left marked, the parts not yet sent would be `unknown`, never sent)
                pipe.hdel(keys.delivery(message.id), "requested")
                await pipe.execute()
        if done >= len(parts):  # every part was confirmed by an earlier attempt
            await self.store.redis.hset(keys.delivery(message.id), "provider_id", first)
        return first

    async def reconcile(self, message: events.OutboundMessage) -> tuple[Reconciled, str]:
        """After a dispatcher died mid-send: our own record says whether Telegram confirmed
        every part, and the mark before each request whether the last one was asked
        (a new attempt continues after the parts already confirmed)."""
        tenant = self.deployment.tenant(message.tenant)
        if tenant.telegram is None or not tenant.telegram.token:
            return await self.sandbox.reconcile(message)
        return await reconcile_from_record(self.store, message)

    async def _send_part(
        self,
        tenant: Tenant,
        bot: Bot,
        message: events.OutboundMessage,
        part: _Part,
        budget: _Budget,
    ) -> int:
        """One Bot API request (again after flood control, within bounds); Telegram's message id."""
        content = await self._content(part)
        while True:
            await atomic.mark_requested(self.store, message.tenant, message.id)
            try:
                sent = await _request(bot, int(message.to), part, content)
            except RetryAfter as exc:
                await self._not_requested(message)
                wait = period_s(exc, "retry_after")
                if budget.flood_waited + wait > self.max_flood_wait_s or time.monotonic() + wait > budget.deadline:
                    raise TemporaryFailure(f"Telegram flood control: retry in {wait:g} s") from exc
                log.info("Telegram flood control for %s: waiting %g s", tenant.id, wait)
                budget.flood_waited += wait
                await asyncio.sleep(wait)
                continue
            except Forbidden as exc:
                await self._not_requested(message)
                raise await self._forbidden(tenant, message, exc) from exc
            except (BadRequest, ChatMigrated) as exc:  # BadRequest first: it is a NetworkError
                await self._not_requested(message)
                raise PermanentFailure(f"Telegram refused the message: {exc}") from exc
            except InvalidToken as exc:
                await self._not_requested(message)
                raise PermanentFailure(f"Telegram refused the bot's token: {redact(str(exc), tenant)}") from None
            except NetworkError as exc:  # TimedOut included
                detail = redact(f"{type(exc).__name__}: {exc}", tenant)
                if isinstance(exc.__cause__, _NEVER_SENT):
                    await self._not_requested(message)
                    raise TemporaryFailure(f"Telegram unreachable: {detail}") from exc
                raise OutcomeUnknown(f"no answer from Telegram after sending: {detail}") from exc
            except TelegramError as exc:
                raise OutcomeUnknown(f"Telegram answered what we cannot read: {redact(str(exc), tenant)}") from exc
            return sent.message_id

    async def _not_requested(self, message: events.OutboundMessage) -> None:
        """Telegram answered that it sent nothing: a crash now is safe to resend after."""
        await self.store.redis.hdel(Keys(message.tenant).delivery(message.id), "requested")

    async def _forbidden(self, tenant: Tenant, message: events.OutboundMessage, exc: Forbidden) -> PermanentFailure:
        reason = next((why for words, why in UNREACHABLE.items() if words in str(exc).lower()), "")
        if reason:
            await reachability.unreachable(self.store, tenant.id, message.to, reason)
        return PermanentFailure(f"Telegram refused: {exc}")

    async def _content(self, part: _Part) -> str | bytes | None:
        """What a file part sends: stored bytes, a URL Telegram fetches, or a file_id it has."""
        attachment = part.attachment
        if attachment is None:
            return None
        url = attachment.url
        if url.startswith(FILE_REF):
            return url.removeprefix(FILE_REF)
        if url.startswith(("https://", "http://")):
            return url
        try:
            return await asyncio.to_thread(self.files.read, url)
        except (KeyError, OSError) as exc:
            raise PermanentFailure(f"attachment {attachment.filename or url} is not in the store") from exc


async def _request(bot: Bot, chat_id: int, part: _Part, content: str | bytes | None) -> Message:
    attachment = part.attachment
    if attachment is None:
        return await bot.send_message(chat_id, part.text, reply_markup=part.buttons)
    caption = part.text or None
    filename = attachment.filename or None
    small = isinstance(content, str) or len(content or b"") <= PHOTO_MAX_BYTES
    if attachment.content_type in PHOTO_TYPES and small:
        return await bot.send_photo(chat_id, content, caption=caption, filename=filename)
    return await bot.send_document(chat_id, content, caption=caption, filename=filename)


def _parts(message: events.OutboundMessage) -> list[_Part]:
    """The requests a message takes: text chunks, then one per attachment (a lone
    attachment carries a body that fits in a caption)."""
    body = message.body.strip()
    if len(message.attachments) == 1 and _units(body) <= CAPTION_LIMIT:
        return [_Part(text=body, attachment=message.attachments[0])]
    parts = [_Part(text=chunk) for chunk in split_text(body)]
    conversation = message.metadata.get("survey", "")
    if conversation and parts:  # a survey: its rating buttons under its (last) text
        parts[-1] = _Part(text=parts[-1].text, buttons=survey.keyboard(conversation))
    parts += [_Part(attachment=attachment) for attachment in message.attachments]
    if not parts:
        raise PermanentFailure("the message has neither a body nor an attachment")
    return parts


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Text in pieces of at most `limit` UTF-16 code units, cut at a line break or a space
    near the end of each piece when there is one, never inside a character."""
    pieces: list[str] = []
    while text:
        if _units(text) <= limit:
            pieces.append(text)
            break
        end, used = 0, 0
        while used + _units(text[end]) <= limit:
            used += _units(text[end])
            end += 1
        cut = max(text.rfind("\n", 0, end), text.rfind(" ", 0, end))
        if cut > end // 2:
            end = cut + 1
        pieces.append(text[:end].rstrip())
        text = text[end:].lstrip()
    return [piece for piece in pieces if piece]


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2
