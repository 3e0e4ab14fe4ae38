"""`contactrouter`: run the product, and operate it.

contactrouter up                      everything in one process, embedded store, demo data
contactrouter run ROLE                one process role (web, routing, dispatch, timers, ...)
contactrouter contact add ...         inject a contact by hand
contactrouter simulate sms|call ...   post signed Twilio webhooks to the running web process
contactrouter agent ACTION ...        presence, offers, accept, reject, reply, transfer, close
contactrouter outbox / dead / trim / config check / conversation / customer
contactrouter supervisor-config ...   a supervisord.conf from the Procfile and a formation
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType

import msgspec

from channels.fax import fonts as fax_fonts
from ops import streams
from router import agents, audit, bus, conversations, customers, events, floor, templating
from router.app import processes
from router.attachments import AttachmentStore
from router.config import Deployment, load_deployment, warnings_of
from router.errors import ContactRouterError
from router.keys import SANDBOX_TWILIO_TOKEN, UP_WEB_URL
from router.settings import Settings
from router.store import Store, connect

EXTENSIONS: dict[str, ModuleType] = {}  # command name -> the COMMAND_MODULES module that runs it

ROLE_NAMES = ["web", "routing", "dispatch", "timers", "smtp", "imap", "campaigns", "telegram", "archive"]

# Commands that live beside their feature. Each module has `register(sub)`, which adds its
# subcommands and returns their names, and `async def command(store, deployment, a)`; a
# module whose commands need no store sets `NEEDS_STORE = False` and takes `(deployment, a)`;
# NEEDS_STORE may also be a function of the parsed arguments, when only some of them need it.
COMMAND_MODULES: list[str] = [
    "router.app.inbox.cli",
    "channels.telegram.cli",
    "ops.cli",
    "workers.campaigns.cli",
    "channels.webchat.cli",
    "router.knowledge.cli",
    "router.app.survey_cli",
]


class CliError(ContactRouterError):
    """Shown to the operator as one line, exit status 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="contactrouter", description="Omnichannel contact router")
    parser.add_argument("--config", help="deployment file (default: $CONTACTROUTER_CONFIG, else the demo)")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("up", help="run everything in one process on the embedded store with demo data")
    run = sub.add_parser("run", help="run one process role (as the Procfile does)")
    run.add_argument("role", choices=ROLE_NAMES)
    run.add_argument("--json-logs", action="store_true", help="structured logs (one JSON object per line)")

    supervise = sub.add_parser(
        "supervisor-config", help="a supervisord configuration that runs the Procfile's types, restarting what dies"
    )
    supervise.add_argument(
        "--formation", default="", help="how many of each type, e.g. web=2,routing=3,telegram=0 (default: one each)"
    )
    supervise.add_argument(
        "--procfile", help="the Procfile to read (default: ./Procfile, else `contactrouter run ROLE` for every role)"
    )
    supervise.add_argument("--directory", help="the processes' working directory (default: the current one)")
    supervise.add_argument("--log-dir", help="a log file per process here (default: supervisord's own output)")
    supervise.add_argument(
        "--programs-only", action="store_true", help="only the program sections, for an existing supervisord's conf.d"
    )
    supervise.add_argument(
        "--metrics-port", type=int, default=0, help="each process gets a METRICS_PORT of its own, counting up from this"
    )
    supervise.add_argument(
        "--scrape-targets",
        metavar="FILE",
        help="with --metrics-port: also write every process's metrics address there, for Prometheus's file_sd_configs",
    )

    check = sub.add_parser("config", help="configuration")
    check.add_argument("action", choices=["check"])

    contact = sub.add_parser("contact", help="inject a contact by hand")
    contact.add_argument("action", choices=["add"])
    contact.add_argument("text")
    contact.add_argument("--tenant", required=True)
    contact.add_argument("--channel", required=True, choices=events.CHANNELS)
    contact.add_argument("--from", dest="address", required=True)
    contact.add_argument("--subject", default="")
    contact.add_argument("--queue", default="")
    contact.add_argument("--priority", type=int)
    contact.add_argument("--provider-id", help="the provider's message id (default: a new one)")

    simulate = sub.add_parser("simulate", help="post signed provider webhooks to the running web process")
    kinds = simulate.add_subparsers(dest="channel", required=True)
    sms = kinds.add_parser("sms", help="a customer texts the tenant")
    sms.add_argument("text")
    sms.add_argument("--media", action="append", default=[], help="an MMS media URL (repeatable)")
    call = kinds.add_parser("call", help="a customer calls the tenant and goes through the IVR")
    call.add_argument(
        "--press", default="", help="the keys pressed at each prompt, in order, e.g. 11 (menu 1, callback)"
    )
    call.add_argument("--hang-up", action="store_true", help="hang up at the end")
    for kind in (sms, call):
        kind.add_argument("--tenant", required=True)
        kind.add_argument("--from", dest="address", required=True, help="the customer's number (E.164)")
        kind.add_argument("--to", help="the tenant's number (default: its first number on the channel)")
        kind.add_argument(
            "--url", help="the web process (default: where the `up` at REDIS_URL listens, else http://$HOST:$PORT)"
        )

    agent = sub.add_parser("agent", help="act as an agent")
    agent.add_argument(
        "action",
        choices=[
            "login",
            "logout",
            "presence",
            "status",
            "offers",
            "work",
            "accept",
            "reject",
            "reply",
            "note",
            "transfer",
            "close",
            "wrapup",
        ],
    )
    agent.add_argument("agent")
    agent.add_argument("args", nargs="*", help="reservation, or conversation [text], or presence")
    agent.add_argument("--tenant", required=True)
    agent.add_argument("--reason", default="")
    agent.add_argument("--amount", default="", help="close as promise_to_pay: the amount promised")
    agent.add_argument("--date", default="", help="close as promise_to_pay: the date it is due (YYYY-MM-DD)")
    agent.add_argument("--channel")
    agent.add_argument("--to", help="another address of the customer to reply to")
    agent.add_argument("--subject", default="")
    agent.add_argument("--to-agent", default="")
    agent.add_argument("--to-queue", default="")
    agent.add_argument("--note", default="")
    agent.add_argument("--disposition", default="resolved")
    agent.add_argument(
        "--key", default="", help="idempotency key: rerunning a reply with the same key sends nothing new"
    )

    conv = sub.add_parser("conversation", help="show a conversation and its history")
    conv.add_argument("conversation")
    conv.add_argument("--tenant", required=True)

    cust = sub.add_parser("customer", help="customers: show, link an address, merge two, erase one")
    cust.add_argument("action", choices=["show", "find", "link", "merge", "erase"])
    cust.add_argument(
        "args",
        nargs="+",
        help="show CUSTOMER | find CHANNEL ADDRESS | link CUSTOMER CHANNEL ADDRESS | merge KEEP ABSORB"
        " | erase CUSTOMER --by WHO (everything held of them, in Redis and the archive)",
    )
    cust.add_argument("--tenant", required=True)
    cust.add_argument("--by", default="", help="erase: who asks for it (kept in the audit entry)")
    cust.add_argument("--reason", default="", help="erase: why (e.g. the request's reference)")

    outbox = sub.add_parser("outbox", help="messages the sandbox transport kept instead of sending")
    outbox.add_argument("--tenant", required=True)
    outbox.add_argument("--count", type=int, default=20)

    dead = sub.add_parser("dead", help="the dead-letter stream")
    dead.add_argument("action", choices=["list", "replay"])
    dead.add_argument("ids", nargs="*", help="dead-letter ids to replay (default: all)")
    dead.add_argument("--tenant", required=True)

    status = sub.add_parser("status", help="the floor: queues (waiting, oldest wait) and agents (presence, load)")
    status.add_argument("--tenant", required=True)

    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        for command in module.register(sub):
            EXTENSIONS[command] = module
    db = sub.add_parser("db", help="the archive's PostgreSQL (DATABASE_URL): schema migrations, backfill")
    db.add_argument(
        "action",
        choices=["upgrade", "status", "backfill"],
        help="upgrade: apply what is missing; status: versions; backfill: archive the conversations Redis holds"
        " whose events were trimmed before the archive ran (--tenant)",
    )
    db.add_argument("--tenant", help="backfill: the tenant")

    trim = sub.add_parser("trim", help="trim a tenant's streams (never drops unacknowledged entries)")
    trim.add_argument("--tenant", required=True)
    trim.add_argument("--keep-hours", type=float, default=72.0)
    return parser


