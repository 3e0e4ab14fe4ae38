"""The worker processes of a fault drill, started as the Procfile starts them
(`contactrouter run <role>`), killed on purpose, and restarted like a process manager would.

Each start gets a fresh consumer name (`routing-1.g2`), as a restarted process
on another host or pid would; the dead one's pending entries are taken over by
the group after CONTACTROUTER_CLAIM_IDLE_MS.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).with_name("contactrouter")  # the console script of this interpreter's venv


@dataclass
class Slot:
    """One line of the formation (`routing-2`) and the process currently filling it."""

    name: str
    role: str
    generation: int = 0
    process: subprocess.Popen | None = None
    killed: bool = False  # the drill killed it on purpose: its exit is expected
    exits: list[str] = field(default_factory=list)  # exits nobody asked for, with the log's tail

    @property
    def consumer(self) -> str:
        return f"{self.name}.g{self.generation}"


class Supervisor:
    """Starts, kills and restarts the drill's workers; remembers every exit it did not cause."""

    def __init__(self, redis_url: str, config: Path, logdir: Path, env: dict[str, str]) -> None:
        self.redis_url = redis_url
        self.config = config
        self.logdir = logdir
        self.env = env
        self.slots: dict[str, Slot] = {}

    def add(self, role: str, count: int) -> None:
        for i in range(1, count + 1):
            slot = Slot(f"{role}-{i}", role)
            self.slots[slot.name] = slot
            self._spawn(slot)

    def _spawn(self, slot: Slot) -> None:
        slot.generation += 1
        slot.killed = False
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("CONTACTROUTER_", "REDIS_"))}
        environ.update(self.env)
        environ.update(
            # The connection's name shows in CLIENT LIST: the drill sees which worker is up.
            REDIS_URL=f"{self.redis_url}?client_name={slot.consumer}",
            CONTACTROUTER_CONFIG=str(self.config),
            CONTACTROUTER_CONSUMER=slot.consumer,
            PYTHONUNBUFFERED="1",
        )
        with (self.logdir / f"{slot.name}.log").open("ab") as out:
            out.write(f"--- start {slot.consumer} at {time.strftime('%H:%M:%S')}\n".encode())
            out.flush()
            slot.process = subprocess.Popen(
                [str(CLI), "run", slot.role], cwd=ROOT, env=environ, stdout=out, stderr=subprocess.STDOUT
            )

    def kill(self, name: str) -> bool:
        """SIGKILL, as a crash or the OOM killer would: no cleanup, no acknowledgements.
        False if the slot's process was not running (killed before and not started yet)."""
        slot = self.slots[name]
        if slot.process is None or slot.process.poll() is not None:
            return False
        slot.killed = True
        slot.process.send_signal(signal.SIGKILL)
        slot.process.wait(timeout=10)
        return True

    def restart(self, name: str) -> None:
        self._spawn(self.slots[name])

    def down(self) -> list[str]:
        """Slots whose process has exited. An exit the drill did not cause is recorded."""
        found = []
        for slot in self.slots.values():
            if slot.process is None or slot.process.poll() is None:
                continue
            if not slot.killed:
                slot.killed = True  # recorded once
                tail = self.log_tail(slot.name)
                slot.exits.append(f"{slot.consumer} exited with {slot.process.returncode}:\n{tail}")
                log.warning("worker %s exited on its own (%s)", slot.consumer, slot.process.returncode)
            found.append(slot.name)
        return found

    def unexpected_exits(self) -> list[str]:
        return [exit for slot in self.slots.values() for exit in slot.exits]

    def consumers(self) -> dict[str, str]:
        """Live consumer name -> role."""
        return {s.consumer: s.role for s in self.slots.values() if s.process and s.process.poll() is None}

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.logdir / f"{name}.log"
        return path.read_text("utf-8", errors="replace")[-chars:] if path.exists() else ""

    def error_lines(self) -> dict[str, list[str]]:
        """ERROR lines and tracebacks each worker logged (a restarted Redis makes some; read them)."""
        found = {}
        for name in self.slots:
            lines = [
                line for line in self.log_tail(name, 10**7).splitlines() if " ERROR " in line or "Traceback" in line
            ]
            if lines:
                found[name] = lines
        return found

    def stop_all(self) -> None:
        for slot in self.slots.values():
            if slot.process is not None and slot.process.poll() is None:
                slot.killed = True
                slot.process.terminate()
        deadline = time.monotonic() + 10
        for slot in self.slots.values():
            if slot.process is None:
                continue
            try:
                slot.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                slot.process.kill()
                slot.process.wait()
