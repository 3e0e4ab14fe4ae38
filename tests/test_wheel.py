"""What is installed is what runs: a wheel built from this checkout, installed in a fresh
virtual environment, checks its configuration and serves its pages from its own files,
outside the checkout (as .ci/run does before the tests)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.e2e  # builds a wheel and installs it with its dependencies: a minute or so

# What a build needs of the checkout: not the development environment, caches or a stale build/.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "*artifacts", "var"
)


def run(command: list[str | Path], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CONTACTROUTER_CONFIG", "TEMPLATES_DIR")}
    env.pop("PYTHONPATH", None)
    done = subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(map(str, command))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.timeout(900)
def test_a_wheel_in_a_fresh_venv_checks_its_config_and_serves_the_login_page(tmp_path: Path) -> None:
    source, venv, dist = tmp_path / "src", tmp_path / "venv", tmp_path / "dist"
    shutil.copytree(ROOT, source, symlinks=True, ignore=NOT_SOURCE)
    run([sys.executable, "-m", "ops.i18n", "compile"], cwd=source)  # as .ci/run: the wheel carries the .mo files
    run([sys.executable, "-m", "venv", venv], cwd=tmp_path)
    run([venv / "bin" / "pip", "wheel", "-q", "--no-deps", "-w", dist, source], cwd=tmp_path)
    [wheel] = dist.glob("contactrouter-*.whl")
    run([venv / "bin" / "pip", "install", "-q", wheel], cwd=tmp_path)

    checked = run([venv / "bin" / "contactrouter", "config", "check"], cwd=tmp_path)
    assert checked.stdout.startswith("ok: "), checked.stdout
    served = run([venv / "bin" / "python", "-I", ROOT / "tests" / "installed.py", ROOT / "templates"], cwd=tmp_path)
    assert "templates shipped" in served.stdout