def _when(ms: str | int) -> str:
    return dt.datetime.fromtimestamp(int(ms) / 1000).strftime("%Y-%m-%d %H:%M:%S")


async def _contact_add(store: Store, deployment: Deployment, a: argparse.Namespace) -> None:
    deployment.tenant(a.tenant)
    contact = events.build(
        events.InboundContact,
        {
            "id": events.new_id(),
            "tenant": a.tenant,
            "channel": a.channel,
            "address": a.address,
            "provider_id": a.provider_id or f"cli-{events.new_id()}",
            "occurred_at": events.now_ms(),
            "body": a.text,
            "subject": a.subject,
            "queue": a.queue,
            "priority": a.priority,
        },
    )
    customers.normalise(a.channel, a.address)  # refuse a bad address here, not in the router
    added, entry_id = await bus.ingest(store, contact)
    print(f"{'added' if added else 'duplicate of'} {entry_id} (contact {contact.id})")


def _need(args: list[str], count: int, usage: str) -> list[str]:
    if len(args) < count:
        raise CliError(f"usage: {usage}")
    return args


async def _agent(store: Store, deployment: Deployment, a: argparse.Namespace) -> None:
    tenant = deployment.tenant(a.tenant)
    act, who, args = a.action, a.agent, a.args
    if act in ("login", "logout", "presence"):
        presence = {"login": "available", "logout": "offline"}.get(act) or _need(args, 1, "presence STATE")[0]
        before = await agents.set_presence(store, tenant, who, presence, a.reason)
        print(f"{who}: {before} -> {presence}")
    elif act == "status":
        print(json.dumps(await agents.status(store, tenant, who), indent=2, sort_keys=True))
    elif act == "offers":
        for offer in await agents.offers(store, tenant, who):
            left = max(0, (int(offer["expires_at"]) - events.now_ms()) // 1000)
            print(
                f"{offer['reservation']}  conversation {offer['conv']}  {offer['channel']}  "
                f"queue {offer['queue']}  {left}s left"
            )
    elif act == "work":
        for record in await agents.work(store, tenant, who):
            print(f"{record['id']}  {record.get('state')}  {record.get('channel')}  {record.get('last_address', '')}")
    elif act in ("accept", "reject"):
        reservation = _need(args, 1, f"agent {act} AGENT RESERVATION")[0]
        # Imported only here (it loads every adapter): the channels register what an accept
        # sets off (agents.ON_ACCEPT), such as dialling a callback.
        import channels  # noqa: F401

        await (agents.accept if act == "accept" else agents.reject)(store, tenant, who, reservation)
        print(f"{act}ed {reservation}")
    elif act == "reply":
        conversation, text = _need(args, 2, "agent reply AGENT CONVERSATION TEXT")[:2]
        message = await agents.reply(
            store, tenant, who, conversation, text, channel=a.channel, address=a.to, subject=a.subject
        )
        print(f"queued {message.channel} message {message.id} to {message.to}")
    elif act == "note":
        conversation, text = _need(args, 2, "agent note AGENT CONVERSATION TEXT")[:2]
        await agents.note(store, tenant, who, conversation, text)
        print("noted")
    elif act == "transfer":
        conversation = _need(args, 1, "agent transfer AGENT CONVERSATION --to-agent X | --to-queue Q")[0]
        outcome = await agents.transfer(
            store, tenant, who, conversation, to_agent=a.to_agent, to_queue=a.to_queue, note=a.note
        )
        print(f"transferred: {outcome}")
    elif act == "close":
        conversation = _need(args, 1, "agent close AGENT CONVERSATION --disposition D")[0]
        await agents.close(
            store, tenant, who, conversation, a.disposition, promise_amount=a.amount, promise_date=a.date
        )
        print(f"closed {conversation} ({a.disposition})")
    elif act == "wrapup":
        conversation = _need(args, 1, "agent wrapup AGENT CONVERSATION")[0]
        freed = await agents.end_wrapup(store, tenant, who, conversation)
        print("wrap-up ended" if freed else "nothing in wrap-up")


async def _conversation(store: Store, deployment: Deployment, a: argparse.Namespace) -> None:
    deployment.tenant(a.tenant)
    record = await conversations.get(store, a.tenant, a.conversation)
    print(json.dumps(record, indent=2, sort_keys=True))
    for entry in await conversations.history(store, a.tenant, a.conversation):
        who = entry.agent if entry.kind != "in" else entry.address
        print(f"[{_when(entry.occurred_at)}] {entry.kind:4} {entry.channel:8} {who}: {entry.body}")


async def _customer(store: Store, deployment: Deployment, a: argparse.Namespace) -> None:
    deployment.tenant(a.tenant)
    args = a.args
    if a.action == "show":
        print(json.dumps(await customers.profile(store, a.tenant, args[0]), indent=2))
    elif a.action == "find":
        channel, address = _need(args, 2, "customer find CHANNEL ADDRESS")[:2]
        found = await customers.find(
            store, a.tenant, customers.identity(channel, customers.normalise(channel, address))
        )
        print(found or "no such customer")
    elif a.action == "link":
        customer, channel, address = _need(args, 3, "customer link CUSTOMER CHANNEL ADDRESS")[:3]
        ident = customers.identity(channel, customers.normalise(channel, address))
        previous = await customers.link(store, a.tenant, customer, ident)
        print(f"linked {ident} to {customer}" + (f" (was {previous})" if previous else ""))
    elif a.action == "merge":
        keep, absorb = _need(args, 2, "customer merge KEEP ABSORB")[:2]
        await customers.merge(store, a.tenant, keep, absorb)
        print(f"merged {absorb} into {keep}")
    elif a.action == "erase":
        from router.records import erasure

        files = AttachmentStore(a.settings.attachment_dir, a.settings.attachment_max_bytes)
        counts = await erasure.erase(store, a.tenant, args[0], by=a.by, reason=a.reason, files=files)
        await audit.record(
            store,
            "erasure",
            actor=audit.cli_actor(),
            client="cli",
            tenants=(a.tenant,),
            target=f"customer {args[0]}",
            detail=f"asked by {a.by}" + (f" ({a.reason})" if a.reason else "") + f"; erased {erasure.describe(counts)}",
        )
        print(f"erased {args[0]}: {erasure.describe(counts)}")


async def _outbox(store: Store, deployment: Deployment, a: argparse.Namespace) -> None:
    # The channels are imported only by the commands that use them: they load every adapter.
    from channels.sandbox import outbox

    deployment.tenant(a.tenant)
    for _entry_id, provider_id, message in await outbox(store, a.tenant, a.count):
        subject = f" [{message.subject}]" if message.subject else ""
        print(
            f"[{_when(message.occurred_at)}] {message.channel:8} to {message.to}{subject}: {message.body}"
            f"  ({provider_id})"
        )


async def _dead(store: Store, deployment: Deployment, a: argparse.Namespace) -> None:
    deployment.tenant(a.tenant)
    if a.action == "list":
        letters = await streams.dead_letters(store, a.tenant)
        for item in letters:
            print(
                f"{item['dead_id']}  from {item['stream']} {item['id']}  deliveries={item['deliveries']}  "
                f"{item['reason']}  {item['summary']}"
            )
        if not letters:
            print("no dead letters")
    else:
        replayed = await streams.replay(store, a.tenant, a.ids or None)
        print(f"replayed {len(replayed)}")


async def _trim(store: Store, deployment: Deployment, a: argparse.Namespace) -> None:
    deployment.tenant(a.tenant)
    for stream, removed in (await streams.trim_tenant(store, a.tenant, keep_hours=a.keep_hours)).items():
        print(f"{stream}: {removed} removed")


async def _status(store: Store, deployment: Deployment, a: argparse.Namespace) -> None:
    tenant = deployment.tenant(a.tenant)
    print(f"{'queue':<16}{'waiting':>8}{'oldest':>10}  by channel")
    for q in await floor.queues(store, tenant):
        by_channel = ", ".join(f"{c} {n}" for c, n in q.by_channel.items())
        print(f"{q.queue:<16}{q.waiting:>8}{q.oldest_wait_s:>9.0f}s  {by_channel}")
    print(f"\n{'agent':<16}{'presence':<12}load")
    for agent in await floor.agents(store, tenant):
        load = ", ".join(f"{c} {n}/{agent.capacity.get(c, 0)}" for c, n in agent.load.items() if c != "total")
        reason = f" ({agent.reason})" if agent.reason else ""
        print(f"{agent.agent:<16}{agent.presence + reason:<12}{load or '-'}")


async def _backfill(store: Store, deployment: Deployment, a: argparse.Namespace) -> None:
    """`db backfill --tenant T`: archive what Redis holds that no events entry will name again."""
    from router.records import backfill

    if not a.tenant:
        raise CliError("db backfill needs --tenant")
    deployment.tenant(a.tenant)
    seen, written = await backfill.backfill(store, a.tenant)
    print(f"{a.tenant}: {seen} conversations in Redis, {written} archived now (the rest were archived already)")


COMMANDS: dict[str, Callable[[Store, Deployment, argparse.Namespace], Awaitable[None]]] = {
    "contact": _contact_add,
    "agent": _agent,
    "conversation": _conversation,
    "customer": _customer,
    "outbox": _outbox,
    "dead": _dead,
    "trim": _trim,
    "status": _status,
    "db": _backfill,
}


async def _simulate(settings: Settings, deployment: Deployment, a: argparse.Namespace) -> None:
    """Post webhooks signed as Twilio signs them and print the TwiML answers."""
    from channels import simulate
    from channels._twilio_auth import tokens_for

    tenant = deployment.tenant(a.tenant)
    try:
        simulate.check_numbers(tenant, a.channel if a.channel == "sms" else "voice", a.to or "")
    except simulate.SimulationError as exc:
        raise CliError(str(exc)) from None
    token = tokens_for(tenant, settings).current or await _sandbox_token(settings)
    url = (a.url or await _up_web_url(settings) or f"http://{settings.host}:{settings.port}").rstrip("/")
    account = tenant.twilio.account_sid if tenant.twilio else "AC" + "0" * 32
    try:
        async with simulate.Webhooks(url, settings.public_url or url, token, account) as hooks:
            if a.channel == "sms":
                print(await simulate.sms(hooks, tenant, a.address, a.text, a.to or "", a.media))
            else:
                presses = [key for key in a.press if key.strip()]
                await simulate.call(hooks, tenant, a.address, presses, to=a.to or "", hang_up=a.hang_up)
    except simulate.SimulationError as exc:
        raise CliError(str(exc)) from None


def _db(settings: Settings, a: argparse.Namespace) -> None:
    """`db upgrade` applies the schema's versions the database lacks; `db status` lists them."""
    import psycopg

    from router.records import migrate

    if not settings.database_url:
        raise CliError("set DATABASE_URL (the archive's PostgreSQL, e.g. postgresql://user@host/contactrouter)")
    try:
        if a.action == "upgrade":
            done = migrate.upgrade(settings.database_url)
            print(f"applied {', '.join(done)}" if done else "up to date", f"(schema version {migrate.latest()})")
            return
        with psycopg.connect(settings.database_url) as conn:
            have = migrate.applied(conn)
    except psycopg.OperationalError as exc:
        raise CliError(f"the database does not answer: {str(exc).strip().splitlines()[0]}") from None
    missing = [f"{m.version:04d}_{m.name}" for m in migrate.migrations() if m.version not in have]
    print(f"schema version {max(have) if have else 0} of {migrate.latest()}")
    if missing:
        print(f"missing: {', '.join(missing)} (run `contactrouter db upgrade`)")


async def _up_web_url(settings: Settings) -> str | None:
    """The web process of the `contactrouter up` whose store REDIS_URL names (it records where
    it listens), so `simulate` finds it without PORT; None without such a store."""
    if settings.redis_url is None:
        return None
    from redis.exceptions import RedisError

    store = connect(settings)
    try:
        url = await store.probe.get(UP_WEB_URL)
    except RedisError:
        return None  # no store to ask: HOST and PORT say where the web process is
    finally:
        await store.close()
    return url.decode() if url else None


async def _sandbox_token(settings: Settings) -> str:
    """The sandbox token `contactrouter up` keeps in its embedded store."""
    if settings.redis_url is None:
        raise CliError("no sandbox token: set TWILIO_SANDBOX_TOKEN, or REDIS_URL to the store of `contactrouter up`")
    from redis.exceptions import RedisError

    store = connect(settings)
    try:
        token = await store.redis.get(SANDBOX_TWILIO_TOKEN)
    except RedisError as exc:
        raise CliError(f"cannot read the sandbox token from {settings.redis_url}: {exc}") from None
    finally:
        await store.close()
    if not token:
        raise CliError(f"no sandbox token in the store at {settings.redis_url}: set TWILIO_SANDBOX_TOKEN")
    return token.decode()


async def _with_store(settings: Settings, deployment: Deployment, a: argparse.Namespace) -> None:
    if settings.redis_url is None:
        raise CliError("set REDIS_URL (for `contactrouter up`, it prints the URL of its embedded store)")
    store = connect(settings)
    a.settings = settings  # for the commands that need more than the store (the attachment store's folder)
    if settings.database_url:  # what Redis no longer holds is read from the archive
        from router.records.archive import Archive

        store.archive = await Archive.connect(settings.database_url, size=1)
    try:
        if a.command != "health":  # health answers fast on a dead store: no script load, which retries
            await store.load_scripts()
        run = EXTENSIONS[a.command].command if a.command in EXTENSIONS else COMMANDS[a.command]
        await run(store, deployment, a)
    finally:
        if store.archive is not None:
            await store.archive.close()
        await store.close()


def _supervisor_config(a: argparse.Namespace) -> str:
    from ops import supervisord

    procfile = Path(a.procfile or "Procfile")
    if procfile.is_file():
        types, source = supervisord.parse_procfile(procfile.read_text("utf-8")), str(procfile)
    elif a.procfile:
        raise CliError(f"no Procfile at {a.procfile}")
    else:  # an installed package has no Procfile: the one of the checkout, written out
        types, source = {role: f"contactrouter run {role} --json-logs" for role in ROLE_NAMES}, "every role"
    formation = supervisord.parse_formation(a.formation, list(types))
    if a.scrape_targets:
        if not a.metrics_port:
            raise CliError("--scrape-targets needs --metrics-port")
        targets = supervisord.metrics_targets(types, formation, a.metrics_port)
        Path(a.scrape_targets).write_text(json.dumps(targets, indent=2) + "\n", "utf-8")
    return supervisord.render(
        types,
        formation,
        directory=os.path.abspath(a.directory or "."),
        log_dir=os.path.abspath(a.log_dir) if a.log_dir else "",
        programs_only=a.programs_only,
        metrics_port=a.metrics_port,
        source=source,
    )


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    try:
        if a.command == "supervisor-config":  # needs neither the store nor the deployment
            print(_supervisor_config(a), end="")
            return 0
        settings = Settings.from_env()
        templating.use(settings.templates_dir)
        if a.config:
            settings = msgspec.structs.replace(settings, config_path=a.config)
        deployment = load_deployment(settings.config_path)
        if a.command == "config":  # the same settings and file `run` reads, checked the same way
            print(
                f"ok: {len(deployment.tenants)} tenants, "
                f"{sum(len(t.queues) for t in deployment.tenants)} queues, "
                f"{sum(len(t.agents) for t in deployment.tenants)} agents"
            )
            for warning in warnings_of(deployment) + fax_fonts.warnings(deployment):
                print(f"warning: {warning}")
            return 0
        if a.command == "up":
            from router.app import embedded

            processes.setup_logging(settings, json_logs=False)
            failed = processes.run_to_exit(embedded.up(msgspec.structs.replace(settings, redis_url=None), deployment))
            return 1 if failed else 0
        if a.command == "run":
            processes.setup_logging(settings, json_logs=a.json_logs)
            failed = processes.run_to_exit(_run_role(settings, deployment, a.role))
            return 1 if failed else 0  # so a process manager restarts a failed role
        extension = EXTENSIONS.get(a.command)
        needs_store = getattr(extension, "NEEDS_STORE", True)
        if extension is not None and not (needs_store(a) if callable(needs_store) else needs_store):
            asyncio.run(extension.command(deployment, a))
            return 0
        if a.command == "simulate":
            asyncio.run(_simulate(settings, deployment, a))
            return 0
        if a.command == "db" and a.action != "backfill":
            _db(settings, a)
            return 0
        if a.command == "db":
            if not settings.database_url:
                raise CliError("set DATABASE_URL (the archive's PostgreSQL, e.g. postgresql://user@host/contactrouter)")
        asyncio.run(_with_store(settings, deployment, a))
        return 0
    except ContactRouterError as exc:  # a refused request: one line; anything else is a bug, with its traceback
        message = f"not found: {exc}" if isinstance(exc, conversations.NotFound) else str(exc)
        print(f"contactrouter: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


async def _run_role(settings: Settings, deployment: Deployment, role: str) -> list[str]:
    """Run one role; returns the roles that failed (see processes.run_roles)."""
    if settings.redis_url is None:
        raise CliError("`run` needs REDIS_URL; without Redis use `contactrouter up`")
    store = connect(settings)
    try:
        return await processes.run_roles([role], store, deployment, settings)
    finally:
        await store.close()


if __name__ == "__main__":
    sys.exit(main())
