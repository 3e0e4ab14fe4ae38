"""router.scripts: every script a .lua file in one registry; each carries the parts of
lib.lua it uses, and no others; the long argument lists are named as the scripts read them."""

from __future__ import annotations

import inspect
import re
import tomllib
from importlib import resources
from pathlib import Path

import fakeredis
import pytest

from router import atomic, events, scripts
from router.keys import Keys
from workers.campaigns import scripts as campaign_scripts

LIB = """-- header
local B = KEYS[1]

local CHANNELS = {"sms"}

-- a helper
local function now_ms()
  return 1
end
local NOW = now_ms()

local function emit(event)
  event.at = NOW

  return B
end

local function unused()
  return CHANNELS
end
"""


def test_a_script_gets_the_blocks_it_names_and_those_they_need_in_lib_order():
    source = scripts.prelude(LIB, 'emit({type = "x"})')
    assert source.startswith("-- header\nlocal B = KEYS[1]")
    assert "local function now_ms()" in source and "local NOW = now_ms()" in source
    assert "event.at = NOW\n\n  return B" in source, "a blank line inside a function does not end its block"
    assert "CHANNELS" not in source and "unused" not in source
    assert source.index("local B") < source.index("local NOW") < source.index("local function emit")


def test_names_in_comments_and_strings_pull_in_nothing():
    assert scripts.prelude(LIB, '-- emit\nreturn redis.call("GET", "NOW")') == ""


def test_the_routing_scripts_define_only_what_they_use():
    assert "local function" not in scripts.source("ingest")
    assert "local function emit" not in scripts.source("claim_timers")
    intake = scripts.source("intake")
    assert "local function pick" in intake and "local function refresh_ready" not in intake


def test_every_lua_file_is_a_registered_script_and_runs_as_one():
    folder = resources.files("router").joinpath("lua")
    files = {p.relative_to(folder).with_suffix("").as_posix() for p in Path(str(folder)).rglob("*.lua")}
    assert set(scripts.NAMES) == files - {"lib"}
    assert {"campaigns/send", "campaigns/claim", "outbox_send", "lease", "intake"} <= set(scripts.NAMES)


def test_lib_lua_lists_the_channels_of_router_events_in_their_order():
    defined = re.search(r"^local CHANNELS = \{(.*)\}", scripts.lib(), re.MULTILINE)
    assert defined is not None
    assert tuple(re.findall(r'"(\w+)"', defined.group(1))) == events.CHANNELS
    assert "local CHANNELS = {}" not in scripts.source("assign_agent")


# `local a, b = ARGV[at + 1], tonumber(ARGV[at + 2])`: names, then expressions
_LOCALS = re.compile(r"^\s*local ([\w, ]+?) = (.+)$", re.MULTILINE)
_ARGV = re.compile(r"ARGV\[(?:(\w+) \+ )?(\d+)\]")


def argv_names(name: str, base: str | None) -> list[str]:
    return argv_names_in(scripts.source(name), base)


def argv_names_in(lua: str, base: str | None) -> list[str]:
    """The names the `local` lines of `lua` give ARGV[base + n] (ARGV[n] when base is
    None), in the order of n from 1; fails on a gap."""
    found: dict[int, str] = {}
    for names, values in _LOCALS.findall(lua):
        for local, value in zip(names.split(","), re.split(r",\s*(?![^(]*\))", values), strict=False):
            argv = _ARGV.search(value)
            if argv and argv.group(1) == base:
                found[int(argv.group(2))] = local.strip().lower()
    assert sorted(found) == list(range(1, len(found) + 1)), f"ARGV offsets {sorted(found)}"
    return [found[n] for n in sorted(found)]


def test_intake_args_are_named_as_intake_lua_reads_them():
    assert argv_names("intake", None) == list(atomic.IntakeBatch._fields)
    assert argv_names("intake", "at") == list(atomic.IntakeArgs._fields)
    sizes = re.search(r"local ARGS_PER_CONTACT, HEADER = (\d+), (\d+)", scripts.source("intake"))
    assert sizes is not None
    assert (int(sizes.group(1)), int(sizes.group(2))) == (
        len(atomic.IntakeArgs._fields),
        len(atomic.IntakeBatch._fields),
    )


def test_campaign_send_args_are_named_as_send_lua_reads_them():
    assert argv_names("campaigns/send", None) == list(campaign_scripts.SendBatch._fields)
    assert argv_names("campaigns/send", "at") == list(campaign_scripts.RecipientArgs._fields)
    sizes = re.search(r"local HEAD, PER_RECIPIENT = (\d+), (\d+)", scripts.source("campaigns/send"))
    assert sizes is not None
    assert (int(sizes.group(1)), int(sizes.group(2))) == (
        len(campaign_scripts.SendBatch._fields),
        len(campaign_scripts.RecipientArgs._fields),
    )


