"""What a phase cost: CPU meters, Redis command stats, the slow-log breakdown, percentiles."""

from __future__ import annotations

import hashlib
import math
import os
import time
from typing import Any

from ops.bench._streams import as_text
from router import scripts

CLK_TCK = os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not values:
        return float("nan")
    rank = max(1, math.ceil(pct / 100 * len(values)))
    return values[min(rank, len(values)) - 1]


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a live process has used so far."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_cpu() -> float:
    """CPU seconds every process on the machine has used so far (all CPUs, from /proc/stat)."""
    try:
        with open("/proc/stat") as handle:
            values = [int(v) for v in handle.readline().split()[1:9]]
    except OSError:
        return float("nan")
    return (sum(values) - values[3] - values[4]) / CLK_TCK  # minus idle and iowait


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


async def redis_cpu(r: Any) -> float:
    info = await r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


class CpuMeter:
    """CPU used during a phase by Redis, the consumer processes, this process and the whole machine,
    as percent of one CPU over the phase's wall time; `others` is what the rest of the machine used."""

    def __init__(self, r: Any, pids: list[int]) -> None:
        self.r, self.pids = r, pids

    async def start(self) -> None:
        self.wall, self.redis, self.me, self.machine = time.time(), await redis_cpu(self.r), self_cpu(), machine_cpu()
        self.consumers = [proc_cpu(pid) for pid in self.pids]

    async def stop(self, consumers: list[float] | None = None) -> dict:
        wall = time.time() - self.wall
        redis = await redis_cpu(self.r) - self.redis
        me, machine = self_cpu() - self.me, machine_cpu() - self.machine
        if consumers is None:
            consumers = [proc_cpu(pid) - c for pid, c in zip(self.pids, self.consumers, strict=True)]
        others = max(machine - redis - me - sum(consumers), 0.0)
        return {
            "redis": round(100 * redis / wall),
            "consumers": [round(100 * c / wall) for c in consumers],
            "producers": round(100 * me / wall),
            "others": round(100 * others / wall),
        }


async def command_stats(r: Any) -> dict[str, tuple[int, int]]:
    """Per-command (calls, usec) from INFO commandstats; script calls count their inner commands."""
    info = await r.info("commandstats")
    return {name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for name, v in info.items()}


def command_delta(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    """The (calls, usec) each command added between two command_stats snapshots."""
    zero = (0, 0)
    return {
        k: (after[k][0] - before.get(k, zero)[0], after[k][1] - before.get(k, zero)[1])
        for k in after
        if after[k] != before.get(k, zero)
    }


async def slowlog_start(r: Any) -> None:
    """Log every top-level command with its execution time (script calls as one entry)."""
    await r.config_set("slowlog-max-len", 1_000_000)
    await r.config_set("slowlog-log-slower-than", 0)
    await r.slowlog_reset()


async def slowlog_breakdown(r: Any, contacts: int) -> dict[str, dict]:
    """Redis execution time by command, and by script name for EVALSHA, from the slow log."""
    await r.config_set("slowlog-log-slower-than", 10_000)
    entries = await r.execute_command("SLOWLOG", "GET", -1)
    await r.slowlog_reset()
    names = {hashlib.sha1(scripts.source(n).encode()).hexdigest(): n for n in scripts.NAMES}
    totals: dict[str, list[int]] = {}
    for entry in entries:
        args = entry[3]
        command = as_text(args[0]).lower()
        if command in ("evalsha", "eval") and len(args) > 1:
            command = "script " + names.get(as_text(args[1]), as_text(args[1])[:8])
        if command in ("slowlog", "config", "info", "xinfo"):
            continue
        total = totals.setdefault(command, [0, 0])
        total[0] += 1
        total[1] += int(entry[2])
    return {
        k: {"calls": c, "avg_us": round(us / c, 1), "us_per_contact": round(us / contacts, 1)}
        for k, (c, us) in sorted(totals.items(), key=lambda kv: -kv[1][1])
    }
