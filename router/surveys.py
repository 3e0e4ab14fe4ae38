"""Satisfaction surveys: after an agent closes a conversation, its customer is asked to
rate it 1-5 on the channel they last wrote from, once.

1. **Planned at the close.** `due_at` decides (the tenant's `[survey]`: the channel asks,
   the disposition counts, the conversation falls in the sampled share) and close.lua sets
   the timer `survey:<conversation>` in the same step as the close.
2. **Sent by the timers worker** (`send_due`): the wording rendered from the tenant's
   templates in the sandbox, then survey_send.lua, which judges the opt-outs, the
   do-not-contact list and the caps, and queues the message at most once.
   - web chat: the widget shows the question with five buttons and a comment box;
   - SMS, Telegram: "reply 1-5" (Telegram also with a button per rating);
   - email: five signed one-click links to the web process's rating page (survey_links).
   Voice is not planned at the close: its keypad survey is asked while the caller is still
   on the line, when the agent hangs up (`ask_on_call`, from channels.voice.survey), through
   the same script, which then queues no message (the call's own TwiML asks).
3. **Answered** (`answer_text` for a text reply on the routing path, `rate` and `comment`
   for the widget, the Telegram buttons and the rating page): survey_answer.lua records the
   first rating, and a comment, on the conversation and in the day's figures of its queue
   and agent, opens a follow-up for a low rating and appends a survey_result event.
   A text that is not a bare rating, or that comes when no survey waits, is routed like any
   other message.

Figures count on the day the survey was sent (the tenant's time zone): sent, answered,
the sum of ratings, the good ones (4 and 5), each rating, comments (ops/satisfaction.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import unicodedata
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2
import msgspec

from router import atomic, events, names, survey_links, templating
from router.config import Tenant
from router.config.survey import Survey
from router.customers import identity, normalise
from router.errors import ContactRouterError
from router.keys import Keys
from router.store import Store, text

log = logging.getLogger(__name__)

TIMER = "survey"  # the timer kind: "survey:<conversation>"
DAY_MS = 86_400_000
CAP_HISTORY_DAYS = 31  # a survey attempt is kept at least this long for the caps
COMMENT_MAX = 1000  # characters of a comment kept
# A bare rating: one digit 1-5 (full-width too, as Chinese and Japanese keyboards type
# it), with at most a full stop or an exclamation mark after it.
_RATING = re.compile(r"^\s*([1-5\uff11-\uff15])\s*[.!\u3002\uff01]?\s*$")
FALLBACK = {
    "sms": "How did we do? Reply with a number from 1 (poor) to 5 (excellent).",
    "telegram": "How did we do? Tap a number from 1 (poor) to 5 (excellent), or reply with one.",
    "webchat": "How did we do? Rate this chat from 1 (poor) to 5 (excellent).",
    "email": "How did we do? Choose a rating from 1 (poor) to 5 (excellent).",
    "voice": "How did we do? Please rate this call on your keypad, from 1 for poor to 5 for excellent.",
}
SUBJECT = "How did we do?"
THANKS = "Thank you for your rating. Goodbye."  # said after a keypad rating (voice.thanks.txt)
CALL_ANSWER_S = 600  # a keypad rating counts this long after the question: the call is short


class SurveyError(ContactRouterError, ValueError):
    """An answer that cannot be recorded (no such survey, a rating out of range); says why."""


# --- 1. planned at the close ---


def sampled(conversation: str, share: float) -> bool:
    """Whether a conversation falls in the sampled share: a digest of its id, so every
    process (and a retried close) decides alike."""
    if share >= 1:
        return True
    digest = int.from_bytes(hashlib.sha256(conversation.encode()).digest()[:8], "big")
    return digest / 2**64 < share


def due_at(tenant: Tenant, record: dict[str, str], disposition: str, now_ms: int) -> str:
    """When the conversation's survey timer comes due (ms, as text), or "" for no survey."""
    survey = tenant.survey
    if survey is None:
        return ""
    channel = record.get("last_channel") or record.get("channel", "")
    if not survey.asks_on(channel) or record.get("kind") == "campaign":
        return ""
    if channel == "voice":  # asked on the call when the agent hung up (ask_on_call), never after
        return ""
    if survey.dispositions and disposition not in survey.dispositions:
        return ""
    if not sampled(record["id"], survey.share):
        return ""
    return str(now_ms + int(survey.delay_seconds * 1000))


# --- 2. sent by the timers worker ---


def local_day(tenant: Tenant, at_ms: int) -> str:
    return dt.datetime.fromtimestamp(at_ms / 1000, ZoneInfo(tenant.timezone)).date().isoformat()


