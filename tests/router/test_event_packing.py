"""The events every contact causes (queued, message, reserved) are packed by
hand in Lua (lib.lua's EVENT_TAIL): they must decode to what msgspec expects,
whatever the lengths of their strings and the sign or size of their numbers,
on Redis (cmsgpack's neighbour) and on the embedded store alike."""

from importlib import resources

import msgspec

from router import events, scripts
from tests.factories import World, contact, world

QUEUE = "q" * 40  # past a fixstr's 31 bytes
CONFIG = f"""
[[tenants]]
id = "acme"
entry = {{ default = "{QUEUE}" }}

[[tenants.queues]]
id = "{QUEUE}"
target = "true"
reservation_timeout = 45

[[tenants.agents]]
id = "amy"
capacity = {{ sms = 10, total = 10 }}
"""

CASES = [  # (provider id, priority)
    ("p1", 0),
    ("p" * 31, 100),  # the longest fixstr
    ("p" * 32, 1),
    ("p" * 255, 2),
    ("p" * 256, 3),
    ("p" * 1024, 4),  # the longest a provider id may be
    ("<abc@mail.example.com>", 7),
]


async def check_packing(w: World) -> None:
    await w.available("amy")
    sent = [
        contact("acme", address=f"+1555000{i:04d}", provider_id=provider_id, priority=priority)
        for i, (provider_id, priority) in enumerate(CASES)
    ]
    for item in sent:
        await w.deliver(item)
    queued = await w.events(events.Queued)
    added = await w.events(events.MessageAdded)
    reserved = await w.events(events.Reserved)
    expected = [(priority, QUEUE, "acme", "sms") for _id, priority in CASES]
    assert [(e.priority, e.queue, e.tenant, e.channel) for e in queued] == expected
    assert [(e.provider_id, e.message, e.direction, e.agent) for e in added] == [
        (item.provider_id, item.id, "in", "") for item in sent
    ]
    assert [e.customer for e in added] == [e.customer for e in queued] != [""] * len(CASES)
    assert [(e.agent, e.queue, e.reservation) for e in reserved] == [
        ("amy", QUEUE, f"{e.conversation}.1") for e in queued
    ]
    for event in reserved:
        assert event.expires_at == event.occurred_at + 45_000
        assert abs(event.occurred_at - events.now_ms()) < 60_000


async def test_hand_packed_events_decode_on_the_embedded_store():
    await check_packing(await world(CONFIG))


async def test_hand_packed_events_decode_on_redis(real_store):
    await check_packing(await world(CONFIG, store=real_store))


# The pieces by themselves, at every boundary of their encodings.
NUMBERS = [0, 127, 128, 255, 65_536, 2**32, 1_700_000_000_000, -1, -32, -33, -100, -(2**31)]
STRINGS = ["", "x" * 31, "x" * 32, "x" * 255, "x" * 256, "x" * 65_535, "x" * 65_536, "h\u00e9llo"]
PIECES = """
local out = {}
for i = 1, #ARGV do
  if i <= tonumber(ARGV[1]) + 1 then
    if i > 1 then out[#out + 1] = mp_int(tonumber(ARGV[i])) end
  else
    out[#out + 1] = str_head(ARGV[i]) .. ARGV[i]
  end
end
return "\\220" .. string.char(math.floor((#out) / 256), #out % 256) .. table.concat(out)
"""


async def check_pieces(redis) -> None:
    lib = resources.files("router").joinpath("lua", "lib.lua").read_text("utf-8")
    script = scripts.prelude(lib, PIECES) + "\n" + PIECES
    packed = await redis.eval(script, 1, "cr:{acme}", len(NUMBERS), *NUMBERS, *STRINGS)
    assert msgspec.msgpack.decode(packed) == NUMBERS + STRINGS


async def test_packing_pieces_on_the_embedded_store():
    await check_pieces((await world()).store.redis)


async def test_packing_pieces_on_redis(real_store):
    await check_pieces(real_store.redis)
