"""Audience import: a CSV streamed row by row into Redis in pipelined batches.

The file is never held whole: the csv module reads the open file, and each batch
of rows is written (and forgotten) before the next is read, so 100,000 rows take
the memory of one batch. Phone numbers become E.164 (phonenumbers), emails are
checked, the other columns become the fields templates use. A bad row is
reported with its line number and reason; the rest imports.

A file that is not UTF-8 is refused whole before any row is queued (check_utf8, with
the line and byte of the first bad sequence), so fixing and importing it again starts
clean. A row an earlier import of the campaign already took, unchanged (an import cut
short, or the same file twice), counts as already there, not as a duplicate.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, TextIO

import phonenumbers

from router.campaigns.compliance import phone_zones
from router.campaigns.model import (
    Campaign,
    Recipient,
    decode_recipient,
    encode_recipient,
    placeless_zone,
    valid_zone,
)
from router.errors import ContactRouterError
from router.keys import Keys
from router.store import Store

BATCH = 1000
CHECK_BYTES = 1 << 20  # read at a time by check_utf8
KEEP_REJECTS = 10_000  # reasons stored per campaign; the count is always exact
MAX_VALUE = 2000  # characters per field value

# Column names (lower case) that mean an address or a setting, not a template field.
PHONE_COLUMNS = ("phone", "mobile", "msisdn", "phone_number", "number")
EMAIL_COLUMNS = ("email", "email_address", "e_mail")
ZONE_COLUMNS = ("timezone", "time_zone", "tz")
LOCALE_COLUMNS = ("locale", "language", "lang")

_EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
_LOCALE = re.compile(r"^[a-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")


class AudienceError(ContactRouterError, ValueError):
    """The file as a whole cannot be imported (no header, no address column)."""


class RowError(ContactRouterError, ValueError):
    """One row is refused; the import goes on."""


@dataclass
class ImportReport:
    imported: int = 0
    rejected: int = 0
    rejects: list[tuple[int, str]] = field(default_factory=list)  # the first KEEP_REJECTS (line, reason)
    already: int = 0  # rows an earlier import already took, unchanged: left as they are


def check_utf8(source: BinaryIO, chunk: int = CHECK_BYTES) -> None:
    """Read the whole file and refuse it, with AudienceError, unless it is UTF-8: before any
    row is queued, naming the line and the byte (counted from 1, in the line and in the file)
    of the first bytes that are not. Streamed: a file of any size takes one chunk's memory."""
    offset, line, line_start, carry = 0, 1, 0, b""  # offset: data[0]'s in the file
    while True:
        block = source.read(chunk)
        data = carry + block
        if not data:
            return
        try:
            data.decode("utf-8")
            good, carry = data, b""
        except UnicodeDecodeError as exc:
            if not (block and exc.reason == "unexpected end of data"):
                before = data[: exc.start]
                if (newline := before.rfind(b"\n")) >= 0:
                    line, line_start = line + before.count(b"\n"), offset + newline + 1
                at = offset + exc.start
                bad = data[exc.start : exc.end].hex(" ").upper()
                raise AudienceError(
                    f"line {line:,}, byte {at - line_start + 1:,} (byte {at + 1:,} of the file): {bad} is not "
                    f"UTF-8 ({exc.reason}). Nothing was imported: save the file as UTF-8 (in Excel, "
                    '"CSV UTF-8") and import it again'
                ) from None
            good, carry = data[: exc.start], data[exc.start :]  # a character the next block ends
        if (newline := good.rfind(b"\n")) >= 0:
            line, line_start = line + good.count(b"\n"), offset + newline + 1
        offset += len(good)


def valid_email(address: str) -> bool:
    return len(address) <= 254 and bool(_EMAIL.fullmatch(address)) and len(address.partition("@")[0]) <= 64


def field_name(header: str) -> str:
    """A column header as a template variable: 'Due date' -> 'due_date'."""
    name = re.sub(r"\W+", "_", header.strip().lower()).strip("_")
    return f"f_{name}" if name[:1].isdigit() else name


