"""The inbox's pages: the inbox itself, a conversation, their live JSON, and the
files a conversation references.

Every page is a Jinja2 template from templates/inbox/ rendered by rendering.render;
every form on them posts the session's CSRF token (checked by the sessions middleware).
"""

from __future__ import annotations

import datetime as dt
import logging

from aiohttp import web

from channels.voice import monitor
from router import agents, conversations, customers, events, i18n, names, revocations, templating
from router.app.inbox import attachments, call_panel, campaigns, canned, chat, listing, messages, originals
from router.app.inbox.access import CONVERSATION_PATH, ID, conversation_of
from router.app.inbox.attachments import attachment_store
from router.app.inbox.rendering import brand, locale_of, render
from router.app.inbox.sessions import USER
from router.appkeys import DEPLOYMENT, STORE
from router.config import Tenant
from router.customers import ADDRESS_KIND, identity
from router.i18n import N_
from router.keys import Keys
from router.store import Store

log = logging.getLogger(__name__)

REPLY_CHANNELS = {"phone": "sms", "email": "email", "telegram": "telegram", "webchat": "webchat"}
STATIC = {
    "inbox.js": "application/javascript",
    "i18n.js": "application/javascript",
    "inbox.css": "text/css",
    "floor.js": "application/javascript",
    "campaigns.js": "application/javascript",
    "live.js": "application/javascript",
    "attention.js": "application/javascript",
    "shortcuts.js": "application/javascript",
    "reply.js": "application/javascript",
    "softphone.js": "application/javascript",
}


# --- the inbox ---


async def _presences(request: web.Request) -> list[dict[str, str]]:
    store, deployment, user = request.app[STORE], request.app[DEPLOYMENT], request[USER]
    result = []
    for tenant, agent in user.seats(deployment):
        status = await agents.status(store, tenant, agent)
        result.append(
            {
                "tenant": tenant.id,
                "tenant_name": tenant.name or tenant.id,
                "brand": brand(tenant),
                "agent": agent,
                "presence": status.get("presence", "offline"),
                "reason": status.get("reason", ""),
            }
        )
    return result


async def _lists(request: web.Request) -> tuple[listing.Page, listing.Filter, listing.Page]:
    """The user's own conversations (for attention: counts, title, shortcuts) and the list
    pane as the page's query asks (?tab=mine|queue|all&sort=activity|sla|waiting&channel=
    &tenant=&state=&offset=: listing.Filter); the same page when it asks for the default."""
    store, deployment, user = request.app[STORE], request.app[DEPLOYMENT], request[USER]
    mine = await listing.page(store, deployment, user, listing.Filter())
    flt = listing.Filter.parse(request.query, user)
    return mine, flt, mine if flt == listing.Filter() else await listing.page(store, deployment, user, flt)


def _list_view(request: web.Request, flt: listing.Filter, shown: listing.Page) -> dict[str, object]:
    """The list pane's own fields, for the template and the JSON alike."""
    user, deployment = request[USER], request.app[DEPLOYMENT]
    tenants = user.tenants(deployment)
    return {
        "tab": flt.tab,
        "sort": flt.sort,
        "channel": flt.channel,
        "state": flt.state,
        "tenant": flt.tenant,
        "offset": flt.offset,
        "limit": flt.limit,
        "total": shown.total,
        "counts": shown.counts,
        "rows": shown.rows,
        "tabs": list(listing.TABS if user.supervises else ("mine",)),
        "tenants": [(t, deployment.tenant(t).name or t) for t in tenants] if len(tenants) > 1 else [],
        "channels": list(listing.CHANNEL_ICONS),
        "states": list(listing.STATES),
        "sorts": list(listing.SORTS),
    }


async def inbox(request: web.Request) -> web.Response:
    store, deployment, user = request.app[STORE], request.app[DEPLOYMENT], request[USER]
    _mine, flt, shown = await _lists(request)
    return render(
        request,
        "inbox.html",
        presences=await _presences(request),
        offers=await listing.offers(store, deployment, user),
        listing=_list_view(request, flt, shown),
        presence_choices=("available", "away", "offline"),
    )


async def state_json(request: web.Request) -> web.Response:
    """What the desk's pages show, for the live script to redraw them without a reload."""
    store, deployment, user = request.app[STORE], request.app[DEPLOYMENT], request[USER]
    mine, flt, shown = await _lists(request)
    return web.json_response(
        {
            "now": events.now_ms(),
            "presences": await _presences(request),
            "offers": await listing.offers(store, deployment, user),
            "conversations": mine.rows,
            "list": _list_view(request, flt, shown),
        }
    )


