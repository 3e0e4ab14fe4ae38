"""Campaign templates rendered in a child process that no template can hold or swell.

The sandbox in router.campaigns.render bounds what it can see (loops, repetitions,
widths), but a template is a program written by a non-engineer: a macro that calls itself
twice per level, or `~` doubling a string inside a `{% set %}`, still runs for seconds or
builds hundreds of MB. So every render that a process does on a live path (the campaigns
worker, the web process's campaign page, a voice campaign call being answered) goes to a
child process with an address-space limit (MEMORY_BYTES, set with setrlimit: a
MemoryError there is a template problem) and a wall-clock limit per request (TIMEOUT_S:
the child is killed and a fresh one started). The caller gets a TemplateProblem naming the
template, as for any other template error, and its event loop never runs a template.

One child serves one process's renders, one at a time, and keeps the campaigns it has
compiled (by a digest of the campaign's definition), so a render is one round trip of a
few hundred bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import multiprocessing
import resource
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

import msgspec

from router.campaigns.model import (
    Campaign,
    Recipient,
    decode_campaign,
    decode_recipient,
    encode_campaign,
    encode_recipient,
)
from router.campaigns.render import MACHINE, Rendered, Renderer, TemplateProblem, sample_extra

log = logging.getLogger(__name__)

TIMEOUT_S = 2.0  # a real template renders in well under a millisecond
MEMORY_BYTES = 256 * 1024 * 1024  # the child's whole address space (it starts at about 32 MB)
KEPT_CAMPAIGNS = 64  # compiled campaigns the child keeps


Preview = tuple[Recipient, str, Rendered | str]  # recipient, channel (or MACHINE), message or error


class _Request(msgspec.Struct, array_like=True):
    op: str  # "render" | "machine" | "script"
    digest: str
    definition: bytes | None  # the campaign, when the child may not have it yet
    channel: str
    recipient: bytes
    extra: dict[str, str]


class _Answer(msgspec.Struct, array_like=True):
    ok: bool
    body: str = ""
    subject: str = ""
    problem: str = ""
    missing: bool = False  # the child did not know the campaign: send it again with it


def _serve(conn: Connection, memory_bytes: int) -> None:  # pragma: no cover - runs in the child
    """The child: render what it is asked, forever (until killed or the pipe closes)."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    renderers: OrderedDict[str, Renderer] = OrderedDict()
    while True:
        try:
            request = msgspec.msgpack.decode(conn.recv_bytes(), type=_Request)
        except EOFError:
            return
        conn.send_bytes(msgspec.msgpack.encode(_answer(request, renderers)))


def _answer(request: _Request, renderers: OrderedDict[str, Renderer]) -> _Answer:  # pragma: no cover - child
    try:
        renderer = renderers.get(request.digest)
        if renderer is None:
            if request.definition is None:
                return _Answer(ok=False, missing=True)
            renderer = Renderer(decode_campaign(request.definition))
            renderers[request.digest] = renderer
            while len(renderers) > KEPT_CAMPAIGNS:
                renderers.popitem(last=False)
        renderers.move_to_end(request.digest)
        recipient = decode_recipient(request.recipient)
        if request.op == "machine":
            return _Answer(ok=True, body=renderer.render_machine(recipient))
        if request.op == "script":
            return _Answer(ok=True, body=renderer.render_script(recipient))
        rendered = renderer.render(request.channel, recipient, request.extra)
        return _Answer(ok=True, body=rendered.body, subject=rendered.subject)
    except TemplateProblem as exc:
        return _Answer(ok=False, problem=str(exc))
    except MemoryError:
        return _Answer(ok=False, problem="the template needs more memory than a message may use; rendering stopped")
    except RecursionError:
        return _Answer(ok=False, problem="the template calls itself too deeply; rendering stopped")


