"""`contactrouter up`: every role in one process on the embedded store, with demo data."""

from __future__ import annotations

import logging
import secrets
import socket
import tempfile

import msgspec

from router import bus, events, logcontext
from router.app import processes
from router.app.inbox.accounts import demo_accounts
from router.config import Deployment
from router.keys import SANDBOX_TWILIO_TOKEN, UP_WEB_URL
from router.knowledge import articles as knowledge
from router.settings import Settings
from router.store import Store, connect, serve_embedded

log = logging.getLogger(__name__)

ALL_ROLES = ["web", "routing", "dispatch", "timers", "smtp", "campaigns", "telegram"]

DEMO_CONTACTS = [
    ("acme", "sms", "+15551230001", "Hi, my meter reading looks wrong this month."),
    ("acme", "email", "jane.doe@example.com", "Please send me a copy of my last invoice."),
    ("globex", "sms", "+15551230002", "I'd like to upgrade my plan."),
]


# A few published articles of the demo's knowledge base: (category, locale, title, body).
DEMO_ARTICLES = [
    ("meter", "en", "Reading your meter",
     "1. Open the meter cupboard.\n2. Read the **black** digits from left to right; leave out the red ones.\n"
     "3. Send us the reading in the chat or by SMS."),
    ("billing", "en", "Paying your bill", "Pay by card on your account page, or by bank transfer to the account "
     "on your bill. A payment takes up to **three working days** to show."),
    ("billing", "zh-CN", "如何支付账单",
     "您可以在账户页面用银行卡支付。也可以按账单上的账号银行转账。付款最多需要三个工作日到账。"),
    ("procedures", "en", "Refunds over 100", "Refunds over 100 need a supervisor's approval: add a note and "
     "transfer the conversation to the billing queue."),
]  # fmt: skip


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) != 0


def next_free(host: str, port: int) -> int:
    """`port`, or the first free one after it."""
    while not _port_free(host, port):
        port += 1
    return port


async def load_demo(store: Store, deployment: Deployment) -> None:
    """A few customers waiting, and a few help articles, so there is something to see.

    The demo agents stay offline, as a real centre's agents are until someone sits down
    at the desk (the inbox, or `contactrouter agent login`) and goes available. Seeding
    them available offered the demo contacts to agents nobody was watching: each offer
    timed out, and a few minutes after `up` the demo agents were away for missed offers
    nobody could have seen. Offline, the contacts wait in their queues (the floor shows
    them) and are offered the moment a demo agent goes available."""
    for index, (tenant, channel, address, body) in enumerate(DEMO_CONTACTS):
        contact = events.InboundContact(
            id=events.new_id(),
            tenant=tenant,
            channel=channel,
            address=address,
            provider_id=f"demo-{index}",
            occurred_at=events.now_ms(),
            body=body,
            subject="Invoice copy" if channel == "email" else "",
        )
        with logcontext.about():  # the roles started after it are about no demo contact
            await bus.ingest(store, contact)
    acme = next((t for t in deployment.tenants if t.id == "acme"), None)  # the bundled demo's, with its categories
    demo_kb = acme is not None and {a[0] for a in DEMO_ARTICLES} <= {c.id for c in acme.knowledge.categories}
    if acme is not None and demo_kb and not await knowledge.listing(store, acme.id):
        for category, locale, title, body in DEMO_ARTICLES:
            draft = knowledge.Draft(title=title, body=body, category=category, locale=locale)
            article = await knowledge.create(store, acme, draft, actor="demo", role="admin")
            for step in ("submit", "publish"):
                await knowledge.move(store, acme, article.id, step, actor="demo", role="admin")


