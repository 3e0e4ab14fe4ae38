"""Campaign compliance rules: send windows in local time across DST, frequency caps."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.campaigns import compliance
from router.campaigns.model import COLLECTIONS_CALL_CAP, Cap, Window, parse_campaign

ZONES = [
    "America/New_York",
    "America/Los_Angeles",
    "America/Phoenix",
    "Europe/London",
    "Europe/Madrid",
    "Australia/Lord_Howe",  # a 30-minute DST shift
    "Australia/Sydney",
    "Asia/Kolkata",
    "Pacific/Chatham",
    "America/St_Johns",
    "UTC",
]
COLLECTIONS = Window(start="08:00", end="21:00")
DAY_MS = compliance.DAY_MS

instants = st.datetimes(
    min_value=dt.datetime(2025, 1, 1), max_value=dt.datetime(2028, 12, 31), timezones=st.just(dt.UTC)
)
windows = st.builds(
    lambda start, length, days: Window(
        start=f"{start // 60:02d}:{start % 60:02d}",
        end=f"{min(start + length, 1440) // 60:02d}:{min(start + length, 1440) % 60:02d}",
        days=days,
    ),
    st.integers(0, 23 * 60).map(lambda m: m - m % 15),
    st.integers(15, 16 * 60).map(lambda m: m - m % 15),
    st.lists(st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]), min_size=1, unique=True),
)


def local_minutes(when: dt.datetime, zone: str) -> int:
    local = when.astimezone(ZoneInfo(zone))
    return local.hour * 60 + local.minute


@settings(max_examples=300, deadline=None)
@given(when=instants, zone=st.sampled_from(ZONES))
def test_collections_never_scheduled_outside_8_to_21_local_time(when, zone):
    at = compliance.next_allowed(when, [zone], COLLECTIONS)
    assert at >= when.replace(microsecond=0)
    assert 8 * 60 <= local_minutes(at, zone) < 21 * 60
    assert at - when < dt.timedelta(days=2)


@settings(max_examples=300, deadline=None)
@given(when=instants, zones=st.lists(st.sampled_from(ZONES), min_size=1, max_size=3, unique=True), window=windows)
def test_the_next_allowed_instant_is_inside_the_window_in_every_possible_zone(when, zones, window):
    try:
        at = compliance.next_allowed(when, zones, window)
    except compliance.NoWindow:
        return
    assert at >= when.replace(microsecond=0)
    assert compliance.allowed(at, zones, window)
    for zone in zones:
        local = at.astimezone(ZoneInfo(zone))
        assert ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[local.weekday()] in window.days


@settings(max_examples=200, deadline=None)
@given(when=instants, zone=st.sampled_from(ZONES))
def test_an_instant_inside_the_window_goes_at_once(when, zone):
    when = when.replace(microsecond=0)
    if compliance.allowed(when, [zone], COLLECTIONS):
        assert compliance.next_allowed(when, [zone], COLLECTIONS) == when


def test_across_the_spring_forward_change_the_window_follows_the_local_clock():
    # 2026-03-08: New York goes from EST (UTC-5) to EDT (UTC-4) at 02:00.
    before = dt.datetime(2026, 3, 7, 12, 30, tzinfo=dt.UTC)  # 07:30 EST
    assert compliance.next_allowed(before, ["America/New_York"], COLLECTIONS) == dt.datetime(
        2026, 3, 7, 13, 0, tzinfo=dt.UTC
    )
    after = dt.datetime(2026, 3, 8, 11, 30, tzinfo=dt.UTC)  # 07:30 EDT: the same UTC hour would be 06:30 EST
    assert compliance.next_allowed(after, ["America/New_York"], COLLECTIONS) == dt.datetime(
        2026, 3, 8, 12, 0, tzinfo=dt.UTC
    )
    late = dt.datetime(2026, 3, 9, 1, 0, tzinfo=dt.UTC)  # 21:00 EDT on the 8th: closed
    assert not compliance.allowed(late, ["America/New_York"], COLLECTIONS)


def test_a_window_starting_in_the_skipped_hour_opens_just_after_it():
    window = Window(start="02:30", end="05:00")
    at = compliance.next_allowed(dt.datetime(2026, 3, 8, 5, 0, tzinfo=dt.UTC), ["America/New_York"], window)
    local = at.astimezone(ZoneInfo("America/New_York"))
    assert local.date() == dt.date(2026, 3, 8) and (local.hour, local.minute) == (3, 30)


def test_zones_that_share_no_allowed_hour_mean_no_window():
    with pytest.raises(compliance.NoWindow):
        compliance.next_allowed(
            dt.datetime(2026, 6, 1, tzinfo=dt.UTC),
            ["Pacific/Honolulu", "Asia/Tokyo"],
            Window(start="09:00", end="11:00"),
        )


def test_a_phone_number_gives_its_zones_and_an_explicit_zone_narrows_them_never_widens():
    assert compliance.zones_for("+12125551234", "", "UTC") == ("America/New_York",)
    assert compliance.zones_for("+12125551234", "America/New_York", "UTC") == ("America/New_York",)
    # A zone the number's region is not in: the window must be open in both.
    assert compliance.zones_for("+12125551234", "Europe/Paris", "UTC") == ("Europe/Paris", "America/New_York")
    # One of the region's zones: just that one (the file knows which side of the line).
    assert compliance.zones_for("+34600123456", "Atlantic/Canary", "UTC") == ("Atlantic/Canary",)
    assert compliance.zones_for("", "Europe/Paris", "UTC") == ("Europe/Paris",)  # an email-only row
    assert compliance.zones_for("+34600123456", "", "UTC") == ("Atlantic/Canary", "Europe/Madrid")
    assert compliance.zones_for("+15551230000", "", "Europe/Dublin") == ("Europe/Dublin",)  # a fictional number
    assert compliance.zones_for("", "", "Europe/Dublin") == ("Europe/Dublin",)


SEVEN_IN_SEVEN = Cap(channel="voice", max=7, days=7, quiet_days=7)


@settings(max_examples=150, deadline=None)
@given(
    gaps=st.lists(st.integers(0, 3 * DAY_MS), min_size=1, max_size=40),
    talks=st.lists(st.integers(0, 40), max_size=3),
)
def test_no_seven_day_span_ever_holds_more_than_seven_call_attempts(gaps, talks):
    """A dialler that calls whenever the cap allows (and asks again at once otherwise)."""
    now = 1_800_000_000_000
    attempts: list[int] = []
    talked = 0
    for index, gap in enumerate(gaps):
        now += gap
        if index in talks:
            talked = now
        at = compliance.cap_allows_at(attempts, talked, now, SEVEN_IN_SEVEN)
        assert at >= now
        attempts.append(at)
        now = at
        window_start = at - 7 * DAY_MS
        assert sum(1 for a in attempts if a > window_start) <= 7
        if talked:
            assert at >= talked + 7 * DAY_MS


def test_the_eighth_call_waits_until_the_first_leaves_the_seven_days():
    first = 1_800_000_000_000
    attempts = [first + i * 3_600_000 for i in range(7)]
    now = attempts[-1] + 60_000
    assert compliance.cap_allows_at(attempts, 0, now, SEVEN_IN_SEVEN) == first + 7 * DAY_MS
    assert compliance.cap_allows_at(attempts[:6], 0, now, SEVEN_IN_SEVEN) == now


def test_no_call_for_seven_days_after_a_conversation_about_the_debt():
    talked = 1_800_000_000_000
    assert compliance.cap_allows_at([], talked, talked + DAY_MS, SEVEN_IN_SEVEN) == talked + 7 * DAY_MS


def test_collections_always_carry_the_legal_call_cap_and_hours():
    campaign = parse_campaign(
        """
        id = "c1"
        tenant = "acme"
        kind = "collections"
        channel = "sms"
        queue = "support"
        window = { start = "07:00", end = "22:00" }
        [templates.sms.en]
        body = "Hi"
        """
    )
    assert campaign.effective_window() == Window(start="08:00", end="21:00")
    [cap] = campaign.effective_caps()
    assert (cap.channel, cap.max, cap.days, cap.quiet_days) == ("voice", *COLLECTIONS_CALL_CAP)


def test_a_debt_is_capped_as_a_debt_and_anyone_else_by_address():
    assert compliance.cap_subject("collections", "voice", "+1", {"account": "A-9"}, "account") == "debt:A-9"
    assert compliance.cap_subject("collections", "voice", "+1", {}, "account") == "addr:+1"
    assert compliance.cap_subject("cross_sell", "voice", "+1", {"account": "A-9"}, "account") == "addr:+1"


caps_of_a_channel = st.lists(
    st.builds(
        lambda channel, most, days, quiet: Cap(channel=channel, max=most, days=days, quiet_days=quiet),
        st.sampled_from(["sms", "email"]),
        st.integers(1, 5),
        st.integers(1, 10),
        st.sampled_from([0, 0, 1, 3]),
    ),
    min_size=1,
    max_size=3,
)


def campaign_with_caps(kind: str, caps: list[Cap]):
    """A campaign of the kind whose `[[caps]]` are these, through the file format."""
    blocks = "".join(
        f'[[caps]]\nchannel = "{c.channel}"\nmax = {c.max}\ndays = {c.days}\nquiet_days = {c.quiet_days}\n'
        for c in caps
    )
    return parse_campaign(
        f'id = "c1"\ntenant = "acme"\nkind = "{kind}"\nchannel = "sms"\nfallback_channel = "email"\n'
        f'queue = "q"\n{blocks}[templates.sms.en]\nbody = "Hi"\n'
        '[templates.email.en]\nsubject = "Hi"\nbody = "Hi"\n'
    )


@settings(max_examples=150, deadline=None)
@given(
    kind=st.sampled_from(["collections", "cross_sell", "notice"]),
    caps=caps_of_a_channel,
    sends=st.lists(st.tuples(st.sampled_from(["sms", "email"]), st.integers(0, 2 * DAY_MS)), min_size=1, max_size=40),
    talks=st.lists(st.integers(0, 40), max_size=3),
)
def test_text_and_email_caps_of_every_kind_are_never_exceeded(kind, caps, sends, talks):
    """A sender that texts or emails whenever the campaign's caps allow, for each kind: no
    `days` span ever holds more than `max` attempts on the cap's channel, none goes within
    `quiet_days` of a conversation, and several caps on one channel all hold."""
    effective = campaign_with_caps(kind, caps).effective_caps()
    assert [c for c in effective if c.channel in ("sms", "email")] == caps  # the kind keeps them all
    now = 1_800_000_000_000
    attempts: dict[str, list[int]] = {"sms": [], "email": []}
    talked = 0
    for index, (channel, gap) in enumerate(sends):
        now += gap
        if index in talks:
            talked = now
        at = compliance.caps_allow_at(effective, channel, attempts[channel], talked, now)
        assert at >= now
        attempts[channel].append(at)
        now = at
        for cap in effective:
            if cap.channel != channel:
                continue
            assert sum(1 for a in attempts[channel] if a > at - cap.days * DAY_MS) <= cap.max
            if talked and cap.quiet_days:
                assert at >= talked + cap.quiet_days * DAY_MS


@settings(max_examples=100, deadline=None)
@given(gaps=st.lists(st.integers(0, DAY_MS), min_size=4, max_size=30))
def test_at_most_three_collections_texts_per_debt_in_seven_days(gaps):
    """The example of the issue: `[[caps]] channel = "sms", max = 3, days = 7` for collections."""
    effective = campaign_with_caps("collections", [Cap(channel="sms", max=3, days=7)]).effective_caps()
    now, texts = 1_800_000_000_000, []
    for gap in gaps:
        now = compliance.caps_allow_at(effective, "sms", texts, 0, now + gap)
        texts.append(now)
    for index in range(3, len(texts)):
        assert texts[index] - texts[index - 3] >= 7 * DAY_MS  # the 4th text waits for the 1st to age out
    assert compliance.caps_allow_at(effective, "email", texts, 0, now) == now  # email is not capped


def test_each_kind_counts_its_own_attempts_and_collections_count_per_debt():
    debt = compliance.cap_subject("collections", "sms", "+1", {"account": "A-9"}, "account")
    assert compliance.attempts_subject("collections", debt) == "debt:A-9"
    marketing = compliance.cap_subject("cross_sell", "sms", "+1", {"account": "A-9"}, "account")
    assert compliance.attempts_subject("cross_sell", marketing) == "cross_sell:addr:+1"
    assert compliance.attempts_subject("notice", "addr:+1") != compliance.attempts_subject("cross_sell", "addr:+1")


@settings(max_examples=300, deadline=None)
@given(when=instants, zones=st.lists(st.sampled_from(ZONES), min_size=1, max_size=3, unique=True), window=windows)
def test_the_span_the_dispatcher_is_given_never_reaches_outside_the_window(when, zones, window):
    span = compliance.open_span(when, zones, window)
    if span is None:
        assert not compliance.allowed(when, zones, window)
        return
    start, end = span
    assert start <= when < end and end - start <= 2 * compliance.SPAN_REACH + dt.timedelta(minutes=1)
    # every second of it is inside the window in every zone, its edges too
    for instant in (start, end - dt.timedelta(seconds=1), start + (end - start) / 2):
        assert compliance.allowed(instant, zones, window)
    minute = dt.timedelta(minutes=1)
    probe = start
    while probe < end:
        assert compliance.allowed(probe, zones, window) and compliance.allowed(probe + minute / 2, zones, window)
        probe += minute
    # and it is as long as it may be: short of its reach only at the window's edge
    floor = when.replace(second=0, microsecond=0)
    if end - floor < compliance.SPAN_REACH:
        assert not compliance.allowed(end, zones, window)
    if floor - start < compliance.SPAN_REACH:
        assert not compliance.allowed(start - dt.timedelta(seconds=1), zones, window)


def test_the_span_ends_at_21_00_local_and_includes_no_later_second():
    nine_pm = dt.datetime(2027, 6, 1, 21, tzinfo=ZoneInfo("America/New_York"))
    span = compliance.open_span(nine_pm - dt.timedelta(seconds=30), ["America/New_York"], COLLECTIONS)
    assert span is not None and span[1] == nine_pm
    assert compliance.open_span(nine_pm, ["America/New_York"], COLLECTIONS) is None


def test_a_row_zone_that_contradicts_the_number_s_region_does_not_open_the_window():
    """The case that found it: a New York number whose row says Pacific/Honolulu was texted
    at 21:30 in New York (15:30 in Honolulu), past the 21:00 collections limit there."""
    zones = compliance.zones_for("+12125551234", "Pacific/Honolulu", "UTC")
    window = Window(start="08:00", end="21:00")
    half_past_nine_ny = dt.datetime(2027, 6, 2, 1, 30, tzinfo=dt.UTC)
    assert not compliance.allowed(half_past_nine_ny, zones, window)
    # Next: 14:00 in New York, which is 08:00 in Honolulu.
    assert compliance.next_allowed(half_past_nine_ny, zones, window) == dt.datetime(2027, 6, 2, 18, 0, tzinfo=dt.UTC)
