"""Email threading: the headers and tokens that keep a conversation in one thread.

A reply joins its conversation in routing (router/lua/intake.lua) by looking up
each of its references in the tenant's threads hash (keys.threads). Three kinds
of reference end up there:
- Message-IDs of the customer's mail (written by intake) and of ours (written
  here before a message leaves), so In-Reply-To / References join;
- the conversation's token, "token:c-xxxxxxxxxx", for mail clients that drop
  those headers: it rides in the Reply-To plus-address
  (help+c-xxxxxxxxxx@acme.example) and in the subject ("[#c-xxxxxxxxxx]").

A token is random (50 bits) and looked up only in the keyspace of the tenant the
mail was addressed to, so it can neither be guessed nor lead into another
tenant's conversation.
"""

from __future__ import annotations

import base64
import re
import secrets

from router import events
from router.keys import PROVIDER_ID_TTL_S, Keys
from router.store import Store, text

TOKEN_FIELD = "email_token"  # on the conversation hash
TOKEN = re.compile(r"^c-[a-z2-7]{10}$")
SUBJECT_TOKEN = re.compile(r"\s*\[#(c-[a-z2-7]{10})\]", re.IGNORECASE)
# Reply and forward prefixes of the usual languages (en, de, nl, sv/da/no, fr, es, it, pt)
PREFIX = re.compile(r"^\s*((re|aw|antw|sv|vs|réf|ref|rv|r|fw|fwd|wg|tr|enc)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
MAX_REFERENCES = 20  # RFC 5322 3.6.4: keep the first and the nearest; clients cope with fewer


def new_token() -> str:
    return "c-" + base64.b32encode(secrets.token_bytes(10)).decode().lower()[:10]


def thread_ref(token: str) -> str:
    """The token's entry in the threads hash (beside the Message-IDs)."""
    return f"token:{token}"


async def conversation_token(store: Store, tenant: str, conversation: str) -> str:
    """The conversation's token, made on first use, and its entry in the threads hash."""
    keys = Keys(tenant)
    candidate = new_token()
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.hsetnx(keys.conversation(conversation), TOKEN_FIELD, candidate)
        pipe.hget(keys.conversation(conversation), TOKEN_FIELD)
        _, token = await pipe.execute()
    token = text(token)
    await store.redis.hset(keys.threads, thread_ref(token), conversation)
    return token


async def remember_sent(store: Store, tenant: str, conversation: str, message_id: str, message: str) -> None:
    """Before our mail leaves: its Message-ID joins the thread (the customer's reply
    carries it in In-Reply-To) and leads back to our message (a bounce quotes it)."""
    keys = Keys(tenant)
    async with store.redis.pipeline(transaction=True) as pipe:
        if conversation:
            pipe.hset(keys.threads, message_id, conversation)
        pipe.set(keys.provider_message(message_id), message, ex=PROVIDER_ID_TTL_S)
        await pipe.execute()


def tokens_in(addresses: list[str], subject: str) -> list[str]:
    """Conversation tokens a mail carries: plus-addresses it was sent to, then its subject."""
    found = []
    for address in addresses:
        tag = address.rpartition("@")[0].rpartition("+")[2].lower()
        if TOKEN.match(tag):
            found.append(tag)
    found += [m.lower() for m in SUBJECT_TOKEN.findall(subject)]
    return list(dict.fromkeys(found))


def without_token(address: str) -> str:
    """help+c-xxxxxxxxxx@acme.example -> help@acme.example, the address the tenant configured
    (any other +tag is left alone: it may be part of a configured address)."""
    local, at, domain = address.rpartition("@")
    base, plus, tag = local.rpartition("+")
    return f"{base}@{domain}" if at and plus and TOKEN.match(tag.lower()) else address


def plus_address(address: str, token: str) -> str:
    local, _, domain = address.rpartition("@")
    return f"{local}+{token}@{domain}"


def message_id(message: str, domain: str) -> str:
    """Our Message-ID for one outbound message (without brackets): the same on every
    attempt, so a relay or a mail client that saw a retry drops the copy."""
    return f"{message.lower()}@{domain}"


def reply_subject(subject: str, token: str = "") -> str:
    """'Re: ' once before the customer's subject (whatever prefixes it collected), and the token."""
    base = SUBJECT_TOKEN.sub("", PREFIX.sub("", subject)).strip()
    return with_token(f"Re: {base}" if base else "Re: your message", token)


def with_token(subject: str, token: str) -> str:
    """The subject on one line (a header cannot hold a line break), ending with the token."""
    subject = " ".join(SUBJECT_TOKEN.sub("", subject).split())
    return f"{subject} [#{token}]" if token else subject


def thread_headers(history: list[events.HistoryEntry], current: str, domain: str) -> tuple[str, list[str], str]:
    """(In-Reply-To, References, the subject answered) for an outbound message from its
    conversation's email history: the customer's Message-IDs and ours, oldest first."""
    chain: list[str] = []
    in_reply_to, subject = "", ""
    for entry in history:
        if entry.id == current:
            break
        if entry.channel != "email":
            continue
        if entry.kind == "in" and entry.metadata.get("message_id"):
            chain.append(entry.metadata["message_id"])
            in_reply_to, subject = entry.metadata["message_id"], entry.subject
        elif entry.kind == "out":
            chain.append(message_id(entry.id, domain))
            subject = subject or entry.subject
    chain = list(dict.fromkeys(chain))
    if len(chain) > MAX_REFERENCES:
        chain = chain[:1] + chain[-(MAX_REFERENCES - 1) :]
    return in_reply_to or (chain[-1] if chain else ""), chain, subject


def answered(history: list[events.HistoryEntry], current: str) -> events.HistoryEntry | None:
    """The customer's email an outbound message answers: the newest one before it."""
    found = None
    for entry in history:
        if entry.id == current:
            break
        if entry.kind == "in" and entry.channel == "email":
            found = entry
    return found
