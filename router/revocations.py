"""Consent revoked in a customer's own words ("please stop texting me", 不要再打电话).

The carrier keywords (a whole-body STOP, UNSUBSCRIBE...: channels.sms.optout) opt a number
out at once. Free text does not: "stop texting me the wrong code" and "can I unsubscribe
my son?" read the same to a pattern. So routing (router.intake) flags a message that reads
like a revocation, an agent confirms or dismisses the flag on the conversation's page,
and meanwhile no campaign or survey reaches the person on any channel (the flag counts in
lib.lua's contact_refusal as "revocation_pending": the safe side, since a false positive
only delays a message an agent can release, and a missed revocation breaks the law).

A confirmation records the opt-out (the suppression lists of the channels the words name,
else of the channel they came on, for every address of the person that reaches them), an
`opted_out` event, and who confirmed it and when in the audit trail; a dismissal only
lifts the flag (and is audited too: who decided it was no revocation).
"""

from __future__ import annotations

import re

import msgspec

from router import audit, events
from router.customers import ADDRESS_KIND, identity
from router.keys import Keys
from router.store import Store, text

# Words that name a channel, and the channel they name.
_NAMED = (
    (re.compile(r"\b(?:call|calls|calling|phone|ring|ringing)\b|打电话|来电|电话"), "voice"),
    (re.compile(r"\b(?:text|texts|texting|sms|messages?|messaging)\b|短信|信息"), "sms"),
    (re.compile(r"\b(?:e-?mails?|e-?mailing|mail|mailing)\b|邮件"), "email"),
)
_NOT = r"(?:don'?t|do not|never|dont|please don'?t)"
_US = r"(?:me|us|this number|my number|my phone|my email)"
# Common ways of saying "no more", English and Chinese; each one alone, never a whole-body
# keyword (those never reach routing: the SMS channel acts on them). Each pattern comes
# with words it cannot match without (lower case): a message with none of them, nearly
# every one, is passed over after one scan for all those words (_ANCHORS) instead of ten (a text:
# 28 us to 6; a 4,000-character mail: 2.6 ms to 0.3, on a loaded 2-core machine).
PATTERNS = tuple(
    (anchors, re.compile(p, re.IGNORECASE))
    for anchors, p in (
        (("stop",), rf"\bstop (?:calling|texting|messaging|e-?mailing|contacting|sending|bothering|harassing) {_US}\b"),
        (("stop",), r"\bstop (?:the |these |your |all )?(?:calls|texts|messages|e-?mails|sms)\b"),
        (("don", "do not", "never"), rf"\b{_NOT} (?:ever )?(?:call|text|message|e-?mail|contact|phone|ring) {_US}\b"),
        (("no more",), r"\bno more (?:calls|texts|messages|e-?mails|sms|contact)\b"),
        (("unsubscribe",), r"\bunsubscribe\b"),
        (("opt",), r"\bopt(?:ing)?[ -]?out\b"),
        (
            ("remove", "take"),
            rf"\b(?:remove|take) {_US} (?:off|from) (?:your|the|this|all)?\s*(?:\w+ )?"
            r"(?:list|lists|database|records)\b",
        ),
        (("leave", "consent"), rf"\b(?:leave {_US} alone|revoke (?:my )?consent|i (?:do not|don'?t) consent)\b"),
        (
            ("不要", "别", "不用", "勿"),
            r"(?:不要|别|不用|请勿|勿)再?(?:给我)?(?:打电话|来电|打|发短信|发信息|发消息|发邮件|联系我|骚扰)",
        ),
        (("退订", "取消订阅", "拒收", "停止"), r"退订|取消订阅|拒收|停止(?:发送|联系|打电话)"),
    )
)


# every pattern's words in one scan (a message with none of them costs one C-level search)
_ANCHORS = re.compile("|".join(re.escape(a) for anchors, _p in PATTERNS for a in anchors))


class Flag(msgspec.Struct, frozen=True, kw_only=True):
    """A message that read like a revocation, awaiting an agent: under `:revoke`, by identity."""

    ident: str  # the sender's identity ("phone:+1...")
    channel: str  # the channel it came on
    address: str
    message: str  # the contact's id (its history entry's)
    phrase: str  # the words that matched, as written (at most 80 characters)
    channels: tuple[str, ...] = ()  # the channels the words name ("don't call me": voice), if any
    at: int = 0  # when it came (ms)


READ = 4000

# Where a reply's quotation of an earlier mail starts: what follows is not the customer's
# words (a campaign email's own "to unsubscribe, click..." quoted back must raise nothing).
QUOTE_STARTS = re.compile(
    r"^(?:On .{0,300} wrote:|-{2,} ?(?:Original Message|Forwarded message) ?-{2,}|(?:From|发件人|寄件者): .*)\s*$",
    re.IGNORECASE | re.MULTILINE,
)


QUOTE_MARKS = ("wrote:", "--", "from:", "发件人", "寄件者")  # one of them is in every QUOTE_STARTS match


def own_words(body: str) -> str:
    """The part of a message its sender wrote: up to a quoted earlier mail, without the
    lines quoted with ">"."""
    lower = body.lower()
    if any(mark in lower for mark in QUOTE_MARKS) and (found := QUOTE_STARTS.search(body)):
        body = body[: found.start()]
    if ">" not in body:
        return body
    return "\n".join(line for line in body.splitlines() if not line.lstrip().startswith(">"))


