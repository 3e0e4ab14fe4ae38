"""Start a throwaway PostgreSQL on a free loopback port (tests, benchmarks), from the
server binaries Debian's postgresql package installs (/usr/lib/postgresql/N/bin).

PostgreSQL refuses to run as root; as root (CI, containers) the server runs as the
`postgres` user the package creates, in a temporary folder that user owns.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from ops.redis_server import free_port


class PostgresMissing(RuntimeError):
    """No PostgreSQL server binaries installed."""


def binaries() -> Path | None:
    """The newest installed server's bin folder, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresServer:
    """A postgres child process with its own data folder; use as a context manager."""

    def __init__(self, *, port: int | None = None) -> None:
        bin_dir = binaries()
        if bin_dir is None:
            raise PostgresMissing("PostgreSQL is not installed (Debian: apt-get install postgresql)")
        self.bin = bin_dir
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="cr-postgres-"))
        self.data = self.dir / "data"
        self._user: dict[str, object] = {}
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresMissing("running as root and there is no postgres user to run the server as") from None
            os.chown(self.dir, account.pw_uid, account.pw_gid)
            self._user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The maintenance database's URL (create a database of your own in it)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **self._user)

    def start(self) -> PostgresServer:
        """Start the server (again, after halt(): on the same port, with its data)."""
        if not self.data.exists():
            self._run(
                str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync",
            )  # fmt: skip
        log = (self.dir / "postgres.log").open("ab")
        self.process = subprocess.Popen(
            [
                str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
                # a throwaway server: durability is not what is tested, speed is welcome
                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                "-c", "shared_buffers=32MB", "-c", "max_connections=100",
            ],
            stdout=log, stderr=subprocess.STDOUT, **self._user,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if _answers(self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"postgres did not start on port {self.port}; see {self.dir / 'postgres.log'}")

    def halt(self) -> None:
        """Stop the server, keeping its data (start() brings it back). A "fast" shutdown
        (SIGINT): open connections are cut, as a restarting database cuts them."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _answers(port: int) -> bool:
    """Whether a PostgreSQL accepts connections (a startup packet gets an answer)."""
    try:
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=1):
            return True
    except Exception:
        return False


def answering(url: str) -> bool:
    """Whether the server at `url` accepts our connection."""
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=2):
            return True
    except Exception:
        return False
