"""ops.vendor: the front-end packages the pages load are npm's files at their pinned
versions, committed, and shipped in the wheel; a file changed by hand is found."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

from ops import vendor

ROOT = Path(__file__).resolve().parents[2]


def test_the_vendored_files_are_the_pinned_packages_as_npm_gave_them():
    assert vendor.problems() == []
    assert vendor.main(["--check"]) == 0


def test_a_vendored_file_changed_by_hand_or_a_new_pin_not_fetched_is_found(tmp_path):
    copy = tmp_path / "vendor"
    shutil.copytree(vendor.TARGET, copy)
    (copy / "twilio.min.js").write_text("window.Twilio = {};")
    assert vendor.problems(copy, vendor.TARGET) == [
        "@twilio/voice-sdk: twilio.min.js is not the file npm gave (changed by hand?)"
    ]
    (copy / vendor.MANIFEST).write_text('{"@twilio/voice-sdk": {"version": "2.0.0", "files": {}}}')
    assert vendor.problems(copy, vendor.TARGET) == ["@twilio/voice-sdk: vendored 2.0.0, pinned 2.18.5"]


def test_the_wheel_ships_the_vendored_files():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["setuptools"]["package-data"]
    shipped = {path.resolve() for pattern in patterns["router"] for path in (ROOT / "router").glob(pattern)}
    vendored = {path.resolve() for path in vendor.TARGET.iterdir()}
    assert {"twilio.min.js", "twilio-voice-sdk.LICENSE.md"} <= {path.name for path in vendored}
    assert vendored <= shipped