def test_campaign_begin_send_args_are_named_as_begin_send_lua_reads_them():
    assert argv_names("campaigns/begin_send", None) == list(campaign_scripts.SendCheck._fields)
    assert argv_names("campaigns/begin_send", "at") == list(campaign_scripts.CapArgs._fields)
    sizes = re.search(r"local HEAD, PER_CAP = (\d+), (\d+)", scripts.source("campaigns/begin_send"))
    assert sizes is not None
    assert (int(sizes.group(1)), int(sizes.group(2))) == (
        len(campaign_scripts.SendCheck._fields),
        len(campaign_scripts.CapArgs._fields),
    )


def test_the_header_reader_sees_a_gap_in_the_arguments():
    assert argv_names_in("local a, b = ARGV[at + 1], tonumber(ARGV[at + 2])", "at") == ["a", "b"]
    with pytest.raises(AssertionError, match="offsets"):
        argv_names_in("local a, b = ARGV[at + 1], tonumber(ARGV[at + 2])\nlocal c = ARGV[at + 4]", "at")


def test_every_script_has_its_one_typed_call():
    for name in scripts.NAMES:
        folder, _, stem = name.rpartition("/")
        module = campaign_scripts if folder == "campaigns" else atomic
        assert hasattr(module, stem) or hasattr(module, f"{stem}_call"), f"{name} has no call in {module.__name__}"


def test_only_the_calls_of_the_scripts_reach_the_registry():
    root = Path(__file__).resolve().parents[2]
    owners = {root / "router" / "atomic.py", root / "workers" / "campaigns" / "scripts.py"}
    reaching = [
        f"{path.relative_to(root)}:{n}"
        for package in ("router", "channels", "workers", "ops")
        for path in sorted((root / package).rglob("*.py"))
        if path not in owners
        for n, line in enumerate(path.read_text("utf-8").splitlines(), 1)
        if re.search(r"\bscripts(\.[a-z_]+\(|\[)", line) and "store.scripts" in line
    ]
    assert reaching == []


# lib.lua's key builders and the Keys members they stand for: (Lua, Keys member, arguments)
_KEY_BUILDERS = [
    ("identities_key", "identities", ()),
    ("threads_key", "threads", ()),
    ("queues_key", "queues", ()),
    ("timers_key", "timers", ()),
    ("retries_key", "retries", ()),
    ("events_key", "events", ()),
    ("inbound_key", "inbound", ()),
    ("customer_key", "customer", ("c1",)),
    ("customer_conversations_key", "customer_conversations", ("c1",)),
    ("conversation_key", "conversation", ("v1",)),
    ("conversation_log_key", "conversation_log", ("v1",)),
    ("conversation_declined_key", "conversation_declined", ("v1",)),
    ("waiting_key", "waiting", ("sales",)),
    ("waiting_on_key", "waiting_on", ("sales", "sms")),
    ("members_key", "members", ("sales", 2)),
    ("agent_key", "agent", ("ann",)),
    ("agent_queues_key", "agent_queues", ("ann",)),
    ("agent_work_key", "agent_work", ("ann",)),
    ("ready_key", "ready", ("voice",)),
    ("reservation_key", "reservation", ("v1.2",)),
    ("delivery_key", "delivery", ("m1",)),
    ("provider_message_key", "provider_message", ("SM1",)),
    ("suppression_key", "suppression", ("sms",)),
    ("do_not_contact_key", "do_not_contact", ()),
    ("revocations_key", "revocations", ()),
]


def test_lib_lua_builds_every_key_as_router_keys_does():
    builders = scripts.key_builders(scripts.lib())
    assert set(builders) == {lua for lua, _member, _args in _KEY_BUILDERS}, "a builder without its row here"
    assert set(builders) == set(re.findall(r"^local function (\w+_key)\b", scripts.lib(), re.MULTILINE))
    calls = [f"{lua}({', '.join(map(repr, args))})" for lua, _member, args in _KEY_BUILDERS]
    body = "return {" + ", ".join(calls) + "}"  # (Lua reads Python's reprs of strings and numbers)
    keys = Keys("acme")
    python = [getattr(keys, member)(*args) if args else getattr(keys, member) for _lua, member, args in _KEY_BUILDERS]
    called = fakeredis.FakeRedis().eval(scripts.prelude(scripts.lib(), body) + "\n" + body, 1, keys.base)
    written_out = fakeredis.FakeRedis().eval("local B = KEYS[1]\n" + scripts.inline_keys(body, builders), 1, keys.base)
    assert [key.decode() for key in called] == python
    assert [key.decode() for key in written_out] == python


