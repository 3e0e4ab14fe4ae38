"""The processes the benchmark starts: routing workers (`contactrouter run routing`), their environment and logs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment with the project on PYTHONPATH, plus `extra`."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def check_alive(procs: list[subprocess.Popen]) -> None:
    """Raise, with the tail of its log, if one of the processes has exited."""
    for proc in procs:
        if proc.poll() is not None:
            log = getattr(proc, "bench_log", None)
            tail = Path(log).read_text(errors="replace")[-3000:] if log else ""
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode}:\n{tail}")


def worker_command(profile: str | None) -> tuple[list[str], str]:
    """How a routing worker is started, and a label saying so."""
    if profile:
        return [sys.executable, "-m", "cProfile", "-o", profile, "-m", "router.app.cli", "run", "routing"], (
            "python -m cProfile -m router.app.cli run routing"
        )
    # The console script installed next to this interpreter.
    script = Path(sys.executable).with_name("contactrouter")
    return [str(script), "run", "routing"], "contactrouter run routing"


def start_workers(
    url: str, config: Path, count: int, batch: int, logdir: Path, profile: str | None
) -> tuple[list[subprocess.Popen], str]:
    """Start `count` routing workers (the first under cProfile if `profile`), each logging to `logdir`."""
    procs = []
    label = ""
    for i in range(count):
        command, label = worker_command(profile if i == 0 else None)
        log = logdir / f"routing-{i}.log"
        with open(log, "wb") as handle:
            proc = subprocess.Popen(
                command,
                stdout=handle,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=child_env(
                    {
                        "REDIS_URL": url,
                        "CONTACTROUTER_CONFIG": str(config),
                        "CONTACTROUTER_CONSUMER": f"bench-routing-{i}",
                        "CONTACTROUTER_BATCH": str(batch),
                        "LOG_LEVEL": "WARNING",
                    }
                ),
            )
        proc.bench_log = str(log)  # type: ignore[attr-defined]
        procs.append(proc)
    return procs, label


def stop_workers(procs: list[subprocess.Popen]) -> None:
    """SIGTERM every worker (a profiled one writes its stats on the way out); kill any that lingers."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def code_version(*folders: str) -> str:
    """The commit measured, and the files of `folders` changed on top of it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", *folders], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return "unknown"
    changed = [line[3:] for line in dirty.stdout.splitlines() if line.strip()]
    return head.stdout.strip() + (f" + uncommitted {', '.join(changed)}" if changed else "")
