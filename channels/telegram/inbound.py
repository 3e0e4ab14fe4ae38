"""Inbound Telegram: one Update (from the webhook or from polling) into its effect.

A private chat's message becomes an InboundContact on the tenant's inbound
stream: text, a photo (its largest size), a document, a voice note, audio or
video (files downloaded through the Bot API into the attachment store and
referenced as "store:<sha256>"), a shared contact or location. `/start PAYLOAD`
deep links pick the queue or link the chat to a customer (channels.telegram.deeplinks).
A user blocking or unblocking the bot (my_chat_member) moves them on or off the
tenant's Telegram suppression list. A tap on a survey's rating button (a callback query)
is recorded as the rating (channels.telegram.survey). Everything else is acknowledged
and ignored.

Each update has its effect once: its update_id is looked up in the set of stored
updates first and added to it only after the effect is durable; the contact's
provider id (chat:message) makes the stream append itself idempotent, so a crash
between the two repeats nothing either.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from telegram import Bot, File, Message, Update
from telegram.constants import ChatMemberStatus, ChatType
from telegram.error import TelegramError

from channels.telegram import dedupe, deeplinks, reachability, survey
from channels.telegram.bots import CONNECT_TIMEOUT_S, TIMEOUT_S, bot_id, config_of, period_s, redact
from router import bus, customers, events
from router.attachments import AttachmentStore, AttachmentTooLarge
from router.config import Tenant
from router.errors import ContactRouterError
from router.keys import Keys
from router.store import Store

log = logging.getLogger(__name__)

# The Bot API lets a bot download files up to 20 MB; a bigger one is kept as a reference.
BOT_API_DOWNLOAD_LIMIT = 20 * 1024 * 1024
FILE_REF = "telegram:"  # an attachment not downloaded: "telegram:<file_id>", fetchable later by the bot

Outcome = Literal["added", "repeated", "duplicate", "ignored", "blocked", "unblocked", "rated"]


class MalformedUpdate(ContactRouterError, ValueError):
    """Not an Update the Bot API would send; nothing of it is stored."""


def parse(data: Any, bot: Bot) -> Update:
    """An update's JSON (the webhook's body) as python-telegram-bot's Update."""
    if not isinstance(data, dict) or type(data.get("update_id")) is not int:
        raise MalformedUpdate("an update is a JSON object with an integer update_id")
    try:
        return Update.de_json(data, bot)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:  # the shape python-telegram-bot expects
        raise MalformedUpdate(f"update {data['update_id']}: {type(exc).__name__}: {exc}") from None


async def receive(store: Store, tenant: Tenant, bot: Bot, files: AttachmentStore, update: Update) -> Outcome:
    """Give one update its effect, once. Store failures (RedisError, OSError) propagate
    before the update is remembered, so the caller has Telegram deliver it again."""
    bid = bot_id(config_of(tenant).token)
    if await dedupe.seen(store, tenant.id, bid, update.update_id):
        log.info("Telegram update %d for %s was already stored", update.update_id, tenant.id)
        return "duplicate"
    outcome = await _act(store, tenant, bot, files, update)
    await dedupe.remember(store, tenant.id, bid, update.update_id)
    return outcome


async def _act(store: Store, tenant: Tenant, bot: Bot, files: AttachmentStore, update: Update) -> Outcome:
    member = update.my_chat_member
    if member is not None and member.chat.type == ChatType.PRIVATE:
        chat, provider_id = str(member.chat.id), f"update:{update.update_id}"
        if member.new_chat_member.status == ChatMemberStatus.BANNED:  # "kicked": the user blocked the bot
            await reachability.unreachable(store, tenant.id, chat, "blocked", provider_id)
            return "blocked"
        if member.new_chat_member.status == ChatMemberStatus.MEMBER:
            await reachability.reachable(store, tenant.id, chat, "unblocked", provider_id)
            return "unblocked"
        return "ignored"
    if update.callback_query is not None:
        if survey.matches(update):
            return await survey.answer(store, tenant, bot, update.callback_query)  # type: ignore[return-value]
        return "ignored"
    message = update.message
    if message is None or message.chat.type != ChatType.PRIVATE or message.from_user is None:
        return "ignored"  # edits, groups, channels, callback queries: not a customer's contact
    if message.from_user.is_bot:
        return "ignored"
    contact = await normalise(tenant, bot, files, message)
    chat = contact.address
    # The user wrote to the bot: whatever blocked it before, they can be answered now.
    await reachability.reachable(store, tenant.id, chat, "wrote", contact.provider_id)
    customer = contact.metadata.get("telegram_start_customer")
    if customer:
        await _link(store, tenant, customer, chat)
    added, entry_id = await bus.ingest(store, contact)
    if not added:
        log.info("Telegram message %s for %s was already on the stream (%s)", contact.provider_id, tenant.id, entry_id)
    return "added" if added else "repeated"


