"""A real browser for page tests: Debian's chromium, driven by Playwright.

Nothing here downloads a browser: Playwright launches /usr/bin/chromium (or
$CHROMIUM). Without it the tests skip with the reason, except in CI, where a
missing browser is a failure. Screenshots go to the run's artefacts folder
($TEST_ARTIFACTS, default .artifacts/ in the checkout).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

# The network here is closed: without these, chromium keeps trying to reach Google's hosts.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and no chromium at {path}: browser tests must run in CI", pytrace=False)
        pytest.skip(f"browser test needs Debian's chromium (apt-get install chromium); none at {path}")
    return path


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """A fresh headless chromium per test (about a second to start), closed afterwards."""
    executable = chromium_path()
    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            await instance.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots of this run are kept."""
    folder = Path(os.environ.get("TEST_ARTIFACTS") or Path(__file__).parents[2] / ".artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
