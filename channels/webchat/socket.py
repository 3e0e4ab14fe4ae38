"""The web chat websocket: GET /webchat/{tenant}/socket.

The page's Origin is checked against the tenant's allow-list before the upgrade
(403). The first frame is a hello: a visitor token, or a customer identity the
tenant's site signed, or neither (a new anonymous visitor gets a token). The tab
then gets the visitor's history and every new message, typing and read mark live.

Frames (JSON), tab -> server:
  {"type": "hello", "token"?, "identity"?: {"kind", "value", "signature"}, "page"?}
  {"type": "prechat", "fields": {"name"?, "email"?, "topic"?}}
  {"type": "message", "id": <the tab's own id for it>, "text"}
  {"type": "typing", "active": bool}        {"type": "read", "up_to": <message id>}
  {"type": "links"}                         (fresh file links for an open tab; once a minute at most)
  {"type": "rating", "conversation", "rating"?, "comment"?}  (a satisfaction survey's answer: survey.py)
server -> tab:
  {"type": "welcome", "token", "history", "open", "prechat_done", "agent_read"}
  {"type": "links", "items": [{"id", "files"}]}  (the history's files, newly signed)
  {"type": "ack", "id", "duplicate"}   {"type": "error", "code", "message", "id"?, "retry_after"?}
  message / typing / read / survey / rated items (transcript.ChatItem)

A message is acknowledged only once it is on the inbound stream; its id is the
provider id there, so a tab resending after a reconnect adds nothing twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

from aiohttp import WSMsgType, web
from redis.exceptions import RedisError

from channels.webchat import files, identity, inbound, limits, origins, signals, survey, transcript
from channels.webchat._runtime import MAX_SOCKETS_PER_ADDRESS, RUNTIME, Runtime, chat_tenant, client_ip, is_open
from channels.webchat.live import Tab
from router import customers, events
from router.appkeys import STORE
from router.config import Tenant
from router.config.webchat import WebchatChannel
from router.keys import Keys
from router.store import Store, text

log = logging.getLogger(__name__)

PATH = "/webchat/{tenant}/socket"
HELLO_TIMEOUT_S = 10
CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
MESSAGE_ID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")  # a ULID
TYPING_EVERY_S = 2.0  # a visitor's typing marks reach the inbox at most this often
LINKS_EVERY_S = 60.0  # fresh file links at most this often (each asks for the whole history)
_STORE_ERRORS = (RedisError, OSError)


class Closing(Exception):
    """Ends the session after an error frame, with a websocket close code."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def setup(app: web.Application) -> None:
    app.router.add_get(PATH, connect)


async def connect(request: web.Request) -> web.StreamResponse:
    tenant, webchat = chat_tenant(request)
    if not origins.is_allowed(request, webchat):
        log.warning(
            "web chat socket of %s refused: origin %r is not allowed", tenant.id, origins.request_origin(request)
        )
        raise web.HTTPForbidden(text="this site may not open this chat")
    runtime, ip = request.app[RUNTIME], client_ip(request)
    if runtime.sockets[ip] >= MAX_SOCKETS_PER_ADDRESS:
        log.warning("web chat socket of %s refused: %d open from %s", tenant.id, runtime.sockets[ip], ip)
        raise web.HTTPTooManyRequests(text="too many open chats from your address")
    # A frame may carry a message of message_bytes as JSON, where escapes take up to 6 bytes a character.
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=webchat.limits.message_bytes * 6 + 4096)
    await ws.prepare(request)
    runtime.sockets[ip] += 1
    try:
        await ChatSession(request.app[STORE], runtime, tenant, webchat, ws, ip).run()
    finally:
        runtime.sockets[ip] -= 1
        if runtime.sockets[ip] <= 0:
            del runtime.sockets[ip]
    return ws


def _error(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, **extra}


