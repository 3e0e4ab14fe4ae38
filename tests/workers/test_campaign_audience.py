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
        "Phone,Email,Name,Account,Balance,Due date,Timezone\n"
        "(212) 555-1234,Jane@Example.com,Jane,AC-1,120.50,2026-12-01,America/New_York\n"
        "+44 7911 123456,,Tom,AC-2,80,2026-12-02,\n",
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
    # the number's possible time zones are worked out once, at import, beside an explicit zone
    # (which narrows them when it is one of them, and never widens the window when not)
    assert "Europe/London" in tom.zones and jane.zones == ("America/New_York",)
    assert await w.store.redis.zcard(Keys("acme").campaign_due("spring")) == 2


async def test_a_csv_with_bad_rows_reports_each_by_line_and_imports_the_rest():
    w = await world()
    report, recipients = await imported(
        w.store,
        "phone,email,name,account,timezone\n"
        "+12125551234,,Ann,A1,\n"  # line 2: fine
        "not a number,,Bob,A2,\n"  # 3
        ",not-an-email,Cy,A3,\n"  # 4
        "+12125550000,,Di,A4,Mars/Olympus\n"  # 5
        "+1 212 555 1234,,Ann again,A5,\n"  # 6: the same number as line 2
        "+12125559876,,Ed,A6\n"  # 7: a column short
        ",,Nobody,A7,\n"  # 8: no address
        '+12125554321,,"Multi\nline",A8,\n'  # 9-10: fine
        "+12125550101,,Fay,A9,\n"  # 11: fine
        "+12125550102,,Gus,,\n",  # 12: no debt named
    )
    assert [r.fields["name"] for r in recipients] == ["Ann", "Multi\nline", "Fay"]
    assert report.imported == 3 and report.rejected == 7
    reasons = dict(report.rejects)
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8, 12]
    assert "not a phone number" in reasons[3]
    assert "not an email address" in reasons[4]
    assert "unknown time zone" in reasons[5]
    assert "earlier row" in reasons[6]
    assert "columns" in reasons[7]
    assert "no address" in reasons[8]
    assert reasons[12] == "no account: a collections row needs the debt it is about"
    stored = await w.store.redis.hgetall(Keys("acme").campaign_rejects("spring"))
    assert {int(k): v.decode() for k, v in stored.items()} == reasons


async def test_a_file_without_an_address_column_is_refused_whole():
    w = await world()
    with pytest.raises(audience.AudienceError, match="no phone"):
        await imported(w.store, "name,balance\nJane,1\n")
    with pytest.raises(audience.AudienceError, match="empty"):
        await imported(w.store, "")


async def test_a_collections_file_without_its_debt_column_is_refused_whole():
    """Caps and the quiet period count per debt: without the column they would silently
    count per address instead."""
    w = await world()
    with pytest.raises(audience.AudienceError, match=r"^no 'account' column: a collections audience names the debt"):
        await imported(w.store, "phone,name\n+12125551234,Ann\n")
    named = parse_campaign(CAMPAIGN.replace('kind = "collections"', 'kind = "collections"\ndebt_field = "loan_no"'))
    report = await audience.import_csv(w.store, named, io.StringIO("phone,name,Loan No\n+12125551234,Ann,L-9\n"))
    assert report.imported == 1  # a header names the field as a template would: "Loan No" is loan_no
    marketing = parse_campaign(CAMPAIGN.replace('kind = "collections"', 'kind = "cross_sell"'))
    report = await audience.import_csv(w.store, marketing, io.StringIO("phone,name\n+12125551235,Bo\n"))
    assert report.imported == 1


class Streamed:
    """A file that hands out its lines one at a time and counts how many were read."""

    def __init__(self, rows: int) -> None:
        self.lines = ["phone,name,account\n"] + [f"+1212555{i:04d},n{i},a{i}\n" for i in range(rows)]
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

    async def chunk(*args):
        seen_before_reading.append(source.read)  # lines read when this batch is written
        return await real_chunk(*args)

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


