"""router.scripts: each script carries the parts of lib.lua it uses, and no others."""

from __future__ import annotations

from router import scripts

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