async def up(settings: Settings, deployment: Deployment, *, store_port: int = 6390) -> list[str]:
    """Run every role on the embedded store until stopped; returns the roles that failed."""
    host = settings.host
    store_port = next_free(host, store_port)
    server, _thread, tcp = serve_embedded(host, store_port)
    store = connect(settings, embedded_server=server)
    # Tenants without a Twilio account take signed webhooks from the simulator:
    # it signs with this token, which it reads from the store.
    if not settings.twilio_sandbox_token:
        settings = msgspec.structs.replace(settings, twilio_sandbox_token=secrets.token_urlsafe(24))
    await store.redis.set(SANDBOX_TWILIO_TOKEN, settings.twilio_sandbox_token)
    await store.redis.set(UP_WEB_URL, f"http://{host}:{settings.port}")  # for `contactrouter simulate`
    # The SMTP server takes the next free port, and the banner and log say so (mail sent to
    # SMTP_PORT would reach whatever holds it); the demo's attachments go to a temp dir.
    smtp_port = next_free(settings.smtp_host, settings.smtp_port)
    smtp_moved = ""
    if smtp_port != settings.smtp_port:
        smtp_moved = f"  (SMTP_PORT {settings.smtp_port} is taken: mail goes to {smtp_port} instead)"
        log.warning("SMTP_PORT %d is taken; the SMTP server listens on %d", settings.smtp_port, smtp_port)
    settings = msgspec.structs.replace(
        settings,
        smtp_port=smtp_port,
        attachment_dir=settings.attachment_dir or tempfile.mkdtemp(prefix="contactrouter-attachments-"),
    )
    await processes.prepare(store, deployment)
    await load_demo(store, deployment)
    # fresh random passwords on every start, shown once here and never logged
    passwords = await demo_accounts(store, deployment)
    logins = "\n".join(f"           {login:<12} {password}" for login, password in passwords.items())
    tenants = ", ".join(t.id for t in deployment.tenants)
    roles = ALL_ROLES + (["archive"] if settings.database_url else [])
    roles += ["imap"] if any(t.email.imap is not None for t in deployment.tenants) else []
    archive = (
        "PostgreSQL at DATABASE_URL (closed conversations leave Redis after CONTACTROUTER_HOT_DAYS)"
        if settings.database_url
        else "off (no DATABASE_URL): the embedded store keeps everything"
    )
    print(
        f"""
Contact router is up: every role in this process, embedded store, demo tenants: {tenants}.
  health:  http://{host}:{settings.port}/healthz   readiness: http://{host}:{settings.port}/readyz
  store:   redis://{host}:{store_port}/0  (for the CLI in another terminal:
           export REDIS_URL=redis://{host}:{store_port}/0)
  archive: {archive}
  smtp:    {settings.smtp_host}:{smtp_port}{smtp_moved}
           (mail to help@acme.example becomes an acme contact)
  chat:    http://{host}:{settings.port}/webchat/acme/demo  (the web chat widget as a visitor sees it)
  help:    http://{host}:{settings.port}/help/acme  (the public help articles; the widget suggests them)
  inbox:   http://{host}:{settings.port}/inbox   (the supervisor enrols an authenticator app at first login)
           demo logins (passwords for this start only):
{logins}
Next:
  # The demo agents are offline until one goes available, as at a real desk: log in to
  # the inbox as alice and set yourself available, and the demo contact is offered. Or:
  contactrouter agent login --tenant acme alice        # Alice available: the demo contact is offered
  contactrouter agent offers --tenant acme alice       # the offer, with its reservation
  contactrouter agent accept --tenant acme alice <reservation>
  contactrouter agent reply --tenant acme alice <conversation> "Thanks, looking into it"
  contactrouter outbox --tenant acme                   # what would have been sent
  contactrouter contact add --tenant acme --channel sms --from +15551230000 "Hello"
  contactrouter simulate sms --tenant acme --from +15551230000 "Hello"   # a signed Twilio webhook
  contactrouter simulate call --tenant acme --from +12015551234 --press 1   # through the IVR
Stop with Ctrl-C.
""",
        flush=True,
    )
    try:
        failed = await processes.run_roles(roles, store, deployment, settings)
    finally:
        await store.close()
        tcp.shutdown()
        tcp.server_close()
    return failed
