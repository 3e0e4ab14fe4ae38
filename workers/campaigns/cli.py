"""`contactrouter campaign ...`: define, fill, check, run and watch outbound campaigns.

campaign create FILE [--replace]         a campaign from TOML or JSON (a draft)
campaign import CAMPAIGN CSV             add an audience (rejected rows listed by line)
campaign preview CAMPAIGN [-n 3]         the first recipients' messages, or the template error
campaign launch|pause|resume|cancel CAMPAIGN
campaign progress CAMPAIGN [--watch]     counters and a progress bar
campaign results CAMPAIGN [--csv FILE]   sent ... converted, dispositions, conversion rate, per A/B variant
campaign export CAMPAIGN [--json] [-o FILE]   every recipient: contacted when, on what, outcome, disposition, promise
campaign list --tenant T                 the tenant's campaigns and their state
campaign dnc add|remove --tenant T ADDRESS...     the do-not-contact list
campaign dispute add|remove --tenant T WHO...     open disputes (customer id, or debt:ACCOUNT)
campaign pace --tenant T CHANNEL PER_MINUTE       a tenant-wide limit per channel (0 lifts it)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import sys
from pathlib import Path

from router import audit
from router.campaigns import dial_state, isolated, registry
from router.campaigns.model import Campaign, CampaignError, load_campaign, missing_dispositions
from router.config import Deployment
from router.customers import InvalidAddress, normalise
from router.events import CHANNELS
from router.keys import Keys
from router.store import Store, text
from workers.campaigns import agent_figures, audience, export, pacing, results, unsubscribe

SHOWN_REJECTS = 20
CHECKED = 5  # recipients whose messages `create` and `import` render, as a preview would
WATCH_S = 1.0


def register(sub: argparse._SubParsersAction) -> list[str]:
    campaign = sub.add_parser("campaign", help="outbound campaigns: create, import, preview, launch, progress")
    actions = campaign.add_subparsers(dest="campaign_action", required=True)
    create = actions.add_parser("create", help="a campaign from a TOML or JSON file")
    create.add_argument("file")
    create.add_argument("--replace", action="store_true", help="update a campaign not launched yet")
    imp = actions.add_parser("import", help="add recipients from a CSV file")
    imp.add_argument("campaign")
    imp.add_argument("csv")
    show = actions.add_parser("preview", help="render the first recipients' messages")
    show.add_argument("campaign")
    show.add_argument("-n", type=int, default=3)
    for action in ("launch", "pause", "resume", "cancel"):
        actions.add_parser(action, help=f"{action} a campaign").add_argument("campaign")
    prog = actions.add_parser("progress", help="counters and a progress bar")
    prog.add_argument("campaign")
    prog.add_argument("--watch", action="store_true", help="refresh every second until the campaign stops")
    res = actions.add_parser("results", help="results per campaign and A/B variant")
    res.add_argument("campaign")
    res.add_argument("--csv", metavar="FILE", help="write them as CSV to FILE (- for standard output)")
    exp = actions.add_parser("export", help="every recipient's results, as CSV (or JSON)")
    exp.add_argument("campaign")
    exp.add_argument("--json", action="store_true", help="a JSON array of objects instead of CSV")
    exp.add_argument("-o", "--output", metavar="FILE", default="-", help="write to FILE (default: standard output)")
    rejects = actions.add_parser("rejects", help="the CSV rows the imports refused, by line")
    rejects.add_argument("campaign")
    actions.add_parser("list", help="the tenant's campaigns")
    for name, what in (("dnc", "addresses"), ("dispute", "customer ids or debt:ACCOUNT")):
        lst = actions.add_parser(name, help=f"add or remove {what}")
        lst.add_argument("list_action", choices=["add", "remove", "show"])
        lst.add_argument("items", nargs="*")
    pace = actions.add_parser("pace", help="limit a channel's campaign messages per minute for a tenant")
    pace.add_argument("channel", choices=CHANNELS)
    pace.add_argument("per_minute", type=int)
    actions.add_parser(
        "rotate-link-key", help="a new key signs unsubscribe links; links signed with the last 5 keys still work"
    )
    for parser in actions.choices.values():
        parser.add_argument("--tenant", help="the tenant (needed when the campaign id alone does not say)")
    return ["campaign"]


async def command(store: Store, deployment: Deployment, a: argparse.Namespace) -> None:
    act = a.campaign_action
    if act == "create":
        campaign = load_campaign(a.file)
        if a.tenant and a.tenant != campaign.tenant:
            raise CampaignError(f"{a.file} is a campaign of {campaign.tenant}, not {a.tenant}")
        await registry.create(store, deployment, campaign, replace=a.replace)
        print(f"created campaign {campaign.id} of {campaign.tenant} ({campaign.kind}, {campaign.channel}): draft")
        missing = missing_dispositions(campaign, deployment)
        if missing:
            print(f"note: agents of {campaign.tenant} cannot close with {', '.join(missing)} (add to its dispositions)")
        await _check_templates(store, campaign)  # a replaced draft may have its audience already
    elif act in ("list", "dnc", "dispute", "pace", "rotate-link-key"):
        await _tenant_command(store, deployment, a)
    else:
        tenant = await registry.find_tenant(store, deployment, a.campaign, a.tenant)
        await _campaign_command(store, deployment, tenant, a)


async def _campaign_command(store: Store, deployment: Deployment, tenant: str, a: argparse.Namespace) -> None:
    act = a.campaign_action
    if act == "import":
        campaign, state = await registry.load(store, tenant, a.campaign)
        if state in ("cancelled", "finished"):
            raise CampaignError(f"campaign {a.campaign} is {state}: nothing more can be added")
        try:
            # A one-shot command: reading the file between the batches' writes blocks nobody.
            with Path(a.csv).open("rb") as raw:  # noqa: ASYNC230
                # Read through once first: a file that is not UTF-8 is refused before any row is queued.
                audience.check_utf8(raw)
                raw.seek(0)
                with io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as source:
                    report = await audience.import_csv(store, campaign, source)
        except OSError as exc:
            raise CampaignError(f"{a.csv}: {exc.strerror or exc}") from None
        except audience.AudienceError as exc:
            raise CampaignError(f"{a.csv}: {exc}") from None
        print(f"imported {report.imported:,} recipients, rejected {report.rejected:,} rows")
        if report.already:
            print(
                f"{report.already:,} rows were already in the campaign, unchanged, from an earlier import: "
                "left as they were"
            )
        for line, reason in report.rejects[:SHOWN_REJECTS]:
            print(f"  line {line}: {reason}")
        if report.rejected > SHOWN_REJECTS:
            print(f"  ... `contactrouter campaign rejects {a.campaign}` lists them all")
        await _check_templates(store, campaign)
    elif act == "preview":
        campaign, _state = await registry.load(store, tenant, a.campaign)
        recipients = await registry.first_recipients(store, tenant, a.campaign, a.n)
        if not recipients:
            print("no recipients yet: `contactrouter campaign import` first")
        for recipient, channel, result in await isolated.shared().preview(campaign, recipients):
            to = audience.address_for(channel, recipient) or recipient.phone  # the machine row: the phone
            print(f"--- line {recipient.line}: {channel} to {to}")
            if isinstance(result, str):
                print(f"ERROR {result}")
            else:
                if result.subject:
                    print(f"Subject: {result.subject}")
                print(result.body)
    elif act in registry.TRANSITIONS:
        state = await registry.change(store, tenant, a.campaign, act, deployment=deployment)
        print(f"campaign {a.campaign}: {state}")
    elif act == "progress":
        await _progress(store, tenant, a.campaign, watch=a.watch)
    elif act == "results":
        await _results(store, tenant, a.campaign, a.csv)
    elif act == "export":
        await _export(store, tenant, a.campaign, a.output, as_json=a.json)
    elif act == "rejects":
        for line, reason in await registry.rejects(store, tenant, a.campaign):
            print(f"line {line}: {reason}")


async def _tenant_command(store: Store, deployment: Deployment, a: argparse.Namespace) -> None:
    if not a.tenant:
        raise CampaignError(f"campaign {a.campaign_action} needs --tenant")
    deployment.tenant(a.tenant)  # UnknownTenant names the known ones
    keys = Keys(a.tenant)
    act = a.campaign_action
    if act == "list":
        for campaign_id in await registry.ids(store, a.tenant):
            shown = await registry.progress(store, a.tenant, campaign_id)
            print(f"{campaign_id:<24}{shown.state:<11}queued {shown.queued:,}  sent {shown.counts['sent']:,}")
    elif act == "pace":
        await pacing.set_channel_limit(store, a.tenant, a.channel, a.per_minute)
        limit = f"{a.per_minute}/min" if a.per_minute > 0 else "no limit"
        print(f"{a.tenant} {a.channel} campaigns: {limit}")
    elif act == "rotate-link-key":
        await unsubscribe.rotate_signing_key(store, a.tenant)
        print(
            f"{a.tenant}: unsubscribe links are signed with a new key once the campaigns workers restart; "
            f"links already sent keep working until {unsubscribe.KEPT_KEYS} more rotations"
        )
    else:
        key = keys.do_not_contact if act == "dnc" else keys.disputes
        if a.list_action == "show":
            for item in sorted(text(m) for m in await store.redis.smembers(key)):
                print(item)
            return
        items = [_dnc_address(i) for i in a.items] if act == "dnc" else list(a.items)
        if not items:
            raise CampaignError(f"campaign {act} {a.list_action}: give at least one")
        changed = await (store.redis.sadd if a.list_action == "add" else store.redis.srem)(key, *items)
        print(f"{a.list_action}: {changed} changed ({', '.join(items)})")


async def _check_templates(store: Store, campaign: Campaign) -> None:
    """Render the first recipients' messages on every channel (the answering-machine message
    too): a field the file lacks, or a message too long to send or say, shows now rather
    than when the campaign runs (where it skips the recipient)."""
    recipients = await registry.first_recipients(store, campaign.tenant, campaign.id, CHECKED)
    found = await isolated.shared().problems(campaign, recipients)
    if found:
        print(f"warning: the first recipients' messages do not render ({len(found)} of {len(recipients)}):")
        for problem in found:
            print(f"  {problem}")


async def _results(store: Store, tenant: str, campaign_id: str, csv_file: str | None) -> None:
    report = await results.report(store, tenant, campaign_id)
    if csv_file:
        await audit.record(
            store,
            "export",
            actor=audit.cli_actor(),
            client="cli",
            tenants=(tenant,),
            target=f"campaign {campaign_id} results",
        )
    if csv_file == "-":
        results.write_csv(report, sys.stdout)
        return
    if csv_file:
        try:
            # A one-shot command writing a small file: blocking here holds nobody up.
            with Path(csv_file).open("w", newline="", encoding="utf-8") as out:  # noqa: ASYNC230
                results.write_csv(report, out)
        except OSError as exc:
            raise CampaignError(f"{csv_file}: {exc.strerror}") from None
        print(f"wrote {len(report.rows)} rows to {csv_file}")
        return
    print(f"campaign {report.campaign} of {report.tenant} ({report.kind}): {report.state}")
    columns = [*(results.LABELS.get(k, k) for k in results.REPORTED), "conversion", *report.dispositions]
    widths = [max(len(c), 8) for c in columns]
    print(f"{'variant':<10}{'share':>6}  " + "  ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)))
    for row in report.rows:
        values = [
            *(results.shown(k, row.counts[k]) for k in results.REPORTED),
            f"{row.conversion_rate:.1%}",
            *(f"{row.dispositions.get(d, 0):,}" for d in report.dispositions),
        ]
        cells = "  ".join(f"{v:>{w}}" for v, w in zip(values, widths, strict=True))
        print(f"{row.variant or 'all':<10}{row.share:>5}%  {cells}")
    per_agent = await agent_figures.per_agent(store, tenant, campaign_id)
    if per_agent:
        print(f"{'agent':<16}{'connects':>9}{'right party':>12}{'promises':>9}{'promised':>12}{'talk':>9}{'wrap':>9}")
        for a in per_agent:
            print(
                f"{a.agent:<16}{a.connects:>9,}{a.right_party:>12,}{a.promises:>9,}{a.promised_cents / 100:>12,.2f}"
                f"{_duration(a.talk_ms):>9}{_duration(a.wrap_ms):>9}"
            )
    campaign, _state = await registry.load(store, tenant, campaign_id)
    if campaign.voice.dial_mode != "message":
        now = dt.datetime.now(dt.UTC)
        print(dial_state.describe(await dial_state.summary(store, tenant, campaign_id, now), campaign.voice.dial_mode))


def _duration(ms: int) -> str:
    """h:mm:ss of agent time."""
    return str(dt.timedelta(seconds=ms // 1000))


async def _export(store: Store, tenant: str, campaign_id: str, output: str, *, as_json: bool) -> None:
    """Every recipient's results, audited as an export of personal data (as `results --csv` is)."""
    await registry.load(store, tenant, campaign_id)  # no such campaign: said before anything is written
    await audit.record(
        store,
        "export",
        actor=audit.cli_actor(),
        client="cli",
        tenants=(tenant,),
        target=f"campaign {campaign_id} recipients",
        detail="json" if as_json else "csv",
    )
    write = export.write_json if as_json else export.write_csv
    if output == "-":
        await write(store, tenant, campaign_id, sys.stdout)
        return
    try:
        # A one-shot command: writing its own file between the chunks' reads blocks nobody.
        with Path(output).open("w", newline="", encoding="utf-8") as out:  # noqa: ASYNC230
            written = await write(store, tenant, campaign_id, out)
    except OSError as exc:
        raise CampaignError(f"{output}: {exc.strerror}") from None
    print(f"wrote {written:,} recipients to {output}")


