"""The packages import one way: the core <- channels and ops <- workers <- the shell.

A module may import its own layer and the layers below it, never one above; two groups of
one layer (channels and the ops library) do not import each other; channel packages do
not import each other, except fax, which rides on email's mail handling. Imports inside
functions count as much as those at the top: a lazy import still ties the layers.
(grimp builds the graph from the source, as import-linter does, without running it.)
"""

from __future__ import annotations

import grimp
import pytest

from router.events import CHANNELS

# Most specific prefix wins: router.app is the shell although router is the core.
GROUPS: dict[str, tuple[int, str]] = {
    "router": (0, "core"),
    "channels": (1, "channels"),
    "ops": (1, "ops library"),
    "workers": (2, "workers"),
    "router.app": (3, "shell"),
    "ops.cli": (3, "shell"),
    "ops.bench": (3, "shell"),
    "ops.faults": (3, "shell"),
}
CHANNEL_IMPORTS_ALLOWED = {("fax", "email")}  # fax-to-email: a fax is a mail from a gateway


def group(module: str) -> tuple[int, str]:
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        found = GROUPS.get(".".join(parts[:end]))
        if found is not None:
            return found
    raise AssertionError(f"{module} is in no layer: add its package to GROUPS")


def channel_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "channels" and parts[1] in CHANNELS else None


@pytest.fixture(scope="module")
def imports() -> list[tuple[str, str]]:
    graph = grimp.build_graph("router", "channels", "workers", "ops", cache_dir=None)
    return [
        (importer, imported)
        for importer in sorted(graph.modules)
        for imported in sorted(graph.find_modules_directly_imported_by(importer))
    ]


def test_no_module_imports_a_layer_above_its_own(imports):
    upward = [
        f"{importer} ({group(importer)[1]}) imports {imported} ({group(imported)[1]})"
        for importer, imported in imports
        if group(importer)[0] < group(imported)[0]
    ]
    assert upward == []


def test_the_groups_of_one_layer_do_not_import_each_other(imports):
    across = [
        f"{importer} ({group(importer)[1]}) imports {imported} ({group(imported)[1]})"
        for importer, imported in imports
        if group(importer)[0] == group(imported)[0] and group(importer)[1] != group(imported)[1]
    ]
    assert across == []


def test_channel_packages_do_not_import_each_other(imports):
    across = [
        f"{importer} imports {imported}"
        for importer, imported in imports
        if (a := channel_of(importer)) and (b := channel_of(imported)) and a != b
        if (a, b) not in CHANNEL_IMPORTS_ALLOWED
    ]
    assert across == []


def test_the_layer_rule_would_catch_the_core_importing_a_channel():
    # the rule itself, on the edge that once tied the whole tree into one cycle
    assert group("router.agents")[0] < group("channels.voice.callbacks")[0]
    assert group("channels.sms.inbound")[0] < group("router.app.web")[0]
    assert channel_of("channels.email.inbound") == "email" and channel_of("channels.transport") is None