def _template_paths(tenant: str, locale: str, default: str, channel: str) -> list[str]:
    locales = list(dict.fromkeys(filter(None, [locale, locale.split("-")[0], default, "en"])))
    return [
        path for loc in locales for path in (f"surveys/{tenant}/{loc}/{channel}.txt", f"surveys/{loc}/{channel}.txt")
    ]


def wording(tenant: Tenant, channel: str, locale: str, fields: dict[str, str]) -> tuple[str, str]:
    """The survey's (text, email subject) in the customer's locale where the tenant has it,
    else the survey's default locale. The templates are the tenant's, so they run in the
    sandbox; a broken one is logged and the built-in wording goes instead. For voice, the
    second is the thanks said after a rating (voice.thanks.txt beside voice.txt)."""
    survey = tenant.survey or Survey()
    folder = templating.folder()
    env = templating.sandboxed()
    for path in _template_paths(tenant.id, locale.lower(), survey.locale, channel):
        file = folder / path
        if not file.is_file():
            continue
        try:
            body = env.from_string(file.read_text("utf-8")).render(fields).strip()
            if channel == "voice":
                return body, _beside(env, file, "voice.thanks.txt", fields, THANKS)
            return body, _beside(env, file, "email.subject.txt", fields, SUBJECT)
        except jinja2.TemplateError as exc:
            log.warning("survey template %s of %s: %s; the built-in wording goes instead", path, tenant.id, exc)
            break
    return FALLBACK[channel], THANKS if channel == "voice" else SUBJECT


def _beside(env: jinja2.Environment, file: Path, name: str, fields: dict[str, str], default: str) -> str:
    """A one-line companion of a survey's body (an email's subject, a call's thanks): the
    template `name` beside it, else `default`."""
    companion = file.with_name(name)
    if not companion.is_file():
        return default
    return " ".join(env.from_string(companion.read_text("utf-8")).render(fields).split())[:200] or default


async def _locale(store: Store, tenant: Tenant, conversation: str) -> str:
    """The language the customer's channel told us (Telegram's language_code), or ""."""
    for raw in await store.redis.lrange(Keys(tenant.id).conversation_log(conversation), 0, 20):
        language = events.decode_history(raw).metadata.get("language", "")
        if re.fullmatch(r"[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})?", language):
            return language.replace("_", "-")
    return ""


async def _fields(store: Store, tenant: Tenant, record: dict[str, str]) -> dict[str, str]:
    customer = await store.redis.hgetall(Keys(tenant.id).customer(record.get("customer", "")))
    name = names.known_name({k.decode(): v.decode() for k, v in customer.items()})
    agent = next((a for a in tenant.agents if a.id == record.get("agent")), None)
    return {
        "tenant_name": tenant.name or tenant.id,
        "agent_name": (agent.name or agent.id) if agent else "",
        "customer": name,
        "customer_first_name": name.split()[0] if name else "",
    }


async def send_due(store: Store, tenant: Tenant, conversation: str, *, base_url: str) -> str:
    """The survey timer of a conversation came due: ask, at most once. The outcome."""
    keys = Keys(tenant.id)
    raw = await store.redis.hgetall(keys.conversation(conversation))
    record = {k.decode(): v.decode() for k, v in raw.items()}
    survey = tenant.survey
    if not record or survey is None or record.get("survey"):
        await store.redis.zrem(keys.timers, f"{TIMER}:{conversation}")  # nothing (more) to ask
        return text(record.get("survey", "")) or "unknown"
    channel = record.get("last_channel") or record.get("channel", "")
    address = record.get("last_address") or record.get("address", "")
    now = events.now_ms()
    body, subject = wording(
        tenant, channel, await _locale(store, tenant, conversation), await _fields(store, tenant, record)
    )
    metadata = {"survey": conversation}
    if channel == "email":
        for rating, link in (await survey_links.rating_links(store, base_url, tenant.id, conversation)).items():
            metadata[f"survey:rating:{rating}"] = link
    message = events.OutboundMessage(
        id=events.new_id(),
        tenant=tenant.id,
        channel=channel,
        to=address,
        sender=record.get("tenant_address", "") if channel == record.get("last_channel") else "",
        occurred_at=now,
        conversation=conversation,
        body=body,
        subject=subject if channel == "email" else "",
        automatic=True,
        metadata=metadata,
    )
    entry = events.HistoryEntry(
        id=message.id,
        kind="out",
        channel=channel,
        occurred_at=now,
        body=body,
        subject=message.subject,
        address=address,
        metadata={"survey": conversation},
    )
    until = now + int(survey.answer_hours * 3_600_000)
    outcome = await _decide(store, tenant, message, entry, outbound=events.encode(message), answer_until=until)
    log.info("survey of %s/%s on %s: %s", tenant.id, conversation, channel, outcome)
    return outcome