def test_a_builder_call_is_written_out_with_its_arguments_whatever_they_hold():
    builders = scripts.key_builders(scripts.lib())
    lua = 'x(members_key(q, f[3] or "0"), agent_work_key(agent_key(a)), timers_key(), "conversation_key(x)")'
    assert scripts.inline_keys(lua, builders) == (
        'x((B .. ":q:" .. (q) .. ":m:" .. (f[3] or "0")), (B .. ":agent:" .. ((B .. ":agent:" .. (a))) .. ":work"), '
        '(B .. ":timers"), "conversation_key(x)")'
    )
    for name in scripts.NAMES:
        assert "_key(" not in scripts.source(name), f"{name} calls a builder at run time"


def test_no_script_spells_a_key_of_its_own():
    for name in scripts.NAMES:
        own = resources.files("router").joinpath("lua", f"{name}.lua").read_text("utf-8")
        assert not re.findall(r'(?:\bB|KEYS\[\d\]) \.\. ":', own), f"{name} builds a key outside lib.lua"


def test_the_package_data_ships_every_lua_file():
    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text("utf-8"))["tool"]["setuptools"]["package-data"]
    shipped = {path for pattern in patterns["router"] for path in (root / "router").glob(pattern)}
    assert set((root / "router" / "lua").rglob("*.lua")) <= shipped


def test_settlement_args_are_named_as_settle_lua_reads_them():
    assert argv_names("campaigns/settle", "at") == list(campaign_scripts.Settlement._fields)


class _Captured(Exception):
    def __init__(self, keys: list, args: list) -> None:
        self.sent = (list(keys), list(args))


class _Recorder:
    """A store whose scripts (and EVALSHA) only record the keys and arguments they are sent."""

    def __init__(self) -> None:
        self.scripts = self
        self.redis = self

    def __getattr__(self, name: str):
        return self[name]

    def __getitem__(self, name: str):
        async def call(keys: list, args: list, client=None):
            raise _Captured(keys, args)

        call.sha = "0" * 40
        return call

    async def execute_command(self, *command):  # scripts.call: EVALSHA sha numkeys keys... args...
        raise _Captured(command[3 : 3 + command[2]], command[3 + command[2] :])


# Lua's short names for what the Python side spells out
_ALIASES = {"conv": "conversation", "res": "reservation", "err": "error"}
# values a call turns into others before sending (a flag, lists of pairs)
_CONVERTED = {"fields": {}, "order": {}, "buckets": [], "only_unanswered": False}
_STRUCTS = {"intake", "campaigns/send", "campaigns/settle", "campaigns/begin_send"}  # checked field by field above


async def sent_by(name: str) -> tuple[list[str], list, list]:
    """Call the one call of script `name` with each parameter's name as its value: its
    parameters, and the keys and arguments it sent."""
    folder, _, stem = name.rpartition("/")
    module = campaign_scripts if folder == "campaigns" else atomic
    call = getattr(module, stem, None) or getattr(module, f"{stem}_call")
    params = [p.name for p in inspect.signature(call).parameters.values() if p.kind is not p.VAR_KEYWORD]
    given = {p: _CONVERTED.get(p, f"<{p}>") for p in params if p != "store"}
    try:
        made = call(_Recorder(), **given)
        keys, args = ([made.base], made.args) if isinstance(made, scripts.Call) else await made
    except _Captured as captured:
        keys, args = captured.sent
    return [p for p in params if p != "store" and p not in _CONVERTED], keys, args


async def test_every_call_sends_its_arguments_in_the_order_its_script_names_them():
    for name in sorted(set(scripts.NAMES) - _STRUCTS):
        params, keys, args = await sent_by(name)
        as_args = [value[1:-1] for value in args if isinstance(value, str) and value[1:-1] in params]
        # the others go into keys (KEYS, or keys among the arguments, as the campaigns' do)
        built = {p for p in params for sent in keys + args if isinstance(sent, str) and f"<{p}>" in sent}
        assert set(as_args) | built == set(params), f"{name}: {params} sent as {keys}, {args}"
        header = [_ALIASES.get(local, local) for local in argv_names(name, None)]
        assert [local for local in header if local in as_args] == as_args, f"{name} reads {header}, is sent {as_args}"
