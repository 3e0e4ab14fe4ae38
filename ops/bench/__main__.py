"""Benchmarks: `python -m ops.bench <name> [options]`.

Names: routing, instructions, webhooks, email, pipeline, campaigns, desk, archive, knowledge, dialer, retention.
"""

from __future__ import annotations

import sys

BENCHMARKS = (
    "routing",
    "instructions",
    "webhooks",
    "email",
    "pipeline",
    "campaigns",
    "desk",
    "archive",
    "knowledge",
    "dialer",
    "retention",
)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in BENCHMARKS:
        print(f"usage: python -m ops.bench {{{','.join(BENCHMARKS)}}} [options]  (--help after the name)")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    name, rest = argv[0], argv[1:]
    if name == "routing":
        from ops.bench import routing

        return routing.main(rest)
    if name == "instructions":
        from ops.bench import instructions

        return instructions.main(rest)
    if name == "webhooks":
        from ops.bench import webhooks

        return webhooks.main(rest)
    if name == "email":
        from ops.bench import email

        return email.main(rest)
    if name == "pipeline":
        from ops.bench import pipeline

        return pipeline.main(rest)
    if name == "campaigns":
        from ops.bench import campaigns

        return campaigns.main(rest)
    if name == "desk":
        from ops.bench import desk

        return desk.main(rest)
    if name == "archive":
        from ops.bench import archive

        return archive.main(rest)
    if name == "knowledge":
        from ops.bench import knowledge

        return knowledge.main(rest)
    if name == "dialer":
        from ops.bench import dialer

        return dialer.main(rest)
    if name == "retention":
        from ops.bench import retention

        return retention.main(rest)
    return 2


if __name__ == "__main__":
    sys.exit(main())
