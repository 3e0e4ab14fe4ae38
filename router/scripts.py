"""The Lua scripts (router/lua/**/*.lua), each one atomic decision: the one registry.

Every script is a file here, whoever calls it: the routing scripts at the top, the
campaigns' in campaigns/. Each gets the parts of lib.lua it uses prepended and the
shard's base key as KEYS[1], so it runs inside one cluster slot (those that use
nothing of lib.lua, such as ingest, get their own keys, under the same hash tag).
Each is called through one typed function with named parameters (router/atomic.py;
workers/campaigns/scripts.py for the campaigns'), so its ARGV order is written once
in Python and once in the script's header. redis-py's Script sends EVALSHA and falls back to EVAL
after a restart emptied the script cache.
"""

from __future__ import annotations

import asyncio
import re
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, NamedTuple

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from router.events import CHANNELS

_FOLDER = resources.files("router").joinpath("lua")
_LIB = "lib"


def _names(folder: Traversable, under: str = "") -> list[str]:
    found = []
    for entry in folder.iterdir():
        if entry.is_dir():
            found += _names(entry, f"{under}{entry.name}/")
        elif entry.name.endswith(".lua"):
            found.append(under + entry.name.removesuffix(".lua"))
    return found


# Every script, by its path under router/lua without ".lua" ("close", "campaigns/send").
NAMES: tuple[str, ...] = tuple(sorted(name for name in _names(_FOLDER) if name != _LIB))

# lib.lua's channel list is router/events.py's, written in when a script is made.
_CHANNELS_LINE = "local CHANNELS = {}"


@cache
def lib() -> str:
    """lib.lua, its CHANNELS filled in from router.events."""
    text = _FOLDER.joinpath(f"{_LIB}.lua").read_text("utf-8")
    if _CHANNELS_LINE not in text:
        raise RuntimeError(f"lib.lua lost its line {_CHANNELS_LINE!r}")
    listed = ", ".join(f'"{channel}"' for channel in CHANNELS)
    return text.replace(_CHANNELS_LINE, f"local CHANNELS = {{{listed}}}", 1)


@cache
def source(name: str) -> str:
    """The script `name` as it runs: the blocks of lib.lua it needs, then its file,
    the calls of lib.lua's key builders written out."""
    if name not in NAMES:
        raise KeyError(name)
    builders = key_builders(lib())
    own = inline_keys(_FOLDER.joinpath(f"{name}.lua").read_text("utf-8"), builders)
    needed = prelude(inline_keys(_BUILDER.sub("", lib()), builders), own)
    return f"{needed}\n{own}" if needed else own


# lib.lua's key builders are one-line functions (`local function conversation_key(id)
# return B .. ":conv:" .. id end`): each key's shape written once, and a test runs them
# against router/keys.py. They are not called at run time: a closure made on every
# call and a call per key cost about 900 instructions a key (callgrind), 9k of close's
# 60k. So a script's call of a builder is replaced by the builder's body, each argument
# in parentheses: the same concatenation the scripts used to spell out.
_BUILDER = re.compile(r"^local function (\w+_key)\(([\w, ]*)\) return (.+) end$", re.MULTILINE)
_STRING = r'"(?:\\.|[^"\\])*"'


def key_builders(lib: str) -> dict[str, tuple[list[str], str]]:
    """lib.lua's key builders: name -> (parameters, body)."""
    found = _BUILDER.findall(lib)
    return {name: ([p.strip() for p in params.split(",") if p.strip()], body) for name, params, body in found}


def inline_keys(code: str, builders: dict[str, tuple[list[str], str]]) -> str:
    """`code` with every call of a key builder replaced by its body."""
    call = re.compile(rf"{_STRING}|\b({'|'.join(builders)})\(")
    at = 0
    while found := call.search(code, at):
        if not found.group(1):  # a string: skipped whole
            at = found.end()
            continue
        params, body = builders[found.group(1)]
        args, end = _arguments(code, found.end())
        if len(args) != len(params):
            raise ValueError(f"{found.group(1)} takes {len(params)} arguments: {code[found.start() : end]}")
        written = _substitute(body, dict(zip(params, args, strict=True)))
        code = f"{code[: found.start()]}({written}){code[end:]}"
        at = found.start()  # an argument may itself call a builder
    return code


def _substitute(body: str, given: dict[str, str]) -> str:
    """A builder's body, each parameter (outside strings) replaced by its argument in parentheses."""
    if not given:
        return body
    names = re.compile(rf"({_STRING})|\b({'|'.join(given)})\b")
    return names.sub(lambda m: m.group(1) or f"({given[m.group(2)]})", body)


