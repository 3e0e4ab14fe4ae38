"""`contactrouter db upgrade`: versioned migrations, each applied once, whole or not at all."""

from __future__ import annotations

import threading

import psycopg
import pytest

from router.app import cli
from router.records import migrate


def versions(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return migrate.applied(conn)


def test_upgrade_applies_every_migration_once(database_url: str) -> None:
    assert versions(database_url) == []
    assert migrate.upgrade(database_url) == [f"{m.version:04d}_{m.name}" for m in migrate.migrations()]
    assert migrate.upgrade(database_url) == []
    assert versions(database_url) == list(range(1, migrate.latest() + 1))
    with psycopg.connect(database_url) as conn:
        migrate.check(conn)


def test_the_code_refuses_a_database_behind_its_schema(database_url: str) -> None:
    with psycopg.connect(database_url) as conn, pytest.raises(migrate.SchemaError, match="db upgrade"):
        migrate.check(conn)


def test_two_upgrades_at_once_apply_each_version_once(database_url: str) -> None:
    results: list[list[str]] = []
    threads = [threading.Thread(target=lambda: results.append(migrate.upgrade(database_url))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    applied_by_either = [name for result in results for name in result]
    assert sorted(applied_by_either) == [f"{m.version:04d}_{m.name}" for m in migrate.migrations()]
    assert versions(database_url) == list(range(1, migrate.latest() + 1))


def test_a_failing_migration_leaves_nothing_of_itself(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = migrate.migrations()
    broken = migrate.Migration(len(shipped) + 1, "broken", "CREATE TABLE half_done (id int); SELECT 1 / 0;")
    monkeypatch.setattr(migrate, "migrations", lambda: [*shipped, broken])
    with pytest.raises(psycopg.errors.DivisionByZero):
        migrate.upgrade(database_url)
    assert versions(database_url) == [m.version for m in shipped]
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT to_regclass('half_done')").fetchone() == (None,)


def test_db_upgrade_and_status_from_the_cli(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert cli.main(["db", "status"]) == 0
    assert "missing: 0001_records" in capsys.readouterr().out
    assert cli.main(["db", "upgrade"]) == 0
    assert "applied 0001_records" in capsys.readouterr().out
    assert cli.main(["db", "upgrade"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_db_needs_database_url(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert cli.main(["db", "upgrade"]) == 2
    assert "set DATABASE_URL" in capsys.readouterr().err