class ChatSession:
    """One open tab of one visitor."""

    def __init__(
        self,
        store: Store,
        runtime: Runtime,
        tenant: Tenant,
        webchat: WebchatChannel,
        ws: web.WebSocketResponse,
        ip: str,
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.tenant = tenant
        self.webchat = webchat
        self.ws = ws
        self.ip = ip
        self.keys = Keys(tenant.id)
        self.tab = Tab(ws)
        self.visitor = ""
        self.page = ""
        self.language = ""
        self._typing_at = 0.0
        self._typing_active = False
        self._links_at = float("-inf")

    def send(self, frame: dict[str, Any]) -> None:
        self.tab.push(json.dumps(frame))

    async def run(self) -> None:
        writer = asyncio.create_task(self._write())
        try:
            try:
                await self._serve()
            except _STORE_ERRORS:  # before the visitor is known (the hello): nothing to keep, so say so and go
                log.exception("web chat of %s: store failed during the hello", self.tenant.id)
                self.send(_error("unavailable", "the chat is unavailable; trying again shortly"))
                raise Closing(1011) from None
        except Closing as closing:
            self.tab.close()
            await writer
            await self.ws.close(code=closing.code)
        finally:
            if self.visitor:
                self.runtime.hub.unregister(self.tenant.id, self.visitor, self.tab)
            self.tab.close()
            if not writer.done():
                await writer

    async def _write(self) -> None:
        while True:
            frame = await self.tab.frames.get()
            if frame is None or self.ws.closed:
                return
            if self.tab.overflowed:  # too slow to keep up: it reconnects and replays instead
                await self.ws.close(code=1013, message=b"too slow")
                return
            if self.visitor:  # a live message's files: links signed now, for this visitor
                frame = files.linked_frame(frame, self.runtime.secret, self.tenant.id, self.visitor)
            try:
                await self.ws.send_str(frame)
            except (ConnectionError, RuntimeError):
                return

    async def _serve(self) -> None:
        try:
            first = await self.ws.receive(timeout=HELLO_TIMEOUT_S)
        except TimeoutError:
            self.send(_error("hello_expected", "say hello first"))
            raise Closing(4408) from None
        hello = self._frame(first)
        if hello is None or hello.get("type") != "hello":
            self.send(_error("hello_expected", "the first frame must be a hello"))
            raise Closing(4400)
        await self._hello(hello)
        async for message in self.ws:
            frame = self._frame(message)
            if frame is None:
                if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    return
                continue
            handler = {
                "message": self._message,
                "prechat": self._prechat,
                "typing": self._typing,
                "read": self._read,
                "links": self._links,
                "rating": self._rating,
            }.get(frame.get("type"))
            if handler is None:
                self.send(_error("bad_request", f"unknown frame type {str(frame.get('type'))[:32]!r}"))
                continue
            try:
                await handler(frame)
            except _STORE_ERRORS:
                log.exception("web chat of %s: store failed", self.tenant.id)
                self.send(_error("unavailable", "not saved, please try again", id=str(frame.get("id", ""))[:64]))

    def _frame(self, message: Any) -> dict[str, Any] | None:
        if message.type != WSMsgType.TEXT:
            if message.type == WSMsgType.BINARY:
                self.send(_error("bad_request", "frames are JSON text"))
            return None
        try:
            frame = json.loads(message.data)
        except ValueError:
            self.send(_error("bad_request", "frames are JSON objects"))
            return None
        if not isinstance(frame, dict):
            self.send(_error("bad_request", "frames are JSON objects"))
            return None
        return frame

    # --- hello: who is this, and what have they seen ---

    async def _hello(self, hello: dict[str, Any]) -> None:
        claimed = hello.get("identity")
        token = hello.get("token")
        page = hello.get("page")
        self.page = page[:500] if isinstance(page, str) else ""
        language = hello.get("language")  # the browser's: routing's fallback when a message says too little
        well_formed = isinstance(language, str) and len(language) <= 35 and re.fullmatch(events.LANGUAGE_TAG, language)
        self.language = language if well_formed else ""
        try:
            if claimed is not None:
                if not isinstance(claimed, dict):
                    raise identity.Refused("identity_refused", "an identity is an object")
                self.visitor = identity.identified_visitor(
                    self.webchat, claimed.get("kind"), claimed.get("value"), claimed.get("signature")
                )
                await self._join_customer(claimed["kind"])
            elif token:
                if not isinstance(token, str):
                    raise identity.Refused("bad_token", "the visitor token is not valid")
                self.visitor = identity.verify_token(self.runtime.secret, self.tenant.id, token)
            else:
                retry = await limits.take(
                    self.store, self.tenant.id, [("new", self.ip, self.webchat.limits.per_ip_per_minute)]
                )
                if retry:
                    self.send(_error("rate_limited", "too many new chats from your address", retry_after=retry))
                    raise Closing(4429)
                self.visitor = identity.new_visitor()
        except identity.Refused as refused:
            log.warning("web chat of %s refused a hello from %s: %s", self.tenant.id, self.ip, refused)
            self.send(_error(refused.code, str(refused)))
            raise Closing(4401) from None
        # Registered before the replay: whatever arrives meanwhile is pushed too (shown once, by id).
        self.runtime.hub.register(self.tenant.id, self.visitor, self.tab)
        history = await transcript.history(self.store, self.tenant.id, self.visitor)
        state = await self.store.redis.hgetall(self.keys.webchat_visitor(self.visitor))
        self.send(
            {
                "type": "welcome",
                "token": identity.sign_token(self.runtime.secret, self.tenant.id, self.visitor),
                "history": [
                    files.linked(_item(item), self.runtime.secret, self.tenant.id, self.visitor) for item in history
                ],
                "open": is_open(self.tenant),
                "prechat_done": bool(state.get(b"prechat")) or not self.webchat.prechat,
                "agent_read": text(state.get(b"agent_read", b"")),
            }
        )

    async def _join_customer(self, kind: str) -> None:
        """A signed email is the customer who writes from that address: the chat joins their
        history (once, before the visitor's first message opens a customer of its own)."""
        if kind != "email":
            return
        chat = customers.identity("webchat", self.visitor)
        if await customers.find(self.store, self.tenant.id, chat) is not None:
            return
        owner = await customers.find(self.store, self.tenant.id, customers.identity("email", self.visitor[6:]))
        if owner is not None:
            await customers.link(self.store, self.tenant.id, owner, chat)

    # --- what the visitor does ---

    async def _prechat(self, frame: dict[str, Any]) -> None:
        fields = frame.get("fields")
        if not isinstance(fields, dict):
            self.send(_error("bad_request", "prechat needs fields"))
            return
        answers: dict[str, str] = {}
        for name in self.webchat.prechat:
            value = fields.get(name)
            value = value.strip() if isinstance(value, str) else ""
            if not value:
                if name in self.webchat.prechat_required:
                    self.send(_error("prechat_invalid", f"please fill in your {name}", field=name))
                    return
                continue
            if name == "email" and not re.fullmatch(r"[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,63}", value):
                self.send(_error("prechat_invalid", "that email address does not look right", field=name))
                return
            if name == "topic" and value not in (t.label for t in self.webchat.topics):
                self.send(_error("prechat_invalid", "please pick one of the topics", field=name))
                return
            answers[name] = value[:100] if name == "name" else value
        await self.store.redis.hset(self.keys.webchat_visitor(self.visitor), mapping={**answers, "prechat": "1"})
        self.send({"type": "prechat_ok"})

    async def _message(self, frame: dict[str, Any]) -> None:
        client_id, body = frame.get("id"), frame.get("text")
        if not isinstance(client_id, str) or not CLIENT_ID.fullmatch(client_id):
            self.send(_error("bad_request", "a message needs an id of 8-64 letters, digits, - or _"))
            return
        if not isinstance(body, str) or not body.strip():
            self.send(_error("empty", "the message is empty", id=client_id))
            return
        size, cap = len(body.encode()), self.webchat.limits.message_bytes
        if size > cap:
            self.send(_error("too_large", f"the message is {size} bytes; the limit is {cap}", id=client_id))
            return
        state = await self.store.redis.hgetall(self.keys.webchat_visitor(self.visitor))
        if self.webchat.prechat and not state.get(b"prechat"):
            self.send(_error("prechat_required", "please answer the questions first", id=client_id))
            return
        if not is_open(self.tenant):
            self.send(_error("closed", self.webchat.offline_message, id=client_id))
            return
        retry = await limits.take(self.store, self.tenant.id, self._quotas())
        if retry:
            self.send(_error("rate_limited", "you are sending too fast", id=client_id, retry_after=retry))
            return
        duplicate = await inbound.deliver(
            self.store, self.tenant, self.visitor, client_id, body, state, page=self.page, language=self.language
        )
        self.send({"type": "ack", "id": client_id, "duplicate": duplicate})

    async def _rating(self, frame: dict[str, Any]) -> None:
        refused = survey.refusal(frame)
        if refused is not None:
            self.send(refused)
            return
        # ratings have a quota of their own: a survey's clicks never stop the visitor writing
        quota = [("rating", self.visitor, self.webchat.limits.per_visitor_per_minute)]
        retry = await limits.take(self.store, self.tenant.id, quota)
        if retry:
            self.send(_error("rate_limited", "you are sending too fast", retry_after=retry))
            return
        refused = await survey.answer(self.store, self.tenant, self.visitor, frame)
        if refused is not None:
            self.send(refused)

    def _quotas(self) -> list[tuple[str, str, int]]:
        return [
            ("visitor", self.visitor, self.webchat.limits.per_visitor_per_minute),
            ("ip", self.ip, self.webchat.limits.per_ip_per_minute),
        ]

    async def _typing(self, frame: dict[str, Any]) -> None:
        active = frame.get("active") is True
        now = asyncio.get_running_loop().time()
        if active == self._typing_active and now - self._typing_at < TYPING_EVERY_S:
            return  # the inbox already shows it
        self._typing_at, self._typing_active = now, active
        conversation = await signals.open_conversation(self.store, self.tenant.id, self.visitor)
        signal = signals.VisitorSignal(
            type="typing", visitor=self.visitor, conversation=conversation, at=events.now_ms(), active=active
        )
        await signals.from_visitor(self.store, self.tenant.id, signal)

    async def _read(self, frame: dict[str, Any]) -> None:
        up_to = frame.get("up_to")
        if not isinstance(up_to, str) or not MESSAGE_ID.fullmatch(up_to):
            self.send(_error("bad_request", "read needs up_to, a message id"))
            return
        await self.store.redis.hset(self.keys.webchat_visitor(self.visitor), "visitor_read", up_to)
        conversation = await signals.open_conversation(self.store, self.tenant.id, self.visitor)
        signal = signals.VisitorSignal(
            type="read", visitor=self.visitor, conversation=conversation, at=events.now_ms(), up_to=up_to
        )
        await signals.from_visitor(self.store, self.tenant.id, signal)

    async def _links(self, _frame: dict[str, Any]) -> None:
        """The history's files with links signed anew: a tab open longer than a link lives."""
        now = asyncio.get_running_loop().time()
        if now - self._links_at < LINKS_EVERY_S:
            return
        self._links_at = now
        history = await transcript.history(self.store, self.tenant.id, self.visitor)
        secret, tenant = self.runtime.secret, self.tenant.id
        items = [files.linked(_item(item), secret, tenant, self.visitor) for item in history if item.files]
        self.send({"type": "links", "items": [{"id": item["id"], "files": item["files"]} for item in items]})


def _item(item: transcript.ChatItem) -> dict[str, Any]:
    return json.loads(transcript.encode(item))
