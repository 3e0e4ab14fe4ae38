"""Fixtures every test folder can use: a real redis-server and deployment files.

Integration tests run against a redis-server the tests start themselves on a
free port. Without one installed they are skipped with the reason; CI sets
CI=true, and there a missing redis-server is a failure, never a silent skip.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis

from ops.postgres_server import PostgresMissing, PostgresServer, answering
from ops.redis_cluster import RedisClusterNodes
from ops.redis_server import RedisServer, RedisServerMissing
from router.settings import Settings
from router.store import Store, connect
from tests.processes import running_up

INTEGRATION_DIR = Path(__file__).parent / "integration"
BROWSER_DIR = Path(__file__).parent / "browser"
REAL_REDIS_FIXTURES = {"redis_server", "redis_url", "real_store", "redis_cluster"}
POSTGRES_FIXTURES = {"postgres_server", "database_url", "archive_url"}  # a real PostgreSQL: integration too
# Without server binaries, a PostgreSQL already running here (trust auth) serves the tests.
LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
PRODUCT_PROCESS_FIXTURES = {"up"}  # a running `contactrouter up`


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/integration, or using the real redis-server, is an integration
    test; everything under tests/browser a browser test; a test using `contactrouter up` an
    end-to-end test (other e2e tests carry the mark in their module)."""
    for item in items:
        folders = Path(str(item.path)).parents
        if INTEGRATION_DIR in folders or (REAL_REDIS_FIXTURES | POSTGRES_FIXTURES) & set(item.fixturenames):
            item.add_marker(pytest.mark.integration)
        if BROWSER_DIR in folders:
            item.add_marker(pytest.mark.browser)
        if PRODUCT_PROCESS_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole session, on a free loopback port."""
    try:
        server = RedisServer()
    except RedisServerMissing as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {exc}: integration tests must run in CI", pytrace=False)
        pytest.skip(f"integration test needs a real Redis: {exc}")
    with server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterNodes]:
    """A 3-primary Redis Cluster for the whole session, on free loopback ports."""
    try:
        cluster = RedisClusterNodes(primaries=3)
    except RedisServerMissing as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {exc}: cluster tests must run in CI", pytrace=False)
        pytest.skip(f"cluster test needs redis-server and redis-cli: {exc}")
    with cluster:
        yield cluster


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL for the whole session: its own server on a free loopback port, from the
    installed server binaries; else one already answering on 127.0.0.1:5432. Yields the
    URL of its maintenance database."""
    try:
        server = PostgresServer()
    except PostgresMissing as exc:
        if answering(LOCAL_POSTGRES):
            yield LOCAL_POSTGRES
            return
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {exc}: archive tests must run in CI", pytrace=False)
        pytest.skip(f"archive test needs PostgreSQL: {exc}")
    with server:
        yield server.url


@pytest.fixture
def database_url(postgres_server: str) -> Iterator[str]:
    """A database of the test's own, created empty and dropped after."""
    import psycopg

    name = f"cr_test_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_server.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def archive_url(database_url: str) -> str:
    """A database of the test's own with the archive's schema (`contactrouter db upgrade`)."""
    from router.records import migrate

    migrate.upgrade(database_url)
    return database_url


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The server's URL, on an empty database: each test starts from nothing."""
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
        yield redis_server.url
    finally:
        client.close()


@pytest.fixture
async def real_store(redis_url: str) -> AsyncIterator[Store]:
    """The routing store on the real redis-server, as a worker process would open it."""
    store = connect(Settings(redis_url=redis_url, consumer="test"))
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    """Write a deployment TOML into the test's tmp_path; returns its path."""
    counter = iter(range(1_000_000))

    def write(text: str, name: str = "") -> Path:
        path = tmp_path / (name or f"deployment-{next(counter)}.toml")
        path.write_text(text, "utf-8")
        return path

    return write


@pytest.fixture
def up() -> Iterator[tuple[str, int]]:
    """A running `contactrouter up`: (its embedded store's URL, its web port)."""
    with running_up() as running:
        yield running