@pytest.mark.parametrize("zone", ["EST", "MST", "HST", "EST5EDT", "UTC", "Etc/GMT+5", "Japan"])
async def test_a_zone_that_names_no_place_is_refused_with_its_line_and_the_way_out(zone):
    """EST is UTC-5 all year: a New Yorker's window judged in it is an hour off all summer."""
    w = await world()
    report, recipients = await imported(
        w.store, f"phone,name,account,timezone\n+12125551234,Ann,A1,{zone}\n+12125551235,Bo,A2,America/New_York\n"
    )
    assert [r.fields["name"] for r in recipients] == ["Bo"]
    [(line, reason)] = report.rejects
    assert line == 2
    assert reason == (
        f"time zone {zone!r} is an abbreviation or a fixed offset, not a place: give the recipient's IANA zone "
        "(such as America/New_York, which keeps daylight saving time), or leave it empty to use the phone number's"
    )


def refusal(data: bytes, chunk: int = audience.CHECK_BYTES) -> str:
    with pytest.raises(audience.AudienceError) as caught:
        audience.check_utf8(io.BytesIO(data), chunk)
    return str(caught.value)


def test_a_file_that_is_not_utf8_is_refused_at_its_first_bad_bytes_by_line_and_byte():
    assert refusal(b"\xffphone\n").startswith(
        "line 1, byte 1 (byte 1 of the file): FF is not UTF-8 (invalid start byte)"
    )
    data = "phone,name\n+12125550100,Zoë\n+12125550101,Jos".encode() + b"\xe9\n"
    expected = "line 3, byte 17 (byte 46 of the file): E9 is not UTF-8 (invalid continuation byte)"
    # wherever the reads cut the file, even inside the ë before it or right at the bad byte
    for chunk in (1, 2, 3, 7, 27, 28, 45, 46, 1 << 20):
        assert refusal(data, chunk).startswith(expected), chunk
    assert refusal("ë".encode()[:1]).startswith("line 1, byte 1 (byte 1 of the file): C3 is not UTF-8 (unexpected end")
    for good in (b"", "\ufeffphone,name\n+12125550100,Zoë\n".encode(), b"a\r\nb\r\n"):
        for chunk in (1, 2, 1 << 20):
            audience.check_utf8(io.BytesIO(good), chunk)  # no error


def rows(count: int) -> list[str]:
    return ["phone,name,account\n"] + [f"+1212555{i:04d},P{i},A{i}\n" for i in range(count)]


def cut_short(lines: list[str], after: int):
    """The file's lines until the import dies (a killed command, a lost store) after `after`."""
    yield from lines[: after + 1]
    raise KeyboardInterrupt


async def test_importing_again_after_an_import_cut_short_adds_the_rest_and_refuses_nothing():
    w = await world()
    campaign = parse_campaign(CAMPAIGN)
    with pytest.raises(KeyboardInterrupt):
        await audience.import_csv(w.store, campaign, cut_short(rows(2500), 2300))  # type: ignore[arg-type]
    keys = Keys("acme")
    assert await w.store.redis.zcard(keys.campaign_due("spring")) == 2000  # the batches written before
    again = await audience.import_csv(w.store, campaign, io.StringIO("".join(rows(2500))))
    assert (again.imported, again.rejected, again.already) == (500, 0, 2000)
    assert await w.store.redis.zcard(keys.campaign_due("spring")) == 2500
    # A changed row, or a repeat within the file, is still a duplicate.
    changed = rows(1)[0] + "+12125550000,Someone else,A0\n+12125559999,New,A9\n+1 212 555 9999,New again,A9\n"
    third = await audience.import_csv(w.store, campaign, io.StringIO(changed))
    assert (third.imported, third.already) == (1, 0)
    assert [line for line, _reason in third.rejects] == [2, 4]


async def test_an_address_an_earlier_import_claimed_but_never_stored_is_imported_on_the_rerun():
    w = await world()
    campaign = parse_campaign(CAMPAIGN)
    keys = Keys("acme")
    # the import died between claiming the address and storing its row
    await w.store.redis.hset(keys.campaign("spring"), "rows", 1)
    await w.store.redis.hset(keys.campaign_audience("spring"), "@+12125550000", 1)
    report = await audience.import_csv(w.store, campaign, io.StringIO("".join(rows(2))))
    assert (report.imported, report.rejected) == (2, 0)
    [(seq, _due)] = await w.store.redis.zrange(keys.campaign_due("spring"), 0, 0, withscores=True)
    recipient = decode_recipient(await w.store.redis.hget(keys.campaign_audience("spring"), seq))
    assert recipient.phone == "+12125550000"
    assert await w.store.redis.hget(keys.campaign_audience("spring"), "@+12125550000") == seq