class IsolatedRenderer:
    """Renders campaign messages in a bounded child process (started on first use)."""

    def __init__(self, *, timeout_s: float = TIMEOUT_S, memory_bytes: int = MEMORY_BYTES) -> None:
        self.timeout_s = timeout_s
        self.memory_bytes = memory_bytes
        self._context = multiprocessing.get_context("spawn")  # nothing of the parent's state or threads
        self._process: Any = None
        self._conn: Connection | None = None
        self._known: set[str] = set()  # digests the child has compiled
        self._lock = asyncio.Lock()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="campaign-render")
        self._definitions: dict[int, tuple[Campaign, str, bytes]] = {}  # id(campaign) -> digest, definition

    async def render(
        self, campaign: Campaign, channel: str, recipient: Recipient, extra: dict[str, str] | None = None
    ) -> Rendered:
        """The message for a recipient on a channel; TemplateProblem names the template line,
        or says the template ran out of time or memory."""
        answer = await self._ask(campaign, "render", channel, recipient, extra or {})
        return Rendered(body=answer.body, subject=answer.subject)

    async def render_machine(self, campaign: Campaign, recipient: Recipient) -> str:
        """A voice campaign's answering-machine message for a recipient ("" for none)."""
        if "voice" not in campaign.channels or not campaign.voice.machine_message:
            return ""
        return (await self._ask(campaign, "machine", "voice", recipient, {})).body

    async def render_script(self, campaign: Campaign, recipient: Recipient) -> str:
        """The script an agent reads as the recipient's call connects ("" for none)."""
        if not campaign.voice.script:
            return ""
        return (await self._ask(campaign, "script", "voice", recipient, {})).body

    async def preview(self, campaign: Campaign, recipients: list[Recipient]) -> list[Preview]:
        """The message each recipient would get on the campaign's channel (or the error it hits);
        a voice campaign's answering-machine message follows as its own row (channel MACHINE)."""
        rows: list[Preview] = []
        channel = campaign.channel
        for recipient in recipients:
            try:
                rendered = await self.render(campaign, channel, recipient, sample_extra(channel))
                rows.append((recipient, channel, rendered))
            except TemplateProblem as exc:
                rows.append((recipient, channel, str(exc)))
            if channel == "voice" and campaign.voice.machine_message:
                try:
                    rows.append((recipient, MACHINE, Rendered(body=await self.render_machine(campaign, recipient))))
                except TemplateProblem as exc:
                    rows.append((recipient, MACHINE, str(exc)))
        return rows

    async def problems(self, campaign: Campaign, recipients: list[Recipient]) -> list[str]:
        """What the campaign's templates hit for these recipients on every channel they may get
        (fallback and answering-machine message included), as "line N: error"; [] when all render."""
        found: list[str] = []
        for recipient in recipients:
            try:
                for channel in campaign.channels:
                    await self.render(campaign, channel, recipient, sample_extra(channel))
                await self.render_machine(campaign, recipient)
            except TemplateProblem as exc:
                found.append(f"line {recipient.line}: {exc}")
        return found

    def close(self) -> None:
        self._stop()
        self._thread.shutdown(wait=False)

    def _definition(self, campaign: Campaign) -> tuple[str, bytes]:
        kept = self._definitions.get(id(campaign))
        if kept is None or kept[0] is not campaign:  # the id of a campaign since freed may be reused
            definition = encode_campaign(campaign)
            kept = (campaign, hashlib.blake2b(definition, digest_size=16).hexdigest(), definition)
            if len(self._definitions) >= KEPT_CAMPAIGNS:
                self._definitions.clear()
            self._definitions[id(campaign)] = kept
        return kept[1], kept[2]

    async def _ask(
        self, campaign: Campaign, op: str, channel: str, recipient: Recipient, extra: dict[str, str]
    ) -> _Answer:
        digest, definition = self._definition(campaign)
        async with self._lock:
            loop = asyncio.get_running_loop()
            for _ in range(2):  # a second time with the definition, if the child had dropped it
                sent = None if digest in self._known else definition
                request = _Request(op, digest, sent, channel, encode_recipient(recipient), extra)
                answer = await loop.run_in_executor(self._thread, self._round_trip, request, campaign.id)
                if not answer.missing:
                    break
                self._known.discard(digest)
            self._known.add(digest)
        if not answer.ok:
            raise TemplateProblem(answer.problem or f"campaign {campaign.id}: the template could not be rendered")
        return answer

    def _round_trip(self, request: _Request, campaign: str) -> _Answer:
        """In the helper thread: one request to the child, within the time limit."""
        conn = self._start()
        try:
            conn.send_bytes(msgspec.msgpack.encode(request))
            if conn.poll(self.timeout_s):
                return msgspec.msgpack.decode(conn.recv_bytes(), type=_Answer)
            reason = f"took longer than {self.timeout_s:g} s"
        except (EOFError, OSError):
            reason = "used more than the memory a message may use"  # the kernel or the limit ended the child
        log.warning("campaign %s: a template %s; its renderer was stopped and a new one started", campaign, reason)
        self._stop()
        return _Answer(ok=False, problem=f"campaign {campaign}: the template {reason}; rendering stopped")

    def _start(self) -> Connection:
        if self._conn is not None and self._process is not None and self._process.is_alive():
            return self._conn
        self._stop()
        parent, child = self._context.Pipe()
        process = self._context.Process(target=_serve, args=(child, self.memory_bytes), daemon=True)
        process.start()
        child.close()
        self._process, self._conn, self._known = process, parent, set()
        return parent

    def _stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join(5)
        if self._conn is not None:
            self._conn.close()
        self._process, self._conn, self._known = None, None, set()


_shared: IsolatedRenderer | None = None


def shared() -> IsolatedRenderer:
    """This process's renderer (one child per process, started on first use)."""
    global _shared
    if _shared is None:
        _shared = IsolatedRenderer()
    return _shared