def parse_phone(raw: str, region: str) -> phonenumbers.PhoneNumber:
    """A valid phone number, or RowError (numbers without a country code read in `region`)."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise RowError(f"phone {raw!r} is not a phone number ({exc})") from None
    if not phonenumbers.is_valid_number(number):
        raise RowError(f"phone {raw!r} is not a valid number")
    return number


class _Columns:
    """Which header column holds what."""

    def __init__(self, header: list[str], campaign: Campaign) -> None:
        self.names = [field_name(h) for h in header]
        if not any(self.names):
            raise AudienceError("the first line must be a header naming the columns")
        duplicates = sorted({n for n in self.names if self.names.count(n) > 1})
        if duplicates:
            raise AudienceError(f"columns named twice: {', '.join(duplicates)}")

        def find(options: tuple[str, ...]) -> int | None:
            return next((self.names.index(o) for o in options if o in self.names), None)

        self.phone, self.email = find(PHONE_COLUMNS), find(EMAIL_COLUMNS)
        self.zone, self.locale = find(ZONE_COLUMNS), find(LOCALE_COLUMNS)
        if self.phone is None and self.email is None:
            raise AudienceError(f"no phone ({', '.join(PHONE_COLUMNS)}) or email ({', '.join(EMAIL_COLUMNS)}) column")
        # Collections caps and the quiet period count per debt (Regulation F): without the
        # debt's column they would silently fall back to counting per address.
        self.debt = find((campaign.debt_field,)) if campaign.kind == "collections" else None
        if campaign.kind == "collections" and self.debt is None:
            raise AudienceError(
                f"no {campaign.debt_field!r} column: a collections audience names the debt each row is about "
                "(the campaign's debt_field), which its caps and quiet period count by"
            )


def parse_row(campaign: Campaign, columns: _Columns, row: list[str], line: int, seq: int) -> Recipient:
    """One CSV row as a recipient of the campaign, or RowError with the reason."""
    if len(row) != len(columns.names):
        raise RowError(f"{len(row)} columns where the header has {len(columns.names)}")
    values = [v.strip() for v in row]
    for name, value in zip(columns.names, values, strict=True):
        if len(value) > MAX_VALUE:
            raise RowError(f"{name} is longer than {MAX_VALUE} characters")
    raw_phone = values[columns.phone] if columns.phone is not None else ""
    number = parse_phone(raw_phone, campaign.region) if raw_phone else None
    phone = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) if number else ""
    email = values[columns.email].lower() if columns.email is not None else ""
    if email and not valid_email(email):
        raise RowError(f"email {values[columns.email]!r} is not an email address")
    if not any(_address_for(channel, phone, email) for channel in campaign.channels):
        needs = " or ".join(f"{'an email' if c == 'email' else 'a phone'} ({c})" for c in campaign.channels)
        raise RowError(f"no address to send to: needs {needs}")
    if columns.debt is not None and not values[columns.debt]:
        raise RowError(f"no {columns.names[columns.debt]}: a collections row needs the debt it is about")
    zone = values[columns.zone] if columns.zone is not None else ""
    if zone and not valid_zone(zone):
        raise RowError(f"unknown time zone {zone!r}")
    if zone and placeless_zone(zone):
        raise RowError(
            f"time zone {zone!r} is an abbreviation or a fixed offset, not a place: give the recipient's "
            "IANA zone (such as America/New_York, which keeps daylight saving time), or leave it empty "
            "to use the phone number's"
        )
    locale = values[columns.locale] if columns.locale is not None else ""
    if locale and not _LOCALE.fullmatch(locale):
        raise RowError(f"locale {locale!r} is not a language tag")
    fields = {name: value for name, value in zip(columns.names, values, strict=True) if name}
    if phone:
        fields[columns.names[columns.phone]] = phone
    # the number's zones, with or without the file's: a zone that contradicts them narrows
    # the window to both (router.campaigns.compliance.zones_for), never widens it
    zones = phone_zones(number) if number is not None else ()
    return Recipient(
        seq=seq, line=line, phone=phone, email=email, timezone=zone, locale=locale, fields=fields, zones=zones
    )


def _address_for(channel: str, phone: str, email: str) -> str:
    return email if channel == "email" else phone if channel in ("sms", "voice", "fax") else ""


def address_for(channel: str, recipient: Recipient) -> str:
    """The recipient's address on a channel ("" when the file gave none)."""
    return _address_for(channel, recipient.phone, recipient.email)


def _rows(source: TextIO) -> Iterator[tuple[int, list[str] | csv.Error]]:
    """(line, row) pairs; a row the csv module cannot read comes as its error."""
    reader = csv.reader(source)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, exc
            continue
        if row:  # blank lines
            yield reader.line_num, row


async def import_csv(store: Store, campaign: Campaign, source: TextIO, *, batch: int = BATCH) -> ImportReport:
    """Add a CSV's rows to a campaign's audience; returns what was imported and refused."""
    rows = _rows(source)
    first = next(rows, None)
    if first is None or isinstance(first[1], csv.Error):
        raise AudienceError("the file is empty" if first is None else f"line 1: {first[1]}")
    columns = _Columns(first[1], campaign)
    report = ImportReport()
    chunk: list[tuple[int, list[str] | csv.Error]] = []
    first_seq = 0  # this import's first recipient number: those below are earlier imports'
    for item in rows:
        chunk.append(item)
        if len(chunk) >= batch:
            first_seq = await _import_chunk(store, campaign, columns, chunk, report, first_seq)
            chunk = []
    if chunk:
        await _import_chunk(store, campaign, columns, chunk, report, first_seq)
    return report


