"""A campaign's results recipient by recipient, for the team that works from them: who was
contacted, when, on which channel and address, what came of it (delivered, failed and
why, suppressed and why, skipped, still queued), whether they replied, the agent's
disposition, and a promise's amount and date.

Read from what the campaign keeps per recipient (its audience, its status hash and the
flags beside it, the dispatcher's record of the latest attempt), a chunk of recipients
per round trip, so a 100,000-row campaign streams in flat memory. Its figures are the
progress counters' (registry.progress), recipient by recipient: `counts()` of the rows
equals the campaign's progress (tests/workers/test_campaign_export.py holds them together).
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import AsyncIterator, Iterable
from typing import TextIO

import msgspec

from router.campaigns import registry
from router.campaigns.model import DISPOSITIONS, decode_recipient
from router.keys import Keys
from router.store import Store, text
from workers.campaigns.audience import address_for
from workers.campaigns.ids import message_id

CHUNK = 1000
# What became of a recipient, as the export says it.
OUTCOMES = ("queued", "sent", "delivered", "failed", "suppressed", "skipped")


class RecipientResult(msgspec.Struct, frozen=True, kw_only=True):
    """One recipient's line of the export."""

    recipient: int  # the number the import gave (file order)
    line: int  # the CSV line they came from
    name: str  # the row's `name` field, if it has one
    phone: str
    email: str
    account: str  # the debt (the campaign's debt_field), if any
    variant: str
    channel: str  # of the latest attempt ("" before any)
    address: str
    attempts: int  # attempts that went (or were queued to go)
    contacted_at: str  # when the latest attempt left (RFC 3339, UTC), "" if it has not
    outcome: str  # one of OUTCOMES
    reason: str  # why it failed, was suppressed, skipped or held back ("" otherwise)
    replied: bool
    converted: bool
    disposition: str  # the agent's closing disposition(s), space-separated
    promise_amount: str
    promise_date: str


COLUMNS = tuple(RecipientResult.__struct_fields__)


def _outcome(status: str) -> tuple[str, int, str, str]:
    """(outcome, attempt, channel, reason) of a recipient's status (router/lua/campaigns/*)."""
    if not status:
        return "queued", 0, "", ""
    state, _, rest = status.partition(":")
    if state in ("sent", "delivered", "failed", "retry", "held"):
        attempt, channel, reason = [*rest.split(":", 2), "", ""][:3]
        if state == "retry":  # the next attempt is due: the last one to go was the one before
            return "queued", int(attempt) - 1, channel, "retry due"
        if state == "held":
            return "queued", int(attempt), channel, f"held back: {reason}"
        return state, int(attempt), channel, reason
    if state == "suppressed":
        kind, _, more = rest.partition(":")
        if kind in ("refused_at_send", "refused"):  # <attempt>:<channel>:<reason>
            attempt, channel, reason = [*more.split(":", 2), "", ""][:3]
            label = "refused as it was to leave" if kind == "refused_at_send" else "refused by the dispatcher"
            return "suppressed", int(attempt) if attempt.isdigit() else 0, channel, f"{label}: {reason}"
        return "suppressed", 0, "", rest
    if state == "skipped":
        return "skipped", 0, "", rest
    return state, 0, "", rest


