"""Audience import: a CSV streamed row by row into Redis in pipelined batches.

The file is never held whole: the csv module reads the open file, and each batch
of rows is written (and forgotten) before the next is read, so 100,000 rows take
the memory of one batch. Phone numbers become E.164 (phonenumbers), emails are
checked, the other columns become the fields templates use. A bad row is
reported with its line number and reason; the rest imports.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TextIO

import phonenumbers

from router.campaigns.compliance import phone_zones
from router.campaigns.model import Campaign, Recipient, encode_recipient, placeless_zone, valid_zone
from router.errors import ContactRouterError
from router.keys import Keys
from router.store import Store

BATCH = 1000
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
    for item in rows:
        chunk.append(item)
        if len(chunk) >= batch:
            await _import_chunk(store, campaign, columns, chunk, report)
            chunk = []
    if chunk:
        await _import_chunk(store, campaign, columns, chunk, report)
    return report


async def _import_chunk(store: Store, campaign: Campaign, columns: _Columns, chunk: list, report: ImportReport) -> None:
    keys = Keys(campaign.tenant)
    last = await store.redis.hincrby(keys.campaign(campaign.id), "rows", len(chunk))
    seqs = range(last - len(chunk) + 1, last + 1)
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
    kept = []
    for recipient, new in zip(parsed, firsts, strict=True):
        if new:
            kept.append(recipient)
        else:
            rejects.append((recipient.line, f"the same {'phone' if recipient.phone else 'email'} as an earlier row"))
    async with store.redis.pipeline(transaction=False) as pipe:
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


def _dedupe_field(recipient: Recipient) -> str:
    return "@" + (recipient.phone or recipient.email)
