"""The archive's commands end to end (`contactrouter db backfill`, `customer erase`): on a
real redis-server and PostgreSQL, as an operator runs them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
import pytest

from router.app import cli
from router.settings import Settings
from router.store import connect
from tests.factories import world
from tests.router.test_records_archive import DEPLOYMENT, closed_conversation


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, redis_url: str, archive_url: str, tmp_path: Path) -> None:
    for name in ("LOG_LEVEL", "REDIS_CLUSTER", "CONTACTROUTER_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("DATABASE_URL", archive_url)
    monkeypatch.setenv("ATTACHMENT_DIR", str(tmp_path / "attachments"))


def a_closed_conversation(redis_url: str) -> tuple[str, str]:
    """(conversation, customer) in the demo deployment's tenant acme, never archived."""

    async def make() -> tuple[str, str]:
        w = await world(DEPLOYMENT, store=connect(Settings(redis_url=redis_url)))
        try:
            conversation = await closed_conversation(w, address="+15551230009", body="my old meter")
            return conversation, (await w.conversation(conversation))["customer"]
        finally:
            await w.store.close()

    return asyncio.run(make())


def test_backfill_then_erase_from_the_command_line(
    environment: None, redis_url: str, archive_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    conversation, customer = a_closed_conversation(redis_url)

    assert cli.main(["db", "backfill", "--tenant", "acme"]) == 0
    assert "1 archived now" in capsys.readouterr().out
    with psycopg.connect(archive_url) as conn:
        assert conn.execute("SELECT count(*) FROM conversations WHERE id = %s", (conversation,)).fetchone()[0] == 1

    assert cli.main(["customer", "erase", "--tenant", "acme", customer, "--by", "dpo@acme.example"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"erased {customer}: 1 redis conversations") and "1 conversations" in out
    with psycopg.connect(archive_url) as conn:
        assert conn.execute("SELECT count(*) FROM conversations WHERE id = %s", (conversation,)).fetchone()[0] == 0
        assert conn.execute("SELECT erased_by FROM erasures").fetchall() == [("dpo@acme.example",)]

    assert cli.main(["db", "backfill"]) == 2
    assert "needs --tenant" in capsys.readouterr().err