CHANGED = {"launch": "launched", "pause": "paused", "resume": "resumed", "cancel": "cancelled", "finish": "finished"}


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _dnc_address(raw: str) -> str:
    """An email in lower case, anything else as an E.164 number."""
    try:
        return normalise("email" if "@" in raw else "sms", raw)
    except InvalidAddress as exc:
        raise CampaignError(str(exc)) from None


def bar(progress: registry.Progress, width: int = 30) -> str:
    """One line: a bar of recipients done, then every counter (and the messages refused as
    they were to leave, by reason)."""
    share = progress.share
    filled = round(share * width)
    c = progress.counts
    why = ", ".join(f"{reason} {n:,}" for reason, n in progress.refused_at_send.items())
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {share:4.0%} {progress.state}  queued {progress.queued:,}  "
        f"sent {c['sent']:,}  delivered {c['delivered']:,}  failed {c['failed']:,}  "
        f"suppressed {c['suppressed']:,}  replied {c['replied']:,}  converted {c['converted']:,}"
        + (f"  skipped {c['skipped']:,}" if c["skipped"] else "")
        + (f"  refused at send {c['refused_at_send']:,} ({why})" if c["refused_at_send"] else "")
    )


async def _progress(store: Store, tenant: str, campaign_id: str, *, watch: bool) -> None:
    live = watch and sys.stdout.isatty()
    while True:
        progress = await registry.progress(store, tenant, campaign_id)
        line = bar(progress)
        print(f"\r{line}\033[K" if live else line, end="" if live else "\n", flush=True)
        if not watch or progress.state != "running" or not progress.queued:
            break
        await asyncio.sleep(WATCH_S)
    if live:
        print()
    changed = await registry.changes(store, tenant, campaign_id)
    if changed:
        print("  ".join(f"{CHANGED[action]} {_when(at)}" for action, at in changed.items()))
    for name, counts in sorted(progress.variants.items()):
        shown = "  ".join(f"{k} {counts.get(k, 0):,}" for k in ("sent", "delivered", "failed", "replied", "converted"))
        print(f"variant {name}: {shown}")
    if progress.dispositions:
        print("dispositions: " + ", ".join(f"{k} {v:,}" for k, v in sorted(progress.dispositions.items())))
