"""A local server that speaks enough of the Telegram Bot API for tests that drive the
real python-telegram-bot client (pointed at it with base_url / base_file_url):
getMe, getUpdates (long polling with offsets), sendMessage, sendPhoto,
sendDocument, getFile and file downloads, setWebhook and deleteWebhook, with the
Bot API's JSON shapes. It records every call, and answers an error when a test
asks for one.

    async with TelegramApi(TOKEN) as api:
        settings = Settings(telegram_api_base=api.url)
        api.fail("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)  # once
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.channels import fake_server

BOT_ID = 7000000001
BOT_USERNAME = "acme_help_bot"


@dataclass
class Call:
    """One Bot API request as the server got it."""

    method: str
    params: dict[str, Any]  # form fields as strings; uploaded files as bytes
    token: str


@dataclass
class _Failure:
    status: int
    description: str
    retry_after: int | None = None
    delay: float = 0.0  # seconds to wait before answering (a slow Telegram)


@dataclass
class TelegramApi:
    token: str
    url: str = ""
    calls: list[Call] = field(default_factory=list)
    webhook: dict[str, Any] = field(default_factory=dict)  # url, secret_token, allowed_updates
    downloads: list[str] = field(default_factory=list)  # file paths fetched
    _updates: list[dict[str, Any]] = field(default_factory=list)
    _files: dict[str, tuple[str, str, bytes]] = field(default_factory=dict)  # file_id -> (unique, path, data)
    _failures: dict[str, list[_Failure]] = field(default_factory=dict)
    _update_ids: itertools.count = field(default_factory=lambda: itertools.count(800_000_001))
    _message_ids: itertools.count = field(default_factory=lambda: itertools.count(1001))
    _new_update: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    # --- what tests do ---

    def fail(
        self, method: str, status: int, description: str, *, retry_after: int | None = None, after: int = 0
    ) -> None:
        """The next call of `method` (or the one after `after` more successes) gets this
        error, once; later calls succeed again."""
        queue = self._failures.setdefault(method, [])
        queue.extend(_Failure(200, "") for _ in range(after))
        queue.append(_Failure(status, description, retry_after))

    def stall(self, method: str, seconds: float) -> None:
        """The next call of `method` is answered only after `seconds` (a client times out first)."""
        self._failures.setdefault(method, []).append(_Failure(200, "", delay=seconds))

    def add_file(self, data: bytes, path: str) -> tuple[str, str]:
        """A file Telegram holds; returns its (file_id, file_unique_id)."""
        unique = "AQAD" + hashlib.sha256(data).hexdigest()[:12]
        file_id = "AgACAgIAAxkBAAI" + hashlib.sha256(path.encode() + data).hexdigest()[:40]
        self._files[file_id] = (unique, path, data)
        return file_id, unique

    def push(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update for getUpdates (an update_id is given when it has none)."""
        update = {"update_id": next(self._update_ids), **update}
        self._updates.append(update)
        self._new_update.set()
        return update

    def pending(self) -> list[int]:
        """update_ids Telegram still keeps (not yet confirmed by an offset past them)."""
        return [u["update_id"] for u in self._updates]

    def sent(self, method: str = "") -> list[Call]:
        sending = {"sendMessage", "sendPhoto", "sendDocument"}
        return [c for c in self.calls if (c.method == method if method else c.method in sending)]

    # --- the server ---

    async def __aenter__(self) -> TelegramApi:
        app = web.Application(client_max_size=60 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._method)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        self._runner, self.url = await fake_server.start(app)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def bot_user(self) -> dict[str, Any]:
        return {"id": BOT_ID, "is_bot": True, "first_name": "Acme Help", "username": BOT_USERNAME}

    async def _method(self, request: web.Request) -> web.Response:
        token, method = request.match_info["token"], request.match_info["method"]
        params: dict[str, Any] = {}
        for name, value in (await request.post()).items():
            params[name] = value if isinstance(value, str) else value.file.read()
        self.calls.append(Call(method, params, token))
        if token != self.token:
            return _error(401, "Unauthorized")
        failures = self._failures.get(method)
        if failures:
            failure = failures.pop(0)
            if failure.delay:
                await asyncio.sleep(failure.delay)
            if failure.status != 200:
                extra = {"parameters": {"retry_after": failure.retry_after}} if failure.retry_after else {}
                return _error(failure.status, failure.description, **extra)
        handler = getattr(self, f"_{method}", None)
        if handler is None:
            return _error(404, "Not Found: method not found")
        return await handler(params)

    async def _getMe(self, params: dict[str, Any]) -> web.Response:
        return _ok(self.bot_user())

    async def _getUpdates(self, params: dict[str, Any]) -> web.Response:
        if self.webhook.get("url"):
            return _error(409, "Conflict: can't use getUpdates method while webhook is active")
        offset = int(params.get("offset") or 0)
        if offset:  # an offset confirms every update before it: Telegram forgets them
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        if not self._updates and float(params.get("timeout") or 0) > 0:
            self._new_update.clear()
            try:
                await asyncio.wait_for(self._new_update.wait(), float(params["timeout"]))
            except TimeoutError:
                pass
        limit = int(params.get("limit") or 100)
        return _ok(self._updates[:limit])

    async def _sendMessage(self, params: dict[str, Any]) -> web.Response:
        return _ok({**self._message(params), "text": params.get("text", "")})

    async def _sendPhoto(self, params: dict[str, Any]) -> web.Response:
        photo = params.get("photo", b"")
        data = photo if isinstance(photo, bytes) else photo.encode()
        file_id, unique = self.add_file(data, f"photos/file_{len(self._files)}.jpg")
        sizes = [{"file_id": file_id, "file_unique_id": unique, "width": 800, "height": 600, "file_size": len(data)}]
        result = {**self._message(params), "photo": sizes}
        if params.get("caption"):
            result["caption"] = params["caption"]
        return _ok(result)

    async def _sendDocument(self, params: dict[str, Any]) -> web.Response:
        document = params.get("document", b"")
        data = document if isinstance(document, bytes) else document.encode()
        file_id, unique = self.add_file(data, f"documents/file_{len(self._files)}")
        result = {**self._message(params), "document": {"file_id": file_id, "file_unique_id": unique}}
        if params.get("caption"):
            result["caption"] = params["caption"]
        return _ok(result)

    async def _getFile(self, params: dict[str, Any]) -> web.Response:
        found = self._files.get(params.get("file_id", ""))
        if found is None:
            return _error(400, "Bad Request: invalid file_id")
        unique, path, data = found
        return _ok({"file_id": params["file_id"], "file_unique_id": unique, "file_size": len(data), "file_path": path})

    async def _answerCallbackQuery(self, params: dict[str, Any]) -> web.Response:
        return _ok(True)

    async def _editMessageReplyMarkup(self, params: dict[str, Any]) -> web.Response:
        return _ok({**self._message(params), "message_id": int(params["message_id"])})

    async def _setWebhook(self, params: dict[str, Any]) -> web.Response:
        self.webhook = dict(params)
        return _ok(True, description="Webhook was set")

    async def _deleteWebhook(self, params: dict[str, Any]) -> web.Response:
        self.webhook = {}
        return _ok(True, description="Webhook was deleted")

    async def _download(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.Response(status=401, text="Unauthorized")
        for _unique, path, data in self._files.values():
            if path == request.match_info["path"]:
                self.downloads.append(path)
                return web.Response(body=data, content_type="application/octet-stream")
        return web.Response(status=404, text="Not Found")

    def _message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        return {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private", "first_name": "Customer"},
            "from": self.bot_user(),
        }


def _ok(result: Any, **extra: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result, **extra})


