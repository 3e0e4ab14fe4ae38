"""`python -m ops.faults run [options]`: one fault drill, its counts printed; exit status 1 if it failed."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

from ops.faults._drill import ROLES, DrillOptions, run_drill
from ops.faults._report import render


def _roles(value: str) -> tuple[str, ...]:
    roles = tuple(r.strip() for r in value.split(",") if r.strip())
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise argparse.ArgumentTypeError(f"roles are {', '.join(ROLES)}; not {', '.join(sorted(unknown))}")
    return roles


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ops.faults", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="one drill: load, faults, audit")
    run.add_argument("--seconds", type=float, default=60, help="seconds of load with faults (60)")
    run.add_argument("--rate", type=float, default=50, help="contacts offered per second (50)")
    run.add_argument("--fsync", choices=("everysec", "always"), default="everysec", help="AOF appendfsync (everysec)")
    run.add_argument(
        "--kill", type=_roles, default=(), help="roles to SIGKILL at random moments: routing,dispatch,timers,archive"
    )
    run.add_argument("--kill-every", type=float, default=3.0, help="mean seconds between two kills (3)")
    run.add_argument("--restart-redis", type=int, default=0, metavar="N", help="restart redis-server N times (0)")
    run.add_argument(
        "--redis-crash",
        choices=("kill", "shutdown"),
        default="kill",
        help="restart Redis by SIGKILL (a crash; default) or a graceful SHUTDOWN that fsyncs the AOF",
    )
    run.add_argument("--redis-down", type=float, default=0.5, help="seconds Redis stays down each restart (0.5)")
    run.add_argument("--drop-connections", type=int, default=0, metavar="N", help="CLIENT KILL TYPE normal N times (0)")
    run.add_argument("--archive", action="store_true", help="run an archive worker into a PostgreSQL of its own")
    run.add_argument(
        "--restart-postgres", type=int, default=0, metavar="N", help="stop and start the archive's PostgreSQL N times"
    )
    run.add_argument("--postgres-down", type=float, default=1.0, help="seconds PostgreSQL stays down each time (1)")
    run.add_argument("--routing", type=int, default=2, help="routing workers (2)")
    run.add_argument("--settle", type=float, default=60, help="seconds to wait for quiet after the load (60)")
    run.add_argument("--seed", type=int, help="random seed, to replay a drill's fault moments")
    run.add_argument("--logdir", type=Path, help="keep the workers' logs here")
    run.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = DrillOptions(
        seconds=a.seconds,
        rate=a.rate,
        fsync=a.fsync,
        kill=a.kill,
        kill_every_s=a.kill_every,
        restart_redis=a.restart_redis,
        redis_crash=a.redis_crash,
        redis_down_s=a.redis_down,
        drop_connections=a.drop_connections,
        archive=a.archive,
        restart_postgres=a.restart_postgres,
        postgres_down_s=a.postgres_down,
        routing=a.routing,
        settle_s=a.settle,
        seed=a.seed,
        logdir=a.logdir,
    )
    report = asyncio.run(run_drill(options))
    if a.json:
        print(json.dumps({**asdict(report), "ok": report.ok}, indent=2, default=str))
    else:
        print(render(report))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
