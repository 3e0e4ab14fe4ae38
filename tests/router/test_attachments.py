"""The attachment store (router.attachments): files named by their content, written whole."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from router.attachments import TEMPORARY_PREFIX, AttachmentStore
from router.settings import Settings
from tests.channels.test_email_inbound import TENANTS
from tests.factories import world
from workers import smtp


def abandoned(store: AttachmentStore, age_s: float, name: str = "x") -> Path:
    """A temporary file as a process killed mid-write leaves it, last written `age_s` ago."""
    folder = store.root / "ab"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{TEMPORARY_PREFIX}{name}"
    path.write_bytes(b"half a file")
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_a_sweep_removes_abandoned_temporary_files_and_nothing_else(tmp_path: Path) -> None:
    store = AttachmentStore(tmp_path)
    kept = store.path(store.put_sync(b"a stored file"))
    old = abandoned(store, 2 * 3600, "old")
    writing = abandoned(store, 5, "writing")  # another process may be writing it now
    assert store.sweep() == 1
    assert not old.exists() and writing.exists() and kept.read_bytes() == b"a stored file"


def test_a_sweep_of_a_store_not_yet_made_finds_nothing(tmp_path: Path) -> None:
    assert AttachmentStore(tmp_path / "none").sweep() == 0


async def test_the_smtp_process_sweeps_the_store_when_it_starts(tmp_path: Path) -> None:
    the_world = await world(TENANTS)
    settings = Settings(smtp_port=0, attachment_dir=str(tmp_path))
    old = abandoned(AttachmentStore(tmp_path), 2 * 3600)
    stop = asyncio.Event()
    process = asyncio.create_task(smtp.run(the_world.store, the_world.deployment, settings, stop))
    try:
        for _ in range(100):
            if not old.exists():
                break
            await asyncio.sleep(0.05)
        assert not old.exists()
    finally:
        stop.set()
        await process
        await the_world.store.close()
