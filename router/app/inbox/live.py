"""`/inbox/live`: the inbox's websocket, fed from the tenants' events streams.

One follower per tenant and web process reads the tenant's events stream (and its
web chat visitors' typing and read marks) with XREAD BLOCK from the last ids it
saw and hands each entry to the sockets of that tenant it concerns (the agents
it names, and the supervisors), so a hundred open inboxes cost one blocked Redis
connection per tenant, not a hundred, and an entry wakes its agents' sockets only.
A socket only ever receives what its user may see: an agent what names them or
happens to a conversation they hold, a supervisor everything in their tenants.
Notices carry ids and states, never customer text: the page fetches that over its
authenticated JSON routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from typing import NamedTuple

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web

from channels.webchat.signals import VisitorSignal
from router import events
from router.app.inbox.accounts import User
from router.app.inbox.sessions import SESSION, USER, same_origin
from router.appkeys import DEPLOYMENT, STORE
from router.keys import AccountKeys, Keys
from router.store import STORE_ERRORS, Store, StoreOutage, read_streams, text

log = logging.getLogger(__name__)

BLOCK_MS = 5000
BATCH = 200
QUEUE_SIZE = 1000  # a socket this far behind is closed (the page reconnects and redraws)
HEARTBEAT_S = 25.0  # the protocol's ping: how the server notices a client gone silently
# A socket with nothing to say for this long says {"kind": "beat"}: a page that hears
# nothing for a few beats takes its connection for dead (a browser cannot see pings)
# and reconnects, instead of showing a page that no longer changes.
BEAT_S = 10.0
# How soon an open socket notices that its session ended (password changed, login removed,
# logged out elsewhere, expired): it then says so and closes, and no notice reaches it after.
SESSION_CHECK_S = 5.0
SESSION_ENDED = 4401  # the close code: the page goes to the login instead of reconnecting


class Notice(NamedTuple):
    """One thing to tell the tenant's sockets, and the agents it concerns."""

    tenant: str
    payload: dict[str, object]
    agents: frozenset[str]


class Hub:
    """The tenants' event followers, shared by every socket of this web process."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # tenant -> each socket's queue -> the agent it listens for there (None: everything, a supervisor's)
        self.subscribers: dict[str, dict[asyncio.Queue, str | None]] = {}
        # tenant -> agent (or None) -> their queues: a notice is put only in the queues of the agents it
        # names and of the supervisors, not in every socket's of the tenant (500 agents cost 500 wake-ups
        # a notice, most of them to drop it)
        self.listeners: dict[str, dict[str | None, set[asyncio.Queue]]] = {}
        self.followers: dict[str, asyncio.Task] = {}
        self.sockets: set[web.WebSocketResponse] = set()

    def subscribe(self, tenant: str, queue: asyncio.Queue, agent: str | None = None) -> None:
        """The tenant's notices naming `agent` go to `queue`; every notice of the tenant if `agent` is None."""
        self.subscribers.setdefault(tenant, {})[queue] = agent
        self.listeners.setdefault(tenant, {}).setdefault(agent, set()).add(queue)
        if tenant not in self.followers or self.followers[tenant].done():
            self.followers[tenant] = asyncio.create_task(self._follow(tenant), name=f"inbox-live-{tenant}")

    def unsubscribe(self, tenant: str, queue: asyncio.Queue) -> None:
        self._forget(tenant, queue)
        if not self.subscribers.get(tenant) and tenant in self.followers:
            self.followers.pop(tenant).cancel()  # nobody watches this tenant: free the connection

    def _forget(self, tenant: str, queue: asyncio.Queue) -> None:
        subscribed = self.subscribers.get(tenant, {})
        if queue not in subscribed:
            return
        agent = subscribed.pop(queue)
        queues = self.listeners[tenant][agent]
        queues.discard(queue)
        if not queues:
            del self.listeners[tenant][agent]

    async def _follow(self, tenant: str) -> None:
        keys = Keys(tenant)
        # both streams share the tenant's hash tag: one XREAD, one slot, one connection
        last = {keys.events: "$", keys.webchat_signals: "$"}
        outage = StoreOutage(f"inbox live feed of {tenant}")
        while True:
            for stream, entries in await read_streams(self.store, last, outage, count=BATCH, block_ms=BLOCK_MS):
                stream = text(stream)
                for entry_id, fields in entries:
                    last[stream] = text(entry_id)
                    try:
                        if stream == keys.events:
                            notice = await self._event_notice(tenant, last[stream], fields[b"e"])
                        else:
                            notice = await self._signal_notice(tenant, fields[b"e"])
                    except (msgspec.DecodeError, msgspec.ValidationError, KeyError):
                        log.warning("undecodable entry %s on %s skipped", last[stream], stream)
                        continue
                    self._publish(tenant, notice)

    def _publish(self, tenant: str, notice: Notice) -> None:
        listeners = self.listeners.get(tenant, {})
        queues = [*listeners.get(None, ())]
        for agent in notice.agents:
            queues += listeners.get(agent, ())
        for queue in queues:
            try:
                queue.put_nowait(notice)
            except asyncio.QueueFull:  # a stalled socket: tell it to go and redraw
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)
                self._forget(tenant, queue)

    async def _event_notice(self, tenant: str, entry_id: str, data: bytes) -> Notice:
        event = events.decode_state(data, entry_id)
        # an event that names no agent (a delivery report, an SLA breach) concerns
        # whoever holds its conversation: looked up once here, not once per socket
        holder = "" if hasattr(event, "agent") else await self._holder(tenant, event.conversation)
        agents = {getattr(event, "agent", ""), getattr(event, "to_agent", ""), holder} - {""}
        return Notice(tenant, payload(event), frozenset(agents))

    async def _signal_notice(self, tenant: str, data: bytes) -> Notice:
        """A web chat visitor typing, or reading the agents' messages."""
        signal = msgspec.json.decode(data, type=VisitorSignal)
        fields: dict[str, object] = {"tenant": tenant, "kind": f"visitor_{signal.type}"}
        fields.update(conversation=signal.conversation, active=signal.active, up_to=signal.up_to)
        holder = await self._holder(tenant, signal.conversation)
        return Notice(tenant, fields, frozenset({holder} - {""}))

    async def _holder(self, tenant: str, conversation: str) -> str:
        if not conversation:
            return ""
        try:
            holder = await self.store.redis.hget(Keys(tenant).conversation(conversation), "agent")
        except Exception:
            log.warning("cannot look up the holder of %s/%s", tenant, conversation)
            return ""
        return text(holder) if holder else ""

    async def close_sockets(self) -> None:
        """On shutdown: open sockets would hold the server for its whole shutdown timeout."""
        for socket in list(self.sockets):
            await socket.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")

    async def close(self) -> None:
        for task in self.followers.values():
            task.cancel()
        # A read blocked inside the client can be slow to notice the cancel: never hold the
        # web process's shutdown for it.
        if self.followers:
            await asyncio.wait(list(self.followers.values()), timeout=2.0)
        self.followers.clear()