def _error(status: int, description: str, **extra: Any) -> web.Response:
    return web.json_response({"ok": False, "error_code": status, "description": description, **extra}, status=status)


# --- updates as Telegram sends them ---


def user(user_id: int = 4242, **fields: Any) -> dict[str, Any]:
    return {
        "id": user_id,
        "is_bot": False,
        "first_name": "Jane",
        "last_name": "Doe",
        "username": "janed",
        "language_code": "en",
        **fields,
    }


def message(chat_id: int = 4242, message_id: int = 17, **content: Any) -> dict[str, Any]:
    """A private chat's message: pass text=..., photo=[...], document={...}, voice={...}, contact={...}."""
    return {
        "message": {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private", "first_name": "Jane", "last_name": "Doe", "username": "janed"},
            "from": user(chat_id),
            **content,
        }
    }


def callback_query(data: str, chat_id: int = 4242, message_id: int = 99, query_id: str = "q1") -> dict[str, Any]:
    """A tap on an inline keyboard's button of a message the bot sent to a private chat."""
    return {
        "callback_query": {
            "id": query_id,
            "from": user(chat_id),
            "chat_instance": "ci-1",
            "data": data,
            "message": {
                "message_id": message_id,
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private", "first_name": "Jane"},
                "from": {"id": BOT_ID, "is_bot": True, "first_name": "Acme Help", "username": BOT_USERNAME},
                "text": "How did we do?",
            },
        }
    }


def photo_sizes(api: TelegramApi, data: bytes) -> list[dict[str, Any]]:
    """A photo as Telegram sends it: several sizes, smallest first; only the largest holds `data`."""
    sizes = []
    for width, height, payload in ((90, 67, b"thumb" + data[:10]), (320, 240, b"small" + data[:10]), (1280, 960, data)):
        file_id, unique = api.add_file(payload, f"photos/file_{width}.jpg")
        sizes.append(
            {"file_id": file_id, "file_unique_id": unique, "width": width, "height": height, "file_size": len(payload)}
        )
    return sizes
