"""The attachment store: files on disk named by the SHA-256 of their bytes.

An event references a file as "store:<sha256>", so a message delivered twice, or
the same logo in a thousand signatures, is stored once. A file is written to a
temporary name and renamed into place, so a reader never sees half of one.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from pathlib import Path

from router.errors import ContactRouterError

PREFIX = "store:"
DEFAULT_DIR = Path("var") / "attachments"


class AttachmentTooLarge(ContactRouterError, ValueError):
    """An attachment over the store's size cap; it is not stored."""


class AttachmentStore:
    """Content-addressed files under one directory, each at most max_bytes."""

    def __init__(self, root: str | Path = "", max_bytes: int = 20 * 1024 * 1024) -> None:
        self.root = Path(root) if root else Path.cwd() / DEFAULT_DIR
        self.max_bytes = max_bytes

    def path(self, ref: str) -> Path:
        digest = ref.removeprefix(PREFIX)
        if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise KeyError(ref)
        return self.root / digest[:2] / digest

    def read(self, ref: str) -> bytes:
        return self.path(ref).read_bytes()

    def put_sync(self, data: bytes) -> str:
        """Store bytes; returns their reference. Raises AttachmentTooLarge or OSError."""
        if len(data) > self.max_bytes:
            raise AttachmentTooLarge(f"{len(data)} bytes is over the {self.max_bytes}-byte attachment cap")
        ref = PREFIX + hashlib.sha256(data).hexdigest()
        target = self.path(ref)
        if target.exists():
            # Stored again now: its time says so, and retention leaves a file stored lately (it may be
            # referred to by a message the archive has not written yet).
            os.utime(target)
            return ref
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return ref

    def remove_sync(self, ref: str, *, unless_stored_since: float | None = None) -> bool:
        """Delete a file (unless stored again at or after the given time); whether it went."""
        target = self.path(ref)
        try:
            if unless_stored_since is not None and target.stat().st_mtime >= unless_stored_since:
                return False
            target.unlink()
        except FileNotFoundError:
            return False
        return True

    async def remove(self, ref: str, *, unless_stored_since: float | None = None) -> bool:
        return await asyncio.to_thread(self.remove_sync, ref, unless_stored_since=unless_stored_since)

    async def put(self, data: bytes) -> str:
        """Store bytes off the event loop; returns their reference."""
        return await asyncio.to_thread(self.put_sync, data)
