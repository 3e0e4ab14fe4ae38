"""Versioned schema migrations: `contactrouter db upgrade`.

Each file in migrations/ is one version, NNNN_name.sql, applied in order, each in its
own transaction together with its row in `schema_migrations`; PostgreSQL's DDL is
transactional, so a migration that fails leaves nothing half done. An advisory lock
held for the transaction lets two upgrades started at once (two deploys, two pods)
apply each version once.

Why not a library: Alembic's value is autogenerating changes from SQLAlchemy models,
which this project does not have (it writes SQL); yoyo-migrations would be the one
candidate, but it adds its own four tables, a table-based lock and a statement
splitter (sqlparse) in front of SQL that psycopg sends whole, for what is a loop over
sorted files here. Migrations only go forward: a release that must undo one ships a
new version that does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from router.errors import ContactRouterError

# pg_advisory_xact_lock's key: any fixed number, the same in every process ("cr-mg").
LOCK_KEY = 0x63722D6D67
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class SchemaError(ContactRouterError):
    """The database's schema is not the one this version of the code needs."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """Every migration shipped with the package, in version order."""
    found = []
    for item in resources.files("router.records").joinpath("migrations").iterdir():
        match = _NAME.match(item.name)
        if match:
            found.append(Migration(int(match[1]), match[2], item.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise SchemaError(f"migrations must be numbered 1, 2, 3...; found {versions}")
    return found


def latest() -> int:
    return len(migrations())


def _ensure_table(conn: psycopg.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
    )


def applied(conn: psycopg.Connection) -> list[int]:
    """The versions the database has (none if it has never been upgraded)."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return []
    return [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]


def upgrade(url: str) -> list[str]:
    """Apply every migration the database lacks; returns their names ("0001_records")."""
    done = []
    with psycopg.connect(url, autocommit=True) as conn:
        for migration in migrations():
            with conn.transaction():
                # Under the lock, a second upgrader sees what the first applied.
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
                _ensure_table(conn)
                if conn.execute("SELECT 1 FROM schema_migrations WHERE version = %s", (migration.version,)).fetchone():
                    continue
                conn.execute(migration.sql.encode())  # several statements: sent whole, without parameters
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (migration.version, migration.name)
                )
                done.append(f"{migration.version:04d}_{migration.name}")
    return done


def check(conn: psycopg.Connection) -> None:
    """Refuse a database whose schema is behind (or ahead of) this code: run `contactrouter db upgrade`."""
    check_versions(applied(conn))


def check_versions(have: list[int]) -> None:
    want = latest()
    if not have or max(have) < want:
        raise SchemaError(
            f"the database is at schema version {max(have) if have else 0}, this code needs {want}: "
            "run `contactrouter db upgrade`"
        )
    if max(have) > want:
        raise SchemaError(f"the database is at schema version {max(have)}, newer than this code's {want}")
