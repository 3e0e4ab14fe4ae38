"""A drill's report as text."""

from __future__ import annotations

from ops.faults._drill import DrillReport


def render(report: DrillReport) -> str:
    o, t = report.options, report.tally
    kills = f"{','.join(o.kill)} (every {o.kill_every_s:g} s on average)" if o.kill else "no worker"
    lines = [
        f"fault drill: {o.seconds:g} s at {o.rate:g} contacts/s; redis-server with AOF appendfsync {o.fsync};"
        f" {o.routing} routing + 1 dispatch + 1 timers{' + 1 archive' if report.archive is not None else ''}"
        f" workers; seed {report.seed}",
        f"  faults asked: SIGKILL of {kills},"
        f" {o.restart_redis} Redis restart(s) by {o.redis_crash}, {o.drop_connections} connection drop(s)",
        "  faults injected: " + (", ".join(f"{k} x{v}" for k, v in sorted(report.faults.items())) or "none"),
        "",
        f"{'offered':>9}{'accepted':>10}{'lost':>6}{'duplicated':>12}{'replies':>9}{'sent':>7}"
        f"{'sent twice':>12}{'failed':>8}{'undelivered':>13}",
        f"{t.offered:>9}{t.accepted:>10}{t.lost:>6}{t.duplicated:>12}{t.replies:>9}{t.sent:>7}"
        f"{t.sent_twice:>12}{t.failed:>8}{t.undelivered:>13}",
        "",
        f"  {'quiet' if report.quiet else 'NOT quiet'} after the load"
        + ("" if report.quiet else f" (still outstanding: {report.left})")
        + f"; whole drill {report.seconds:g} s; ingest retried {report.ingest_retries} time(s) through outages",
    ]
    if report.archive is not None:
        a = report.archive
        lines.append(
            f"  archive (PostgreSQL, {o.restart_postgres} restart(s)): {a.get('events', 0)} events,"
            f" {a.get('events_missing', 0)} missing, {a.get('events_unknown', 0)} not in the stream;"
            f" {a.get('conversations', 0)} conversations, {a.get('histories_differing', 0)} histories differing"
        )
    if t.replies_lost:
        lines.append(f"  replies the agents were told were recorded but are in no history: {t.replies_lost}")
    for kind, ids in t.examples.items():
        lines.append(f"  {kind}: {', '.join(ids)}")
    if not report.ok and report.timeline:
        lines.append("  faults, in order: " + "; ".join(report.timeline))
    if report.agent_errors:
        lines.append(f"  agent actions that failed and were tried again: {report.agent_errors}")
    if report.worker_errors:
        lines.append(f"  ERROR lines in the workers' logs (outages log some): {report.worker_errors}")
    for exit in report.unexpected_exits:
        lines.append(f"  a worker exited on its own: {exit.splitlines()[0]}")
    if o.fsync == "everysec" and o.restart_redis:
        lines.append(
            "  note: with appendfsync everysec Redis writes the AOF before answering (unless a slow disk postpones it),"
            " so a killed redis-server normally loses nothing; a machine crash could lose the last second"
            " (not fsynced), which this drill cannot show: --fsync always closes that too"
        )
    lines.append(
        f"  verdict: {'OK' if report.ok else 'FAILED'}" + (f"; logs in {report.logdir}" if report.logdir else "")
    )
    return "\n".join(lines)
