"""Front-end packages from npm, vendored into the inbox's static files (and the tests').

    python -m ops.vendor            # fetch the pinned versions with npm, write them and the manifests
    python -m ops.vendor --check    # the files on disk are the ones the manifests name (no network)

The pages never load a script from a CDN: each package's built file is copied, with its
licence, into templates/inbox/vendor/ and committed, so a machine with only Python (and
an installed wheel, which carries templates/) serves it. What only the tests use (axe-core,
which the browser tests inject into the pages) goes to tests/browser/vendor/ instead, and
never into the wheel. Re-running needs node's `npm`,
which checks each tarball against the registry's integrity hash; MANIFEST.json keeps
that hash and each file's SHA-256. To upgrade, change a version below and run it again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "templates" / "inbox" / "vendor"
TEST_TARGET = ROOT / "tests" / "browser" / "vendor"
MANIFEST = "MANIFEST.json"


@dataclass(frozen=True)
class Package:
    name: str  # on npm
    version: str  # pinned: a new version is a reviewed change of this line
    files: dict[str, str]  # path in the package's tarball -> file name in its folder
    why: str
    folder: Path = TARGET  # TARGET (served by the web process) or TEST_TARGET (the tests')


PACKAGES = (
    Package(
        name="@twilio/voice-sdk",
        version="2.18.5",
        files={"package/dist/twilio.min.js": "twilio.min.js", "package/LICENSE.md": "twilio-voice-sdk.LICENSE.md"},
        why="the agents' softphone (Twilio.Device), router/app/inbox/softphone.py",
    ),
    Package(
        name="axe-core",
        version="4.14.1",
        files={"package/axe.min.js": "axe.min.js", "package/LICENSE": "axe-core.LICENSE"},
        why="accessibility checks of the desk, the floor and the widget in the browser tests",
        folder=TEST_TARGET,
    ),
)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch(package: Package, into: Path) -> dict[str, object]:
    """`npm pack` the package's pinned version into a temporary folder, copy its files
    into `into`; returns its manifest entry."""
    with tempfile.TemporaryDirectory(prefix="vendor-") as work:
        done = subprocess.run(
            ["npm", "pack", "--json", "--silent", f"{package.name}@{package.version}"],
            cwd=work,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"npm pack {package.name}@{package.version} failed:\n{done.stderr.strip()}")
        [packed] = json.loads(done.stdout)
        files = {}
        with tarfile.open(Path(work) / packed["filename"], "r:gz") as tarball:
            for member, name in package.files.items():
                source = tarball.extractfile(member)  # read by name: nothing else of the tarball is written
                if source is None:
                    raise SystemExit(f"{package.name}@{package.version} has no file {member}")
                data = source.read()
                (into / name).write_bytes(data)
                files[name] = _sha256(data)
    return {"version": package.version, "integrity": packed["integrity"], "files": files, "why": package.why}


def vendor() -> dict[str, object]:
    if shutil.which("npm") is None:
        raise SystemExit("npm is needed to vendor front-end packages (node's package manager)")
    every: dict[str, object] = {}
    for folder in dict.fromkeys(package.folder for package in PACKAGES):
        folder.mkdir(parents=True, exist_ok=True)
        manifest = {package.name: fetch(package, folder) for package in PACKAGES if package.folder == folder}
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", "utf-8")
        every.update(manifest)
    return every


def problems(target: Path = TARGET, folder: Path | None = None) -> list[str]:
    """What differs between the vendored files in `target` and its manifest and the pinned
    versions of the packages that belong in `folder` (by default, `target` itself)."""
    try:
        manifest = json.loads((target / MANIFEST).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        return [f"no readable {MANIFEST} in {target}: {exc}"]
    found = []
    for package in (p for p in PACKAGES if p.folder == (folder or target)):
        entry = manifest.get(package.name)
        if entry is None or entry.get("version") != package.version:
            found.append(f"{package.name}: vendored {entry and entry.get('version')}, pinned {package.version}")
            continue
        for name in package.files.values():
            path = target / name
            if not path.is_file():
                found.append(f"{package.name}: {name} is missing")
            elif _sha256(path.read_bytes()) != entry["files"].get(name):
                found.append(f"{package.name}: {name} is not the file npm gave (changed by hand?)")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.vendor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="check the vendored files against the manifest")
    args = parser.parse_args(argv)
    if args.check:
        found = [problem for folder in dict.fromkeys(p.folder for p in PACKAGES) for problem in problems(folder)]
        for problem in found:
            print(f"vendor: {problem}", file=sys.stderr)
        if not found:
            print(f"vendor: {len(PACKAGES)} packages as pinned")
        return 1 if found else 0
    for name, entry in vendor().items():
        print(f"vendored {name}@{entry['version']}: {', '.join(entry['files'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