async def _link(store: Store, tenant: Tenant, customer: str, chat: str) -> None:
    """A signed deep link names the customer: the chat joins their identities."""
    if not await store.redis.exists(Keys(tenant.id).customer(customer)):
        log.warning("Telegram deep link for %s names unknown customer %s; not linked", tenant.id, customer)
        return
    previous = await customers.link(store, tenant.id, customer, customers.identity("telegram", chat))
    log.info("Telegram chat %s of %s linked to customer %s (was %s)", chat, tenant.id, customer, previous or "none")


@dataclass
class _Parts:
    body: list[str] = field(default_factory=list)
    attachments: list[events.Attachment] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    queue: str = ""


async def normalise(tenant: Tenant, bot: Bot, files: AttachmentStore, message: Message) -> events.InboundContact:
    """A private chat's message as the contact every adapter makes (files downloaded)."""
    parts = _Parts()
    user = message.from_user
    if user is not None:
        parts.metadata["telegram_name"] = user.full_name
        if user.username:
            parts.metadata["telegram_username"] = user.username
        if user.language_code:
            parts.metadata["language"] = user.language_code
    text = message.text or message.caption or ""
    payload = deeplinks.parse_start(message.text or "")
    if payload is not None:
        _start(tenant, payload, parts)
    elif text:
        parts.body.append(text)
    await _files(tenant, bot, files, message, parts)
    if message.contact is not None:
        shared = message.contact
        name = " ".join(filter(None, [shared.first_name, shared.last_name]))
        parts.body.append(f"Shared contact: {name}, {shared.phone_number}")
        parts.metadata["contact_name"] = name
        parts.metadata["contact_phone"] = shared.phone_number
        # Telegram fills user_id with the account the number belongs to: equal to the
        # sender's own id, it is the sender's own number as Telegram knows it.
        parts.metadata["contact_is_sender"] = "yes" if user is not None and shared.user_id == user.id else "no"
    if message.location is not None:
        where = message.location
        parts.body.append(f"Shared location: {where.latitude:.6f}, {where.longitude:.6f}")
        parts.metadata["latitude"], parts.metadata["longitude"] = f"{where.latitude:.6f}", f"{where.longitude:.6f}"
    if message.sticker is not None:
        parts.body.append(message.sticker.emoji or "(a sticker)")
    if not parts.body and not parts.attachments:
        parts.body.append("(a kind of Telegram message this inbox cannot show)")
    try:
        return events.build(
            events.InboundContact,
            {
                "id": events.new_id(),
                "tenant": tenant.id,
                "channel": "telegram",
                "address": str(message.chat.id),
                "name": user.full_name if user is not None else "",
                "provider_id": f"{message.chat.id}:{message.message_id}",
                "occurred_at": int(message.date.timestamp() * 1000),
                "body": "\n".join(parts.body),
                "attachments": parts.attachments,
                "queue": parts.queue,
                "metadata": parts.metadata,
            },
        )
    except events.InvalidEvent as exc:
        raise MalformedUpdate(str(exc)) from None


def _start(tenant: Tenant, payload: str, parts: _Parts) -> None:
    start = deeplinks.resolve(tenant, payload)
    parts.body.append("Started a chat on Telegram")
    if start.payload:
        parts.metadata["telegram_start"] = start.payload
    if start.queue:
        parts.queue = start.queue
    if start.customer:
        parts.metadata["telegram_start_customer"] = start.customer
    if start.forged:
        log.warning("Telegram /start for %s carried a customer link with a bad signature; ignored", tenant.id)
        parts.metadata["telegram_start_forged"] = "yes"