def _when(ms: bytes | None) -> str:
    if not ms:
        return ""
    return dt.datetime.fromtimestamp(int(ms) / 1000, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def rows(store: Store, tenant: str, campaign_id: str) -> AsyncIterator[RecipientResult]:
    """Every recipient of the campaign, in file order."""
    campaign, _state = await registry.load(store, tenant, campaign_id)
    keys = Keys(tenant)
    status_key = keys.campaign_status(campaign_id)
    progress = await registry.progress(store, tenant, campaign_id)
    dispositions = list(dict.fromkeys([*DISPOSITIONS.get(campaign.kind, ()), *progress.dispositions]))
    # the audience hash also holds its addresses ("@<address>", for the import's duplicates)
    fields = await store.redis.hkeys(keys.campaign_audience(campaign_id))
    seqs = sorted(int(f) for f in fields if f.isdigit())
    flags = ["replied", "converted", "promised_cents", *(f"disposition:{d}" for d in dispositions)]
    for start in range(0, len(seqs), CHUNK):
        chunk = seqs[start : start + CHUNK]
        async with store.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.campaign_audience(campaign_id), chunk)
            pipe.hmget(status_key, [f"{seq}{suffix}" for seq in chunk for suffix in ("", *(f":{f}" for f in flags))])
            blobs, statuses = await pipe.execute()
        per = 1 + len(flags)
        parsed = []
        for index, (seq, blob) in enumerate(zip(chunk, blobs, strict=True)):
            values = statuses[index * per : (index + 1) * per]
            parsed.append((seq, blob, values, _outcome(text(values[0]) if values[0] else "")))
        async with store.redis.pipeline(transaction=False) as pipe:
            for seq, _blob, _values, (_what, attempt, _channel, _reason) in parsed:
                if attempt:  # when the latest attempt's send lease was taken: when it left
                    pipe.hget(keys.delivery(message_id(campaign_id, seq, attempt)), "sending_since")
            sent_at = iter(await pipe.execute())
        for seq, blob, values, (outcome, attempt, channel, reason) in parsed:
            recipient = decode_recipient(blob) if blob else None
            fields = recipient.fields if recipient else {}
            promised = text(values[3]) if values[3] else ""
            amount, _, due = promised.partition(" ")
            chosen = [d for d, flag in zip(dispositions, values[4:], strict=True) if flag]
            yield RecipientResult(
                recipient=seq,
                line=recipient.line if recipient else 0,
                name=fields.get("name", ""),
                phone=recipient.phone if recipient else "",
                email=recipient.email if recipient else "",
                account=fields.get(campaign.debt_field, ""),
                variant=campaign.variant_of(seq),
                channel=channel,
                address=address_for(channel, recipient) if recipient and channel else "",
                attempts=attempt,
                contacted_at=_when(next(sent_at)) if attempt else "",
                outcome=outcome,
                reason=reason,
                replied=bool(values[1]),
                converted=bool(values[2]),
                disposition=" ".join(chosen),
                promise_amount=amount,
                promise_date=due,
            )


def counts(results: Iterable[RecipientResult]) -> dict[str, int]:
    """The export's figures as the progress counters name them: queued, sent (each recipient
    whose message went: delivered, failed or awaiting a report), delivered, failed,
    suppressed, skipped, replied, converted."""
    found = dict.fromkeys((*OUTCOMES, "replied", "converted"), 0)
    for row in results:
        found[row.outcome] += 1
        if row.outcome in ("delivered", "failed"):
            found["sent"] += 1
        found["replied"] += row.replied
        found["converted"] += row.converted
    return found


def csv_header() -> list[str]:
    return list(COLUMNS)


def csv_row(row: RecipientResult) -> list[object]:
    return [
        ("yes" if value else "") if isinstance(value, bool) else value
        for value in (getattr(row, column) for column in COLUMNS)
    ]


async def write_csv(store: Store, tenant: str, campaign_id: str, out: TextIO) -> int:
    """The export as CSV to `out`; returns the rows written."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(csv_header())
    written = 0
    async for row in rows(store, tenant, campaign_id):
        writer.writerow(csv_row(row))
        written += 1
    return written


async def write_json(store: Store, tenant: str, campaign_id: str, out: TextIO) -> int:
    """The export as a JSON array of objects, one per recipient, streamed; returns the rows."""
    written = 0
    out.write("[")
    async for row in rows(store, tenant, campaign_id):
        out.write(("," if written else "") + "\n" + msgspec.json.encode(row).decode())
        written += 1
    out.write("\n]\n")
    return written