HUB = web.AppKey("inbox_hub", Hub)


async def hub_context(app: web.Application) -> AsyncIterator[None]:
    app[HUB] = Hub(app[STORE])
    yield
    await app[HUB].close()


async def close_sockets(app: web.Application) -> None:
    if HUB in app:
        await app[HUB].close_sockets()


def concerns(user: User, notice: Notice) -> bool:
    """Whether a user's socket gets a notice: a supervisor's, everything in their tenants
    (a socket subscribes only to those); an agent's, what names them or happens to a
    conversation they hold."""
    if user.supervises:
        return True
    agent = user.agent_in(notice.tenant)
    return bool(agent) and agent in notice.agents


def payload(event: events.StateEvent) -> dict[str, object]:
    fields = {
        "tenant": event.tenant,
        "type": type(event).__name__,
        "kind": event.__struct_config__.tag,
        "id": event.id,
        "conversation": event.conversation,
        "channel": event.channel,
    }
    for name in (
        "agent",
        "to_agent",
        "to_queue",
        "queue",
        "reservation",
        "expires_at",
        "presence",
        "status",
        "message",
    ):
        if hasattr(event, name):
            fields[name] = getattr(event, name)
    if isinstance(event, events.MessageAdded):
        fields["direction"] = event.direction
    return fields


async def live(request: web.Request) -> web.WebSocketResponse:
    if not same_origin(request):
        raise web.HTTPForbidden(text="cross-origin websocket refused")
    user = request[USER]
    hub = request.app[HUB]
    tenants = user.tenants(request.app[DEPLOYMENT])
    socket = web.WebSocketResponse(heartbeat=HEARTBEAT_S)
    await socket.prepare(request)
    hub.sockets.add(socket)
    queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUE_SIZE)
    for tenant in tenants:
        hub.subscribe(tenant, queue, None if user.supervises else user.agent_in(tenant))

    async def drain_client() -> None:
        async for message in socket:  # the page sends nothing; this notices a close
            if message.type == WSMsgType.ERROR:
                break

    async def session_lasts() -> None:
        """Returns once the socket's session is gone; a store outage is not its end."""
        key = AccountKeys.session(request[SESSION].digest)
        # the first check at a random point of the period: sockets that connect together (every
        # desk after a restart) then check spread over it, not all in the same moment
        await asyncio.sleep(random.uniform(0, SESSION_CHECK_S))
        while True:
            try:
                if not await hub.store.redis.exists(key):
                    return
            except STORE_ERRORS:
                pass
            await asyncio.sleep(SESSION_CHECK_S)

    reader = asyncio.create_task(drain_client())
    watcher = asyncio.create_task(session_lasts())
    getter = asyncio.ensure_future(queue.get())
    clock = asyncio.get_running_loop().time
    try:
        await socket.send_json({"kind": "hello", "tenants": tenants, "now": events.now_ms(), "beat_s": BEAT_S})
        sent_at = clock()
        while not reader.done():
            quiet = max(0.0, sent_at + BEAT_S - clock())
            done, _ = await asyncio.wait({getter, reader, watcher}, timeout=quiet, return_when=asyncio.FIRST_COMPLETED)
            if not done:
                await socket.send_json({"kind": "beat", "now": events.now_ms()})
                sent_at = clock()
                continue
            if watcher in done:
                getter.cancel()
                await socket.send_json({"kind": "session_ended"})
                await socket.close(code=SESSION_ENDED, message=b"session ended")
                break
            if getter not in done:
                getter.cancel()
                break
            notice = getter.result()
            if notice is None:  # fell behind: the page reconnects and redraws everything
                break
            getter = asyncio.ensure_future(queue.get())
            if concerns(user, notice):
                await socket.send_json(notice.payload)
                sent_at = clock()
    except ConnectionResetError:
        pass
    finally:
        getter.cancel()
        hub.sockets.discard(socket)
        for tenant in tenants:
            hub.unsubscribe(tenant, queue)
        for task in (reader, watcher):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await socket.close()
    return socket