def detect(body: str) -> tuple[str, tuple[str, ...]] | None:
    """The words of `body` (its sender's own: own_words) that read like a revocation of
    consent, and the channels they name, or None."""
    # a revocation is said early: the patterns read at most READ characters (a long mail's
    # body then costs routing what a text does)
    body = own_words(body[: READ * 4])[:READ]
    present = set(_ANCHORS.findall(body.lower()))
    if not present:
        return None
    for anchors, pattern in PATTERNS:
        if present.isdisjoint(anchors):
            continue
        found = pattern.search(body)
        if found:
            phrase = found.group(0)
            # the channels named in the matched words, else in the sentence around them
            around = body[max(found.start() - 40, 0) : found.end() + 40].lower()
            named = tuple(ch for words, ch in _NAMED if words.search(phrase.lower()))
            if not named:
                named = tuple(ch for words, ch in _NAMED if words.search(around))
            return phrase[:80], named
    return None


def flag_of(contact: events.InboundContact) -> Flag | None:
    """The flag a customer's message raises, if it reads like a revocation."""
    if contact.kind not in ("message", "voicemail") or contact.channel not in ADDRESS_KIND:
        return None
    found = detect(f"{contact.subject}\n{contact.body}")
    if found is None:
        return None
    return Flag(
        ident=identity(contact.channel, contact.address),
        channel=contact.channel,
        address=contact.address,
        message=contact.id,
        phrase=found[0],
        channels=found[1],
        at=contact.occurred_at,
    )


async def raise_flags(store: Store, flags: list[tuple[str, Flag]]) -> None:
    """Store (tenant, flag) pairs in one round trip. An identity's first pending flag stays
    (HSETNX): a redelivered message changes nothing, and a second message keeps the first
    one's words for the agent."""
    if not flags:
        return
    async with store.redis.pipeline(transaction=False) as pipe:
        for tenant, flag in flags:
            pipe.hsetnx(Keys(tenant).revocations, flag.ident, msgspec.json.encode(flag))
        await pipe.execute()


async def pending(store: Store, tenant: str, idents: list[str]) -> list[Flag]:
    """The flags awaiting an agent among these identities (a customer's), oldest first."""
    if not idents:
        return []
    found = await store.redis.hmget(Keys(tenant).revocations, idents)
    flags = [msgspec.json.decode(raw, type=Flag) for raw in found if raw]
    return sorted(flags, key=lambda f: f.at)


async def _person(store: Store, tenant: str, ident: str) -> list[str]:
    """Every identity of the customer `ident` belongs to (itself first)."""
    keys = Keys(tenant)
    customer = await store.redis.hget(keys.identities, ident)
    if not customer:
        return [ident]
    fields = await store.redis.hkeys(keys.customer(text(customer)))
    others = sorted(text(f).removeprefix("ident:") for f in fields if text(f).startswith("ident:"))
    return [ident, *(i for i in others if i != ident)]


async def confirm(
    store: Store, tenant: str, ident: str, *, actor: str, client: str, conversation: str = ""
) -> list[tuple[str, str]] | None:
    """An agent confirms the flag of `ident`: the opt-out is recorded on the channels its
    words name (else the one it came on), for each of the person's addresses that reaches
    them, with an `opted_out` event each, in one transaction with the flag's removal; then
    the audit trail keeps who and when. Returns the (channel, address) pairs opted out, or
    None when there was no flag (another agent settled it first)."""
    keys = Keys(tenant)
    person = await _person(store, tenant, ident)
    async with store.redis.pipeline(transaction=True) as pipe:
        await pipe.watch(keys.revocations)
        raw = await pipe.hget(keys.revocations, ident)
        if raw is None:
            await pipe.reset()
            return None
        flag = msgspec.json.decode(raw, type=Flag)
        opted: list[tuple[str, str]] = []
        for channel in flag.channels or (flag.channel,):
            kind = ADDRESS_KIND.get(channel, "")
            opted += [(channel, i.partition(":")[2]) for i in person if i.partition(":")[0] == kind]
        now = events.now_ms()
        pipe.multi()
        pipe.hdel(keys.revocations, ident)
        for channel, address in opted:
            pipe.sadd(keys.suppression(channel), address)
            event = events.OptedOut(
                tenant=tenant,
                occurred_at=now,
                channel=channel,
                direction="in",
                conversation=conversation,
                address=address,
                keyword=f"confirmed by {actor}"[:32],
            )
            pipe.xadd(keys.events, {"e": events.encode(event)})
        await pipe.execute()
    channels = ", ".join(sorted({channel for channel, _address in opted})) or "no channel (no address reaches it)"
    await audit.record(
        store,
        "consent_revoked",
        actor=actor,
        client=client,
        tenants=(tenant,),
        target=f"conversation {conversation}" if conversation else ident.partition(":")[0],
        detail=f"free-text revocation confirmed: opted out of {channels}",
    )
    return opted


async def dismiss(store: Store, tenant: str, ident: str, *, actor: str, client: str, conversation: str = "") -> bool:
    """An agent dismisses the flag of `ident` (it was no revocation): only the flag goes, and
    the audit trail keeps who decided so. False when there was none."""
    if not await store.redis.hdel(Keys(tenant).revocations, ident):
        return False
    await audit.record(
        store,
        "revocation_dismissed",
        actor=actor,
        client=client,
        tenants=(tenant,),
        target=f"conversation {conversation}" if conversation else ident.partition(":")[0],
        detail="free-text revocation dismissed: no opt-out recorded",
    )
    return True
