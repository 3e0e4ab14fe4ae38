"""Event schemas: what may cross a stream, and how it is encoded."""

import msgspec
import pytest

from router import events
from tests.factories import contact, outbound


def test_ids_are_unique_and_sort_in_creation_order():
    ids = [events.new_id() for _ in range(50)]
    assert len(set(ids)) == 50
    assert all(len(i) == 26 for i in ids)
    assert events.new_id() > ids[0]


def test_inbound_contact_round_trips_through_messagepack():
    item = contact(body="héllo 你好", subject="Re: bill", thread=("<a@x>",), metadata={"ivr": "2"}, priority=7)
    assert events.decode_inbound(events.encode(item)) == item


def test_outbound_message_round_trips_through_messagepack():
    message = outbound(body="thanks", agent="amy", automatic=True)
    assert events.decode_outbound(events.encode(message)) == message


@pytest.mark.parametrize(
    "change",
    [
        {"tenant": "Not A Tenant"},  # tenant ids are lower-case slugs
        {"tenant": ""},
        {"address": ""},  # an address is required
        {"provider_id": ""},  # the de-duplication key is required
        {"priority": 101},  # priorities are 0..100
        {"channel": "pigeon"},
    ],
)
def test_an_invalid_contact_is_refused_before_it_is_encoded(change):
    valid = msgspec.structs.asdict(contact())
    with pytest.raises(events.InvalidEvent, match="InboundContact"):
        events.build(events.InboundContact, {**valid, **change})


def test_encode_validates_a_struct_built_without_checks():
    # A Struct constructed directly skips constraint checks; encode() must catch it.
    bad = events.InboundContact(id="c1", tenant="UPPER", channel="sms", address="+1", provider_id="p", occurred_at=1)
    with pytest.raises(events.InvalidEvent, match="tenant"):
        events.encode(bad)


def test_a_body_over_the_limit_is_refused():
    bad = msgspec.structs.replace(contact(), body="x" * 1_000_001)
    with pytest.raises(events.InvalidEvent):
        events.encode(bad)


def test_state_events_decode_by_their_type_tag_and_take_the_stream_id():
    event = events.Accepted(tenant="acme", occurred_at=5, reservation="r1", agent="amy", waited_ms=1200)
    decoded = events.decode_state(events.encode(event), "17-0")
    assert isinstance(decoded, events.Accepted)
    assert decoded.id == "17-0"
    assert (decoded.agent, decoded.waited_ms) == ("amy", 1200)


def test_a_flat_map_like_the_lua_scripts_emit_decodes_as_a_state_event():
    payload = msgspec.msgpack.encode(
        {"type": "timed_out", "tenant": "acme", "occurred_at": 9, "reservation": "c.1", "agent": "amy", "missed": 2}
    )
    decoded = events.decode_state(payload)
    assert decoded == events.TimedOut(tenant="acme", occurred_at=9, reservation="c.1", agent="amy", missed=2)


def test_an_unknown_state_type_does_not_decode():
    payload = msgspec.msgpack.encode({"type": "exploded", "tenant": "acme", "occurred_at": 1})
    with pytest.raises(msgspec.ValidationError):
        events.decode_state(payload)


def test_history_entries_round_trip():
    entry = events.HistoryEntry(id="m1", kind="note", channel="sms", occurred_at=3, body="called back", agent="amy")
    assert events.decode_history(msgspec.msgpack.encode(entry)) == entry