async def _decide(
    store: Store,
    tenant: Tenant,
    message: events.OutboundMessage,
    entry: events.HistoryEntry,
    *,
    outbound: bytes,
    answer_until: int,
    asked: str = "close",
) -> str:
    """survey_send.lua with the channel's caps: whether the survey goes (the outcome)."""
    caps = (tenant.survey or Survey()).caps_on(message.channel)
    cap_days = max([cap.days for cap in caps] + [CAP_HISTORY_DAYS])
    return await atomic.survey_send(
        store,
        tenant.id,
        message.conversation,
        channel=message.channel,
        address=message.to,
        ident=identity(message.channel, message.to),
        scope=tenant.opt_out_scope,
        outbound=outbound,
        entry=msgspec.msgpack.encode(entry),
        message=message.id,
        day=local_day(tenant, message.occurred_at),
        caps=",".join(f"{cap.max}:{int(cap.days * DAY_MS)}" for cap in caps),
        cap_ttl=int(cap_days * DAY_MS),
        answer_until=answer_until,
        asked=asked,
    )


async def ask_on_call(store: Store, tenant: Tenant, conversation: str, *, locale: str) -> tuple[str, str, str]:
    """The agent hung up and the caller is still on the line: whether to ask them for a
    keypad rating now, judged and recorded as a sent survey is (the channel asks, the sampled
    share, the opt-outs, the caps, once per conversation; `dispositions` do not apply, as
    the call is rated before the agent chooses one). (outcome, the question, the thanks):
    "sent" means ask; anything else, hang up."""
    survey = tenant.survey
    keys = Keys(tenant.id)
    raw = await store.redis.hgetall(keys.conversation(conversation))
    record = {k.decode(): v.decode() for k, v in raw.items()}
    if not record or survey is None or not survey.asks_on("voice") or record.get("kind") == "campaign":
        return "not_asked", "", ""
    if record.get("survey"):
        return f"decided:{record['survey']}", "", ""
    if not sampled(conversation, survey.share):
        return "not_sampled", "", ""
    address = record.get("address", "")
    question, thanks = wording(tenant, "voice", locale, await _fields(store, tenant, record))
    now = events.now_ms()
    message = events.OutboundMessage(
        id=events.new_id(),
        tenant=tenant.id,
        channel="voice",
        to=address,
        occurred_at=now,
        conversation=conversation,
        body=question,
        automatic=True,
        metadata={"survey": conversation},
    )
    entry = events.HistoryEntry(
        id=message.id, kind="out", channel="voice", occurred_at=now, body=question, address=address,
        metadata={"survey": conversation},
    )  # fmt: skip
    outcome = await _decide(
        store, tenant, message, entry, outbound=b"", answer_until=now + CALL_ANSWER_S * 1000, asked="call"
    )
    log.info("keypad survey of %s/%s: %s", tenant.id, conversation, outcome)
    return outcome, question, thanks


# --- 3. answered ---


def rating_of(body: str) -> int | None:
    """The rating a text reply gives, if it is a bare 1-5; else None (an ordinary message)."""
    if len(body) > 16:  # every contact of a surveying tenant comes through here: most are longer
        return None
    found = _RATING.match(body)
    return unicodedata.digit(found.group(1)) if found else None


def _answer_entry(channel: str, address: str, body: str, rating: int | None) -> bytes:
    metadata = {"survey_rating": str(rating)} if rating else {"survey_comment": "yes"}
    entry = events.HistoryEntry(
        id=events.new_id(),
        kind="in",
        channel=channel,
        occurred_at=events.now_ms(),
        body=body,
        address=address,
        metadata=metadata,
    )
    return msgspec.msgpack.encode(entry)


async def _survey_day(store: Store, tenant: str, conversation: str) -> str:
    day = await store.redis.hget(Keys(tenant).conversation(conversation), "survey_day")
    return text(day) if day else ""