# --- a conversation ---


CHANNEL_LABELS = {
    "sms": N_("SMS"),
    "email": N_("Email"),
    "telegram": "Telegram",
    "webchat": N_("Web chat"),
    "phone": N_("Phone"),
}


def _label(kind: str, channel: str, address: str, locale: str = i18n.SOURCE) -> str:
    """ "SMS +1 555-123-0000", "Email ana@example.com", "Web chat": for people, in their language."""
    shown = names.formatted_address(channel, address)
    return f"{i18n.gettext(locale, CHANNEL_LABELS.get(kind, kind))} {shown}".strip()


def _address_label(ident: str, locale: str = i18n.SOURCE) -> str:
    kind, _, address = ident.partition(":")
    return _label(kind, REPLY_CHANNELS.get(kind, kind), address, locale)


NOT_THE_CUSTOMER = N_("(not the customer)")


def _reply_options(
    identities: list[str], record: dict[str, str], others: list[tuple[str, str]] = (), locale: str = i18n.SOURCE
) -> list[dict[str, str]]:
    """Where a reply may go: the address the customer last wrote from first (the default),
    then the customer's other addresses on channels that carry text, then the others in
    the conversation (a colleague on Cc who replied into the thread), each said to be not
    the customer: an agent answers them only by choosing to."""
    current = (record.get("last_channel") or record.get("channel", ""), record.get("last_address", ""))
    options = []
    if current[1] and current[0] != "voice" and current not in others:
        options.append({"value": f"{current[0]}|{current[1]}", "label": _label(current[0], *current, locale)})
    for ident in identities:
        kind, _, address = ident.partition(":")
        channel = REPLY_CHANNELS.get(kind)
        if channel and (channel, address) != current:
            options.append({"value": f"{channel}|{address}", "label": _label(channel, channel, address, locale)})
    for channel, address in others:
        if channel in REPLY_CHANNELS.values():
            label = f"{_label(channel, channel, address, locale)} {i18n.gettext(locale, NOT_THE_CUSTOMER)}"
            options.append({"value": f"{channel}|{address}", "label": label})
    return options


def _who(view: dict[str, object], entry: events.HistoryEntry, identities: set[str]) -> dict[str, object]:
    """An entry's address line says who else is in the thread: a message from someone who is
    not the customer (a colleague on Cc who replied), and whom a reply was copied to."""
    someone_else = entry.channel in ADDRESS_KIND and identity(entry.channel, entry.address) not in identities
    if entry.kind == "in" and someone_else:
        view["address"] = f"{view['address']} {NOT_THE_CUSTOMER}"
    elif entry.kind == "out" and entry.metadata.get("cc"):
        view["address"] = f"{view['address']} (Cc: {entry.metadata['cc']})"
    return view


async def _identities(store: Store, tenant: str, customer: str) -> set[str]:
    fields = await store.redis.hkeys(Keys(tenant).customer(customer))
    return {f.decode().removeprefix("ident:") for f in fields if f.startswith(b"ident:")}


PRECHAT_LABELS = {  # shown in the reader's language (conversation.html)
    "prechat_name": N_("Name"),
    "prechat_email": N_("Email"),
    "prechat_topic": N_("Topic"),
    "page": N_("Page"),
}


def _prechat(threads: list[dict]) -> list[tuple[str, str]]:
    """The newest web chat message's pre-chat answers (and the page it was sent from)."""
    for thread in reversed(threads):  # oldest first
        for entry in reversed(thread["source"]):
            if entry.kind == "in" and entry.channel == "webchat":
                return [(label, entry.metadata[f]) for f, label in PRECHAT_LABELS.items() if entry.metadata.get(f)]
    return []


async def delivery_statuses(store: Store, tenant: str, entries: list[events.HistoryEntry]) -> dict[str, str]:
    """Where each reply stands with its provider (queued, sent, delivered, failed: why)."""
    outgoing = [e.id for e in entries if e.kind == "out"]
    if not outgoing:
        return {}
    keys = Keys(tenant)
    async with store.redis.pipeline(transaction=False) as pipe:
        for message_id in outgoing:
            pipe.hmget(keys.delivery(message_id), "status", "error")
        rows = await pipe.execute()
    found = {m: (s.decode(), (e or b"").decode()) for m, (s, e) in zip(outgoing, rows, strict=True) if s}
    if store.archive is not None and len(found) < len(outgoing):  # an archived conversation's, evicted from Redis
        found = {**await store.archive.deliveries(tenant, [m for m in outgoing if m not in found]), **found}
    result = {}
    for message_id in outgoing:
        label, error = found.get(message_id) or ("queued", "")
        result[message_id] = f"{label}: {error}" if error and label in ("failed", "refused") else label
    return result