async def _import_chunk(
    store: Store, campaign: Campaign, columns: _Columns, chunk: list, report: ImportReport, first_seq: int
) -> int:
    """Import one batch; returns the import's first recipient number."""
    keys = Keys(campaign.tenant)
    last = await store.redis.hincrby(keys.campaign(campaign.id), "rows", len(chunk))
    seqs = range(last - len(chunk) + 1, last + 1)
    first_seq = first_seq or seqs[0]
    parsed: list[Recipient] = []
    rejects: list[tuple[int, str]] = []
    for seq, (line, row) in zip(seqs, chunk, strict=True):
        try:
            if isinstance(row, csv.Error):
                raise RowError(str(row))
            parsed.append(parse_row(campaign, columns, row, line, seq))
        except RowError as exc:
            rejects.append((line, str(exc)))
    # One address once per campaign: the first row wins, a repeat is refused.
    async with store.redis.pipeline(transaction=False) as pipe:
        for recipient in parsed:
            pipe.hsetnx(keys.campaign_audience(campaign.id), _dedupe_field(recipient), recipient.seq)
        firsts = await pipe.execute()
    kept = [r for r, new in zip(parsed, firsts, strict=True) if new]
    taken_over: dict[str, Recipient] = {}  # addresses an earlier import claimed but died before storing
    repeats = [r for r, new in zip(parsed, firsts, strict=True) if not new]
    for recipient, (seq, earlier) in zip(repeats, await _earlier(store, campaign, repeats), strict=True):
        address = _dedupe_field(recipient)
        if seq < first_seq and earlier is None and address not in taken_over:
            taken_over[address] = recipient
        elif seq < first_seq and earlier is not None and _same_row(earlier, recipient):
            report.already += 1  # an earlier import's, unchanged (one cut short, run again)
        else:
            rejects.append((recipient.line, f"the same {'phone' if recipient.phone else 'email'} as an earlier row"))
    kept += taken_over.values()
    async with store.redis.pipeline(transaction=False) as pipe:
        if taken_over:
            pipe.hset(keys.campaign_audience(campaign.id), mapping={a: r.seq for a, r in taken_over.items()})
        if kept:
            pipe.hset(keys.campaign_audience(campaign.id), mapping={r.seq: encode_recipient(r) for r in kept})
            # Due at once, in file order: a score is a time, and any before now is due; equal
            # scores would go by the members' text ("1", "10", "100", "11"...).
            pipe.zadd(keys.campaign_due(campaign.id), {r.seq: r.seq for r in kept})
            pipe.hincrby(keys.campaign_stats(campaign.id), "imported", len(kept))
        if rejects:
            room = max(0, KEEP_REJECTS - report.rejected)
            if room:
                pipe.hset(keys.campaign_rejects(campaign.id), mapping=dict(sorted(rejects)[:room]))
            pipe.hincrby(keys.campaign_stats(campaign.id), "rejected", len(rejects))
        await pipe.execute()
    report.imported += len(kept)
    for line, reason in sorted(rejects):
        if len(report.rejects) < KEEP_REJECTS:
            report.rejects.append((line, reason))
    report.rejected += len(rejects)
    return first_seq


async def _earlier(store: Store, campaign: Campaign, repeats: list[Recipient]) -> list[tuple[int, Recipient | None]]:
    """For each repeated row, the number its address is held under and that recipient (None
    when an import claimed the address but never stored its row)."""
    if not repeats:
        return []
    audience = Keys(campaign.tenant).campaign_audience(campaign.id)
    seqs = [int(s or 0) for s in await store.redis.hmget(audience, [_dedupe_field(r) for r in repeats])]
    blobs = await store.redis.hmget(audience, seqs)
    return [(seq, decode_recipient(b) if b else None) for seq, b in zip(seqs, blobs, strict=True)]


def _same_row(earlier: Recipient, row: Recipient) -> bool:
    """The same recipient with the same values (wherever the row now is in the file)."""
    return (earlier.phone, earlier.email, earlier.timezone, earlier.locale, earlier.fields) == (
        row.phone,
        row.email,
        row.timezone,
        row.locale,
        row.fields,
    )


def _dedupe_field(recipient: Recipient) -> str:
    return "@" + (recipient.phone or recipient.email)
