"""A throwaway Dovecot IMAP server on a free loopback port, for the IMAP fetching tests.

Debian's dovecot-imapd (.ci/run installs it), started in the foreground with a
configuration of its own in a temporary folder: logins over loopback, in plain text
unless given a certificate (then also implicit TLS on `tls_port`, and STARTTLS on
`port`), Maildir mailboxes, one passwd-file user per mailbox. Dovecot runs mail processes as a non-root user, so the
mail lives in a folder owned by `nobody`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from ops.redis_server import free_port

BINARY = "/usr/sbin/dovecot"
MAIL_USER = "nobody"


class DovecotMissing(RuntimeError):
    """Dovecot cannot run here: not installed, or not run as root."""


CONFIG = """
protocols = imap
listen = 127.0.0.1
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:{dir}/mail/%u
mail_uid = {uid}
mail_gid = {gid}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={dir}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
}}
service anvil {{
  chroot =
}}
"""


class DovecotServer:
    """Dovecot as a child process; use as a context manager. `users` maps login to password."""

    def __init__(self, users: dict[str, str], certificate: tuple[Path, Path] | None = None) -> None:
        if not Path(BINARY).is_file():
            raise DovecotMissing("dovecot is not installed (Debian: apt-get install dovecot-imapd)")
        if os.geteuid() != 0:
            raise DovecotMissing("dovecot must be started as root (it drops to its own users)")
        self.port = free_port()
        self.tls_port = free_port() if certificate else 0
        self.dir = Path(tempfile.mkdtemp(prefix="cr-dovecot-"))
        self.dir.chmod(0o755)  # the mail processes (nobody) reach their mail through it
        account = pwd.getpwnam(MAIL_USER)
        (self.dir / "mail").mkdir()
        os.chown(self.dir / "mail", account.pw_uid, account.pw_gid)
        (self.dir / "users").write_text("".join(f"{login}:{{PLAIN}}{password}\n" for login, password in users.items()))
        self.config = self.dir / "dovecot.conf"
        ssl = f"ssl = yes\nssl_cert = <{certificate[0]}\nssl_key = <{certificate[1]}" if certificate else "ssl = no"
        self.config.write_text(
            CONFIG.format(
                dir=self.dir, port=self.port, tls_port=self.tls_port, ssl=ssl, uid=account.pw_uid, gid=account.pw_gid
            )
        )
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> DovecotServer:
        self.process = subprocess.Popen([BINARY, "-F", "-c", str(self.config)], stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dovecot exited at start: {self.log()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    if sock.recv(64).startswith(b"* OK"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.__exit__(None, None, None)
        raise RuntimeError(f"dovecot did not answer on port {self.port}: {self.log()[-2000:]}")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        try:
            return (self.dir / "dovecot.log").read_text()
        except OSError:
            return "(no log)"
