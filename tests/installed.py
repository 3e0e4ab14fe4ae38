"""Checks an installed copy of the product (a wheel in a fresh virtual environment) renders
what it serves from its own files, not the checkout's: CI runs it, and so does
tests/test_wheel.py. Run it with the installed copy's Python, isolated (-I), from outside
the checkout, given the checkout's templates/ folder to compare with:

    venv/bin/python -I tests/installed.py path/to/checkout/templates

Only the standard library and the installed product are used. Exits 1 naming what failed.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

# What `contactrouter up` must answer with, without a login: (path, a piece of the body).
# (The inbox's scripts are served only behind the login; check_templates finds them shipped.)
PAGES = [
    ("/inbox/login", '<form method="post" action="/inbox/login"'),
    ("/inbox/login", 'name="password" type="password"'),
    ("/inbox/static/inbox.css", "body {"),
    ("/webchat/acme/widget.js", '"tenant": "acme"'),
    ("/webchat/acme/demo", "/webchat/acme/widget.js"),
]


def files_under(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()}


def check_templates(checkout_templates: Path) -> list[str]:
    """The package's templates are its own copy, complete, and our page templates compile."""
    from router import templating

    installed = templating.folder().resolve()
    problems = []
    if Path(sys.prefix).resolve() not in installed.parents:
        problems.append(f"templates read from {installed}, outside the installed copy ({sys.prefix})")
    missing = files_under(checkout_templates) - files_under(installed)
    if missing:
        problems.append(f"the wheel lacks {len(missing)} files of templates/: {', '.join(sorted(missing)[:10])}")
    for name in templating.pages().list_templates(extensions=["html", "js", "txt"]):
        if name.startswith(("inbox/canned/", "campaigns/", "inbox/vendor/")):
            continue  # users' templates, rendered sandboxed with their own fields; packages from npm
        try:
            templating.pages().get_template(name)
        except Exception as exc:
            problems.append(f"{name} does not compile: {exc}")
    return problems


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def check_pages(timeout_s: float = 60) -> list[str]:
    """`contactrouter up` (this environment's console script) serves the login page and the assets pages load."""
    command = [str(Path(sys.executable).parent / "contactrouter"), "up"]
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CONTACTROUTER_CONFIG", "TEMPLATES_DIR")}
    env["PORT"] = str(free_port())
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    inbox: list[str] = []  # the base URL of the inbox address on the banner, once printed
    printed = threading.Event()

    def read_console() -> None:  # to the end, so a full pipe never stalls it
        for line in process.stdout:
            lines.append(line)
            match = re.search(r"inbox:\s+(http://\S+)/inbox", line)
            if match and not printed.is_set():
                inbox.append(match.group(1))
                printed.set()

    threading.Thread(target=read_console, daemon=True).start()
    deadline = time.monotonic() + timeout_s
    try:
        while not printed.wait(0.2):
            if process.poll() is not None or time.monotonic() > deadline:
                return ["contactrouter up printed no inbox address:\n" + "".join(lines[-40:])]
        return [problem for path, piece in PAGES if (problem := _page_problem(inbox[0] + path, piece, deadline))]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _page_problem(url: str, piece: str, deadline: float) -> str:
    """What is wrong with url's answer ("" when it is a 200, not redirected, whose body holds
    piece), retrying until the deadline while the web role starts listening."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body, final = response.read().decode("utf-8", errors="replace"), response.geturl()
            if final != url:
                return f"{url} redirected to {final}"
            return "" if piece in body else f"{url} answered without {piece!r}"
        except urllib.error.HTTPError as exc:  # it answered: no use asking again
            return f"{url}: {exc}"
        except OSError as exc:  # not listening yet
            if time.monotonic() > deadline:
                return f"{url}: {exc}"
            time.sleep(0.2)


def check_catalogues() -> list[str]:
    """The wheel carries every translation compiled (.mo), and a page renders in Chinese from it."""
    from router import i18n, templating

    installed = i18n.folder().resolve()
    problems = []
    if Path(sys.prefix).resolve() not in installed.parents:
        problems.append(f"catalogues read from {installed}, outside the installed copy ({sys.prefix})")
    for po in installed.glob("*/LC_MESSAGES/messages.po"):
        if not po.with_suffix(".mo").is_file():
            problems.append(f"the wheel lacks the compiled {po.with_suffix('.mo').relative_to(installed)}")
    if "zh_Hant" not in i18n.locales():
        problems.append(f"the wheel has catalogues for {i18n.locales()} only")
    elif "登入" not in templating.pages("zh_Hant").get_template("inbox/login.html").render(
        user=None, csrf="", done="", now_ms=0, request_path="/inbox/login", login_csrf="", next_path="", languages=[]
    ):
        problems.append("the login page does not render in Traditional Chinese from the installed catalogue")
    return problems


def check_migrations() -> list[str]:
    """The archive's schema versions ship with the package (`contactrouter db upgrade` reads them there)."""
    from router.records import migrate

    try:
        shipped = migrate.migrations()
    except Exception as exc:
        return [f"the archive's migrations do not load: {exc}"]
    return [] if shipped else ["the wheel lacks router/records/migrations/*.sql"]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    problems = check_templates(Path(argv[1]).resolve()) + check_catalogues() + check_migrations() + check_pages()
    for problem in problems:
        print(f"installed copy: {problem}", file=sys.stderr)
    if not problems:
        print(f"installed copy: templates shipped and {len(PAGES)} pages served from {sys.prefix}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
