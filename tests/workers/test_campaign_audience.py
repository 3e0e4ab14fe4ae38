"""Audience import: a streamed CSV, E.164 numbers, checked emails, bad rows reported by line."""

import io

import pytest

from router.campaigns.model import decode_recipient, parse_campaign
from router.keys import Keys
from tests.factories import world
from workers.campaigns import audience

CAMPAIGN = """
id = "spring"
tenant = "acme"
kind = "collections"
channel = "sms"
fallback_channel = "email"
queue = "support"
[templates.sms.en]
body = "Hi {{ name }}"
[templates.email.en]
subject = "Your account"
body = "Hi {{ name }}"
"""


async def imported(store, csv_text: str, **kwargs):
    campaign = parse_campaign(CAMPAIGN)
    report = await audience.import_csv(store, campaign, io.StringIO(csv_text), **kwargs)
    keys = Keys("acme")
    rows = await store.redis.hgetall(keys.campaign_audience("spring"))
    recipients = sorted((decode_recipient(v) for k, v in rows.items() if not k.startswith(b"@")), key=lambda r: r.seq)
    return report, recipients


async def test_good_rows_import_with_e164_numbers_and_their_fields():
    w = await world()
    report, recipients = await imported(
        w.store,
        "Phone,Email,Name,Balance,Due date,Timezone\n"
        "(212) 555-1234,Jane@Example.com,Jane,120.50,2026-12-01,America/New_York\n"
        "+44 7911 123456,,Tom,80,2026-12-02,\n",
    )
    assert (report.imported, report.rejected) == (2, 0)
    jane, tom = recipients
    assert (jane.phone, jane.email, jane.timezone, jane.line) == (
        "+12125551234",
        "jane@example.com",
        "America/New_York",
        2,
    )
    assert jane.fields["balance"] == "120.50" and jane.fields["due_date"] == "2026-12-01"
    assert tom.phone == "+447911123456" and tom.email == ""
    # the number's possible time zones are worked out once, at import; an explicit zone needs none
    assert "Europe/London" in tom.zones and jane.zones == ()
    assert await w.store.redis.zcard(Keys("acme").campaign_due("spring")) == 2


async def test_a_csv_with_bad_rows_reports_each_by_line_and_imports_the_rest():
    w = await world()
    report, recipients = await imported(
        w.store,
        "phone,email,name,timezone\n"
        "+12125551234,,Ann,\n"  # line 2: fine
        "not a number,,Bob,\n"  # 3
        ",not-an-email,Cy,\n"  # 4
        "+12125550000,,Di,Mars/Olympus\n"  # 5
        "+1 212 555 1234,,Ann again,\n"  # 6: the same number as line 2
        "+12125559876,,Ed\n"  # 7: a column short
        ",,Nobody,\n"  # 8: no address
        '+12125554321,,"Multi\nline",\n'  # 9-10: fine
        "+12125550101,,Fay,\n",  # 11: fine
    )
    assert [r.fields["name"] for r in recipients] == ["Ann", "Multi\nline", "Fay"]
    assert report.imported == 3 and report.rejected == 6
    reasons = dict(report.rejects)
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8]
    assert "not a phone number" in reasons[3]
    assert "not an email address" in reasons[4]
    assert "unknown time zone" in reasons[5]
    assert "earlier row" in reasons[6]
    assert "columns" in reasons[7]
    assert "no address" in reasons[8]
    stored = await w.store.redis.hgetall(Keys("acme").campaign_rejects("spring"))
    assert {int(k): v.decode() for k, v in stored.items()} == reasons


async def test_a_file_without_an_address_column_is_refused_whole():
    w = await world()
    with pytest.raises(audience.AudienceError, match="no phone"):
        await imported(w.store, "name,balance\nJane,1\n")
    with pytest.raises(audience.AudienceError, match="empty"):
        await imported(w.store, "")


class Streamed:
    """A file that hands out its lines one at a time and counts how many were read."""

    def __init__(self, rows: int) -> None:
        self.lines = ["phone,name\n"] + [f"+1212555{i:04d},n{i}\n" for i in range(rows)]
        self.read = 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if self.read >= len(self.lines):
            raise StopIteration
        self.read += 1
        return self.lines[self.read - 1]


async def test_rows_are_written_batch_by_batch_while_the_file_is_read():
    w = await world()
    campaign = parse_campaign(CAMPAIGN)
    source = Streamed(2500)
    seen_before_reading: list[int] = []
    real_chunk = audience._import_chunk

    async def chunk(store, campaign, columns, rows, report):
        seen_before_reading.append(source.read)  # lines read when this batch is written
        await real_chunk(store, campaign, columns, rows, report)

    audience._import_chunk = chunk
    try:
        report = await audience.import_csv(w.store, campaign, source, batch=1000)
    finally:
        audience._import_chunk = real_chunk
    assert report.imported == 2500
    # each batch went to Redis before the next thousand lines were read
    assert seen_before_reading == [1001, 2001, 2501]


def test_email_addresses_are_checked():
    assert audience.valid_email("jane.doe+bills@example.co.uk")
    for bad in ("jane", "jane@", "@example.com", "jane@example", "ja ne@example.com", "jane@@example.com"):
        assert not audience.valid_email(bad), bad