def _arguments(code: str, start: int) -> tuple[list[str], int]:
    """The comma-separated arguments of a call whose "(" ends at `start`, and where it ends."""
    args, depth, first, i = [], 1, start, start
    while depth:
        strings = re.match(_STRING, code[i:])
        if strings:
            i += strings.end()
            continue
        ch = code[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 1:
            args.append(code[first:i].strip())
            first = i + 1
        i += 1
    last = code[first : i - 1].strip()
    return ([*args, last] if args or last else []), i


# A script defines every local function of its prelude anew on each call (Lua
# makes a closure per `local function` it runs): with all of lib.lua that was
# about 1.9 us per call on Redis 7.0 (intake's part: 1.3 us). So each script
# gets only the blocks of lib.lua (top-level chunks between blank lines) that
# define a name it uses, directly or through another block, in lib.lua's order.
_DEFINES = re.compile(r"^local (?:function (\w+)|([\w, ]+?)\s*=)", re.MULTILINE)
_NOT_CODE = re.compile(r"--\[\[.*?\]\]|--[^\n]*|\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'", re.DOTALL)
_NAME = re.compile(r"[A-Za-z_]\w*")


def _names_used(code: str) -> set[str]:
    return set(_NAME.findall(_NOT_CODE.sub(" ", code)))


def prelude(lib: str, own: str) -> str:
    """The blocks of `lib` that script `own` needs, in their order."""
    blocks = []
    for block in re.split(r"\n\s*\n(?=\S)", lib):
        defined = {n.strip() for fn, names in _DEFINES.findall(block) for n in (fn or names).split(",")}
        if defined:  # a block of comments only defines nothing
            blocks.append((defined, block))
    wanted, keep = _names_used(own), [False] * len(blocks)
    grown = True
    while grown:  # a block may use names of any block before it
        grown = False
        for i, (defined, block) in enumerate(blocks):
            if not keep[i] and defined & wanted:
                keep[i], grown = True, True
                wanted |= _names_used(block)
    return "\n\n".join(block for (_defined, block), kept in zip(blocks, keep, strict=True) if kept)


class Call(NamedTuple):
    """A script call to run pipelined with others (run_pipelined)."""

    script: Any  # a registered script (Scripts[name])
    base: str  # the shard's base key, KEYS[1]
    args: list


async def load_script(redis: Any, script: Any) -> None:
    """SCRIPT LOAD a registered script and keep the SHA the server gave."""
    sha = await redis.script_load(script.script)
    script.sha = sha.decode() if isinstance(sha, bytes) else sha


class Scripts:
    """Every script, registered on one client: `scripts["campaigns/send"]`, or for the
    routing scripts `scripts.close`. Called through their wrappers, not from here."""

    def __init__(self, redis: Any) -> None:
        self._scripts = {name: redis.register_script(source(name)) for name in NAMES}

    async def load(self, redis: Any) -> None:
        """SCRIPT LOAD them all now. redis-py reloads after NOSCRIPT on its own,
        but fakeredis's TCP server drops the connection on NOSCRIPT instead."""
        for script in self._scripts.values():
            await load_script(redis, script)

    def __getitem__(self, name: str) -> Any:
        return self._scripts[name]

    def __getattr__(self, name: str) -> Any:
        try:
            return self._scripts[name]
        except KeyError:
            raise AttributeError(name) from None


async def call(redis: Any, script: Any, keys: list[str], args: list) -> Any:
    """One call of a registered script, as EVALSHA sent straight through the client.

    For the calls made once per contact (ingest): redis-py's Script.__call__ costs
    about 9 us of Python more per call than the command itself, a sixth of what a
    webhook's ingest costs its process. Reloads the script after NOSCRIPT, as it does.
    """
    try:
        return await redis.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
    except NoScriptError:
        await load_script(redis, script)
        return await redis.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)


async def run_pipelined(redis: Any, calls: list[Call]) -> list:
    """Run (script, base key, args) calls in one pipeline; results (or errors) in order.

    EVALSHA goes out directly: a pipeline given Script objects first asks SCRIPT
    EXISTS, one more round trip (and a cluster pipeline does not load scripts).
    Calls that found their script missing (a restarted Redis, a new cluster node)
    had no effect; they run again once it is loaded.
    """
    if isinstance(redis, RedisCluster):
        return await _per_shard(calls)
    results = await _evalsha_all(redis, calls)
    missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
    if missing:
        for script in {id(calls[i][0]): calls[i][0] for i in missing}.values():
            await load_script(redis, script)
        again = await _evalsha_all(redis, [calls[i] for i in missing])
        for i, result in zip(missing, again, strict=True):
            results[i] = result
    return results


async def _evalsha_all(redis: Any, calls: list[Call]) -> list:
    async with redis.pipeline(transaction=False) as pipe:
        for script, base, args in calls:
            pipe.evalsha(script.sha, 1, base, *args)
        return list(await pipe.execute(raise_on_error=False))


async def _per_shard(calls: list[Call]) -> list:
    """redis-py refuses EVALSHA in cluster pipelines: run each shard's calls in
    their order (an offer round must see the intakes before it), the shards
    side by side. Script reloads after NOSCRIPT by itself."""
    results: list = [None] * len(calls)
    by_shard: dict[str, list[int]] = {}
    for index, (_script, base, _args) in enumerate(calls):
        by_shard.setdefault(base, []).append(index)

    async def run(indexes: list[int]) -> None:
        for index in indexes:
            script, base, args = calls[index]
            try:
                results[index] = await script(keys=[base], args=args)
            except Exception as exc:  # reported per call, as a pipeline does
                results[index] = exc

    await asyncio.gather(*(run(indexes) for indexes in by_shard.values()))
    return results