async def _files(tenant: Tenant, bot: Bot, files: AttachmentStore, message: Message, parts: _Parts) -> None:
    """Download the message's file, if it has one, into the attachment store."""
    if message.photo:
        # Telegram sends each photo in several sizes; the agent gets the largest.
        photo = max(message.photo, key=lambda size: size.width * size.height)
        found = (photo.file_id, photo.file_size, "image/jpeg", f"photo-{photo.file_unique_id}.jpg")
    elif message.document is not None:
        doc = message.document
        found = (doc.file_id, doc.file_size, doc.mime_type, doc.file_name or f"document-{doc.file_unique_id}")
    elif message.voice is not None:
        voice = message.voice
        found = (voice.file_id, voice.file_size, voice.mime_type or "audio/ogg", f"voice-{voice.file_unique_id}.ogg")
        parts.metadata["voice_seconds"] = str(int(period_s(voice, "duration")))
    elif message.audio is not None:
        audio = message.audio
        found = (audio.file_id, audio.file_size, audio.mime_type, audio.file_name or f"audio-{audio.file_unique_id}")
    elif message.video is not None:
        video = message.video
        found = (video.file_id, video.file_size, video.mime_type or "video/mp4", video.file_name or "video.mp4")
    elif message.video_note is not None:
        note = message.video_note
        found = (note.file_id, note.file_size, "video/mp4", f"video-note-{note.file_unique_id}.mp4")
    else:
        return
    file_id, size, content_type, filename = found
    content_type = content_type or "application/octet-stream"
    parts.attachments.append(await _download(tenant, bot, files, file_id, size or 0, content_type, filename, parts))


async def _download(
    tenant: Tenant,
    bot: Bot,
    files: AttachmentStore,
    file_id: str,
    size: int,
    content_type: str,
    filename: str,
    parts: _Parts,
) -> events.Attachment:
    """The file in the attachment store; a file over the cap, or one Telegram would not
    hand over, is kept as a "telegram:<file_id>" reference and noted for the agent."""
    cap = min(files.max_bytes, BOT_API_DOWNLOAD_LIMIT)
    reference = events.Attachment(url=FILE_REF + file_id, content_type=content_type, filename=filename, size=size)
    if size > cap:
        return _left_out(parts, reference, f"{filename}: {size} bytes is over the {cap}-byte cap")
    try:
        file = await bot.get_file(file_id)
        if (file.file_size or 0) > cap:
            return _left_out(parts, reference, f"{filename}: {file.file_size} bytes is over the {cap}-byte cap")
        data = await fetch(file, cap)
        if data is None:
            return _left_out(parts, reference, f"{filename}: over the {cap}-byte cap (size not given; stopped there)")
        ref = await files.put(data)  # OSError (disk full) propagates: the update is retried
    except AttachmentTooLarge as exc:
        return _left_out(parts, reference, f"{filename}: {exc}")
    except (TelegramError, httpx.HTTPError) as exc:
        log.warning("Telegram file of %s not downloaded: %s", tenant.id, redact(f"{type(exc).__name__}: {exc}", tenant))
        return _left_out(parts, reference, f"{filename}: not downloaded ({type(exc).__name__})")
    return events.Attachment(url=ref, content_type=content_type, filename=filename, size=len(data))


async def fetch(file: File, cap: int) -> bytes | None:
    """The file's bytes, or None once it passes `cap` bytes. Streamed: a file whose size
    Telegram did not say (file_size is optional) would otherwise be read whole into
    memory (python-telegram-bot's download_* methods do) before any cap could apply.
    Raises httpx.HTTPError."""
    if not file.file_path:
        raise TelegramError("Telegram gave no file_path to download the file from")
    timeout = httpx.Timeout(TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
    # file_path is the whole URL, with the bot's token in it: never logged (see bots.redact)
    async with httpx.AsyncClient(timeout=timeout) as client, client.stream("GET", file.file_path) as response:
        response.raise_for_status()
        if int(response.headers.get("content-length") or 0) > cap:
            return None
        data = bytearray()
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) > cap:
                return None  # leaving the block closes the connection: the rest is never read
    return bytes(data)


def _left_out(parts: _Parts, reference: events.Attachment, why: str) -> events.Attachment:
    notes = parts.metadata.get("attachments_left_out", "")
    parts.metadata["attachments_left_out"] = f"{notes}; {why}" if notes else why
    return reference