async def answer_text(
    store: Store, tenant: Tenant, contact: events.InboundContact, *, entry_id: str, group: str, consumer: str
) -> str:
    """A text reply that is a bare rating, from the routing path: recorded (and its inbound
    entry acknowledged) when a survey of theirs waits for it; the outcome. Anything but
    "rated" or "duplicate" means: route it as an ordinary message."""
    rating = rating_of(contact.body)
    if rating is None or tenant.survey is None or contact.kind != "message" or contact.attachments:
        return "none"
    keys = Keys(tenant.id)
    ident = identity(contact.channel, normalise(contact.channel, contact.address))
    customer = await store.redis.hget(keys.identities, ident)
    if customer is None:
        return "none"
    conversation = await store.redis.hget(keys.customer(text(customer)), "survey")
    if conversation is None:
        return "none"
    conversation = text(conversation)
    outcome = "mismatch"
    for _ in range(2):  # the day read here is checked in the script: once more if it moved
        outcome, _rating = await atomic.survey_answer(
            store,
            tenant.id,
            conversation,
            mode="rate",
            ident=ident,
            match="pending",
            rating=rating,
            comment="",
            low=tenant.survey.low_rating,
            day=await _survey_day(store, tenant.id, conversation),
            entry=_answer_entry(contact.channel, contact.address, contact.body, rating),
            group=group,
            consumer=consumer,
            entry_id=entry_id,
        )
        if outcome != "mismatch":
            break
    return outcome


async def rate(
    store: Store,
    tenant: Tenant,
    conversation: str,
    rating: int,
    *,
    channel: str,
    ident: str = "",
    comment: str = "",
) -> tuple[str, int]:
    """Record a rating (and a comment with it) given by a button, the widget or a signed
    link: `ident` is the answering address as an identity, checked to be the conversation's
    customer ("" when a signed link proved it). (outcome, the rating that counts: the first)."""
    if tenant.survey is None:
        raise SurveyError("this tenant asks no surveys")
    if not isinstance(rating, int) or not 1 <= rating <= 5:
        raise SurveyError("a rating is a whole number from 1 to 5")
    comment = _clean_comment(comment)
    body = f"Rated {rating} of 5" + (f": {comment}" if comment else "")
    outcome, given = await atomic.survey_answer(
        store,
        tenant.id,
        conversation,
        mode="rate",
        ident=ident,
        match="owner",
        rating=rating,
        comment=comment,
        low=tenant.survey.low_rating,
        day=await _survey_day(store, tenant.id, conversation),
        entry=_answer_entry(channel, "", body, rating),
    )
    return outcome, int(given or 0)


async def comment(store: Store, tenant: Tenant, conversation: str, words: str, *, channel: str, ident: str = "") -> str:
    """A comment after the rating (once); the outcome (commented, already, none, expired)."""
    if tenant.survey is None:
        raise SurveyError("this tenant asks no surveys")
    words = _clean_comment(words)
    if not words:
        raise SurveyError("the comment is empty")
    outcome, _given = await atomic.survey_answer(
        store,
        tenant.id,
        conversation,
        mode="comment",
        ident=ident,
        match="owner",
        rating=0,
        comment=words,
        low=tenant.survey.low_rating,
        day=await _survey_day(store, tenant.id, conversation),
        entry=_answer_entry(channel, "", words, None),
    )
    return outcome


def _clean_comment(words: str) -> str:
    """A comment fit to keep: no control characters but line breaks, at most COMMENT_MAX."""
    kept = "".join(c for c in words if c == "\n" or unicodedata.category(c)[0] != "C")
    return kept.strip()[:COMMENT_MAX]


async def followups(store: Store, tenant: str, limit: int = 50) -> list[dict[str, str]]:
    """Low ratings a supervisor has yet to follow up, newest first, with their conversation."""
    keys = Keys(tenant)
    found = []
    for conversation in await store.redis.zrevrange(keys.survey_followups, 0, limit - 1):
        conversation = text(conversation)
        wanted = ("survey_rating", "survey_comment", "queue", "agent", "survey_rated_at", "customer")
        values = await store.redis.hmget(keys.conversation(conversation), [*wanted, "survey_channel", "survey_address"])
        fields = dict(zip(wanted, (text(v) if v else "" for v in values), strict=False))
        found.append(
            {
                "conversation": conversation,
                "rating": fields["survey_rating"],
                "comment": fields["survey_comment"],
                "queue": fields["queue"],
                "agent": fields["agent"],
                "at": fields["survey_rated_at"],
                "customer": fields["customer"],
                "channel": text(values[6] or b""),
                "address": text(values[7] or b""),
            }
        )
    return found


async def follow_up_done(store: Store, tenant: str, conversation: str, by: str) -> bool:
    """A supervisor followed up a low rating; False if it was not open."""
    keys = Keys(tenant)
    if not await store.redis.zrem(keys.survey_followups, conversation):
        return False
    await store.redis.hset(keys.conversation(conversation), "survey_followup", f"done:{by}")
    return True
