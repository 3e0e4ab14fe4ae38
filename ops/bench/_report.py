"""The routing benchmark's report as text: the throughput and latency tables, then the detail."""

from __future__ import annotations


def render(report: dict) -> str:
    """The report as the tables printed without --json."""
    s = report["setup"]

    def plural(n: int) -> str:
        return "s" if n > 1 else ""

    def row(name: str, t: dict, backlog: int, ratio: float | None) -> str:
        cpu = t["cpu_percent"]
        consumers = "+".join(str(c) for c in cpu["consumers"])
        shown = f"{ratio:>7.2f}" if ratio is not None else f"{'':>7}"
        return (
            f"{name:<44}{t['contacts']:>8}{t['seconds']:>8.2f}{t['per_second']:>8.0f}{shown}{backlog:>8}"
            f"  {cpu['redis']:>6} {consumers:>13}{cpu['producers']:>10}{cpu['others']:>8}"
        )

    lines = [
        f"routing benchmark: {s['redis']}, {s['cpus']} CPUs, Python {s['python']}",
        f"  code: {s['code']}",
        f"  {s['tenants']} tenant(s) x {s['agents_per_tenant']} agents (webchat capacity {s['webchat_capacity']});"
        f" {s['producers']} concurrent producer tasks in this process add one contact per call",
        "  (raw: XADD of the encoded InboundContact; router: router.bus.ingest); one consumer process per row reads",
        f"  XREADGROUP COUNT {s['batch']} and XACKs each batch (raw: nothing else; router: a routing worker);"
        f" {s['warmup']} warm-up contacts; {s['rounds']} router runs per worker count, each between two raw runs",
        "",
        f"{'throughput: first add .. last ack/reserved':<44}{'contacts':>8}{'seconds':>8}{'per s':>8}{'ratio':>7}"
        f"{'backlog':>8}  cpu %: redis      consumers  producers  others",
    ]
    raw_name = "raw ceiling: XADD/XREADGROUP/XACK"
    for result in report["router"]:
        t, raws = result["throughput"], result["raw_runs"]
        who = f"{t['workers']} routing worker{plural(t['workers'])}"
        lines.append(row(raw_name, raws[0], raws[0]["backlog_when_added"], None))
        for n, (r, raw) in enumerate(zip(t["rounds"], raws[1:], strict=True)):
            name = f"router: {who}, round {n + 1}"
            if r["per_second"] == t["per_second"]:  # the median round: its whole row
                lines.append(row(name, t, t["backlog_when_ingested"], r["ratio"]))
            else:
                lines.append(f"{name:<44}{t['contacts']:>8}{'':>8}{r['per_second']:>8.0f}{r['ratio']:>7.2f}")
            lines.append(row(raw_name, raw, raw["backlog_when_added"], None))
        rounds = ", ".join(f"{r['ratio']:.2f}" for r in t["rounds"])
        lines.append(f"  => {who}: ratio {t['ratio']:.2f} (the median round; all rounds: {rounds})")
    lines += [
        "  a round's ratio = its per s / the mean of the raw runs before and after it. backlog = entries not yet",
        "  read when the producers finished (> 0: the consumers were the limit). cpu % of one CPU over the run;",
        "  others = the rest of the machine (during raw runs, the router's idle workers too).",
        "",
        f"{'latency: inbound XADD -> reserved event':<44}{'offered/s':>10}{'reserved':>12}"
        f"{'p50 ms':>8}{'p90 ms':>8}{'p99 ms':>8}{'max ms':>8}",
    ]
    for result in report["router"]:
        lat, t = result["latency"], result["throughput"]
        name = f"{t['workers']} routing worker{plural(t['workers'])}, {lat['rate']:g}/s for {lat['duration_s']:g} s"
        lines.append(
            f"{name:<44}{lat['offered_per_second']:>10.0f}{lat['reserved']:>6}/{lat['contacts']:<5}"
            f"{lat['p50_ms']:>8}{lat['p90_ms']:>8}{lat['p99_ms']:>8}{lat['max_ms']:>8}"
        )
    lines += ["", "detail"]
    for result in report["router"]:
        for i, run in enumerate(result["raw_runs"]):
            lines.append(
                f"  raw run {i + 1} of the {result['throughput']['workers']}-worker rows: producers added"
                f" {run['added_per_second']:.0f}/s; consumer batches averaged {run['avg_batch']} entries"
            )
    for result in report["router"]:
        t = result["throughput"]
        missing = t["contacts"] - t["reserved"]
        lines.append(
            f"  router, {t['workers']} worker{plural(t['workers'])}:"
            f" producers ingested {t['ingested_per_second']:.0f}/s;"
            f" {t['batches']} batches of {t['avg_batch']} on average, {t['worker_round_trips_per_batch']} round trips"
            f" and {t['worker_scripts_per_batch']} scripts each; Redis ran"
            f" {t['redis_script_usec_per_contact']:.0f} us of scripts per contact (ingest+intake+assign_queue)"
            + (f"; {missing} NOT reserved ({t['left_waiting']} left waiting)" if missing else "")
        )
        breakdown = t.get("redis_time_breakdown")
        if breakdown:
            lines.append("    Redis execution time (SLOWLOG; script times include the commands they call):")
            lines += [
                f"    {name:<24}{b['calls']:>8} calls {b['avg_us']:>8.1f} us each"
                f" {b['us_per_contact']:>7.1f} us/contact"
                for name, b in breakdown.items()
            ]
    if report["router"]:
        lines.append(f"  routing workers started as: {report['router'][0]['throughput']['launcher']}")
    return "\n".join(lines)