# How a sentence names a channel (a possible opt-out's card: "(SMS, ...)", "opt-out of calls").
CHANNEL_WORDS = {
    "sms": N_("SMS"),
    "voice": N_("calls"),
    "email": N_("email"),
    "fax": N_("fax"),
    "telegram": "Telegram",
    "webchat": N_("web chat"),
}


def _revocation_view(flag: revocations.Flag, locale: str = i18n.SOURCE) -> dict[str, str]:
    """A flag as the conversation's page shows it: the words, where and when they came."""
    when = dt.datetime.fromtimestamp(flag.at / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if flag.at else ""
    words = {channel: i18n.gettext(locale, word) for channel, word in CHANNEL_WORDS.items()}
    named = i18n.gettext(locale, " and ").join(words.get(c, c) for c in (flag.channels or (flag.channel,)))
    return {
        "ident": flag.ident,
        "phrase": flag.phrase,
        "channel": words.get(flag.channel, flag.channel),
        "when": when,
        "covers": named,
    }


def tenant_agent_names(tenant: Tenant) -> dict[str, str]:
    """Each agent's id to what people call them."""
    return {a.id: a.name or a.id for a in tenant.agents}


async def conversation(request: web.Request, error: str = "", status: int = 200) -> web.Response:
    tenant, record = await conversation_of(request, request.match_info["tenant"], request.match_info["conversation"])
    store, user = request.app[STORE], request[USER]
    agent = user.agent_in(tenant.id)
    if agent:
        await listing.mark_read(store, tenant.id, agent, record["id"])
        if record.get("agent") == agent:
            await chat.mark_read(store, tenant, record)
    profile = await customers.profile(store, tenant.id, record["customer"])
    customer_record = (await names.records(store, tenant.id, [record["customer"]])).get(record["customer"], {})
    agent_names = tenant_agent_names(tenant)
    root = attachment_store(request).root
    identities = set(profile["identities"])
    threads = []
    statuses: dict[str, str] = {}
    for conv_id, entries in await conversations.customer_history(store, tenant.id, record["customer"]):
        statuses.update(await delivery_statuses(store, tenant.id, entries))
        faxed = await originals.faxed_pdfs(store, tenant.id, entries)
        files_url = f"/inbox/t/{tenant.id}/c/{conv_id}/files"
        media = messages.media_links(entries, f"/inbox/t/{tenant.id}/c/{conv_id}/media")
        threads.append(
            {
                "id": conv_id,
                "current": conv_id == record["id"],
                "record": record if conv_id == record["id"] else await conversations.get(store, tenant.id, conv_id),
                "entries": [
                    originals.with_faxed_pdf(
                        _who(messages.view(entry, files_url, root, media, agent_names), entry, identities),
                        faxed.get(entry.id),
                        files_url,
                    )
                    for entry in entries
                ],
                "source": entries,
            }
        )
    holding = record.get("agent") == agent and record.get("state") == "assigned"
    in_wrapup = (
        bool(agent)
        and record.get("state") == "closed"
        and bool(await store.redis.sismember(Keys(tenant.id).agent_work(agent), record["id"]))
    )
    current = next((t["source"] for t in threads if t["current"]), None)
    others = await conversations.participants(store, tenant.id, record, current)
    locale = locale_of(request)
    reply_options = _reply_options(profile["identities"], record, others, locale)
    # A file may go along where the channel can deliver one (router.app.inbox.attachments).
    attach_types = sorted(
        {
            content_type
            for option in reply_options
            for content_type in (attachments.policy(tenant, option["value"].partition("|")[0]) or ([], 0))[0]
        }
    )
    flags = await revocations.pending(store, tenant.id, sorted(identities))  # awaiting an agent's decision
    fields = canned.fields(names.known_name(customer_record), agent_names.get(agent, agent), tenant.name or tenant.id)
    return render(
        request,
        "conversation.html",
        status=status,
        error=error,
        tenant=tenant,
        brand=brand(tenant),
        record=record,
        customer=names.display(customer_record, *names.where(record)),
        agent_names=agent_names,
        customer_name=customer_record.get("name", ""),
        customer_channel_name=customer_record.get("channel_name", ""),
        addresses=[_address_label(ident, locale) for ident in profile["identities"]],
        prechat=_prechat(threads),
        profile=profile,
        threads=threads,
        holding=holding,
        in_wrapup=in_wrapup,
        agent=agent,
        colleagues=[(a.id, a.name or a.id) for a in tenant.agents if a.id != agent],
        all_agents=[(a.id, a.name or a.id) for a in tenant.agents if a.id != record.get("agent")],
        queues=[(q.id, q.name or q.id) for q in tenant.queues],
        reply_options=reply_options,
        cc_others=[address for channel, address in others if channel == "email"],
        attach_types=attach_types,
        canned=canned.replies(tenant, fields) if holding else [],
        idempotency_key=events.new_id(),
        sla_due_at=listing.sla_due_ms(tenant, record),
        icons=listing.CHANNEL_ICONS,
        statuses=statuses,
        campaign=await campaigns.conversation_panel(store, tenant, record),
        call=await call_panel.panel(store, tenant, record, user),
        revocations=[_revocation_view(flag, locale) for flag in flags],
        listing=_list_view(request, *(await _lists(request))[1:]),
        current_conversation=record["id"],
    )


async def messages_json(request: web.Request) -> web.Response:
    """The conversation's entries after a given one, and its state: for live updates."""
    tenant, record = await conversation_of(request, request.match_info["tenant"], request.match_info["conversation"])
    after = request.query.get("after", "")
    entries = await conversations.history(request.app[STORE], tenant.id, record["id"])
    ids = [e.id for e in entries]
    start = ids.index(after) + 1 if after in ids else 0
    base = f"/inbox/t/{tenant.id}/c/{record['id']}"
    files_url, media = base + "/files", messages.media_links(entries, base + "/media")
    faxed = await originals.faxed_pdfs(request.app[STORE], tenant.id, entries)
    agent_names = tenant_agent_names(tenant)
    identities = await _identities(request.app[STORE], tenant.id, record["customer"])
    agent = request[USER].agent_in(tenant.id)
    if agent:
        await listing.mark_read(request.app[STORE], tenant.id, agent, record["id"])
        if record.get("agent") == agent:
            await chat.mark_read(request.app[STORE], tenant, record)
    return web.json_response(
        {
            "state": record.get("state", ""),
            "agent": record.get("agent", ""),
            "entries": [
                originals.with_faxed_pdf(
                    _who(messages.live_view(e, agent_names), e, identities)
                    | {"attachments": messages.attachment_views(e, files_url, media)},
                    faxed.get(e.id),
                    files_url,
                )
                for e in entries[start:]
            ],
            "statuses": await delivery_statuses(request.app[STORE], tenant.id, entries),
            "listeners": call_panel.listeners_text(
                await monitor.listeners(request.app[STORE], tenant.id, record["id"])
            ),
        }
    )


async def file(request: web.Request) -> web.FileResponse:
    """A stored attachment, only if this conversation's history references it."""
    tenant, record = await conversation_of(request, request.match_info["tenant"], request.match_info["conversation"])
    digest = request.match_info["digest"]
    entries = await conversations.history(request.app[STORE], tenant.id, record["id"])
    content_type = messages.refs_of(entries).get(digest)
    if content_type is None and digest in (await originals.faxed_pdfs(request.app[STORE], tenant.id, entries)).values():
        content_type = "application/pdf"
    if content_type is None or not messages.file_ref(messages.STORE_PREFIX + digest):
        raise web.HTTPNotFound()
    path = attachment_store(request).path(messages.STORE_PREFIX + digest)
    if not path.is_file():
        raise web.HTTPNotFound()
    headers = messages.file_headers(content_type, inline=content_type in messages.INLINE_TYPES)
    return web.FileResponse(path, headers=headers)


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound()
    body = (templating.folder() / "inbox" / name).read_text("utf-8")
    return web.Response(text=body, content_type=STATIC[name], headers={"Cache-Control": "no-cache"})


def routes(app: web.Application) -> None:
    add = app.router
    add.add_get("", inbox)
    add.add_get("/state.json", state_json)
    base = CONVERSATION_PATH
    add.add_get(base, conversation)
    add.add_get(base + "/messages.json", messages_json)
    add.add_get(base + "/files/{digest:[0-9a-f]{64}}", file)
    add.add_get(base + "/original/{entry:" + ID + "}", originals.original)
    add.add_get("/static/{name}", static)
