"""The attachment store: files on disk named by the SHA-256 of their bytes.

An event references a file as "store:<sha256>", so a message delivered twice, or
the same logo in a thousand signatures, is stored once. A file is written to a
temporary name and renamed into place, so a reader never sees half of one; a
process killed in between leaves the temporary file, which `sweep` removes once it
is older than any write could take (the `smtp` and `imap` processes sweep at start
and every hour).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import time
from pathlib import Path

from router.errors import ContactRouterError

PREFIX = "store:"
DEFAULT_DIR = Path("var") / "attachments"
TEMPORARY_PREFIX = ".incoming-"
STALE_S = 3600  # no write of one file takes this long: an older temporary file was abandoned


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
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=TEMPORARY_PREFIX)
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

    def sweep(self, older_than_s: float = STALE_S) -> int:
        """Remove temporary files abandoned by a process that died mid-write; returns how many."""
        cutoff = time.time() - older_than_s
        removed = 0
        for path in self.root.glob(f"*/{TEMPORARY_PREFIX}*"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:  # another process swept it first
                continue
        return removed
