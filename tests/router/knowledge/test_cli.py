"""`contactrouter knowledge`: import checks every line before writing any, lists, exports."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from router import audit
from router.app import cli
from router.knowledge import articles
from router.knowledge import cli as knowledge_cli
from router.knowledge.articles import KnowledgeError
from tests.router.knowledge.factories import kb_world


def lines(*rows: dict) -> str:
    return "\n".join(json.dumps(row, ensure_ascii=False) for row in rows) + "\n"


def args(action: str, **fields) -> argparse.Namespace:
    return argparse.Namespace(knowledge_action=action, **fields)


async def test_import_publishes_every_line_and_list_and_export_show_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = await kb_world()
    source = tmp_path / "faq.jsonl"
    source.write_text(lines(
        {"title": "Paying by card", "body": "Use any card.", "category": "billing"},
        {"title": "如何支付账单", "body": "用银行卡支付。", "category": "billing", "locale": "zh-CN", "format": "text"},
    ), "utf-8")  # fmt: skip
    await knowledge_cli.command(w.store, w.deployment, args("import", tenant="acme", file=source, publish=True))
    assert "imported 2 articles into acme" in capsys.readouterr().out
    found = await articles.listing(w.store, "acme")
    assert {(a.title, a.status, a.locale, a.format) for a in found} == {
        ("Paying by card", "published", "en", "markdown"),
        ("如何支付账单", "published", "zh-CN", "text"),
    }
    assert [a.title for a in await articles.find(w.store, w.tenant, "支付")] == ["如何支付账单"]
    trail, _more = await audit.read(w.store, tenant="acme", action="article")
    assert len(trail) == 6 and {e.client for _id, e in trail} == {"cli"}

    await knowledge_cli.command(w.store, w.deployment, args("list", tenant="acme", status="published"))
    assert "Published  billing  zh-CN  inserted 0  helped 0  如何支付账单" in capsys.readouterr().out
    await knowledge_cli.command(w.store, w.deployment, args("export", tenant="acme"))
    exported = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {e["title"] for e in exported} == {"Paying by card", "如何支付账单"}


async def test_one_bad_line_stops_the_import_before_anything_is_written(tmp_path: Path) -> None:
    w = await kb_world()
    source = tmp_path / "faq.jsonl"
    source.write_text(lines(
        {"title": "Fine", "body": "Good.", "category": "billing"},
        {"title": "Wrong place", "body": "x", "category": "nowhere"},
    ), "utf-8")  # fmt: skip
    with pytest.raises(KnowledgeError, match=r"faq.jsonl, line 2: category: no category 'nowhere'"):
        await knowledge_cli.command(w.store, w.deployment, args("import", tenant="acme", file=source, publish=False))
    source.write_text("not json\n", "utf-8")
    with pytest.raises(KnowledgeError, match="line 1"):
        await knowledge_cli.command(w.store, w.deployment, args("import", tenant="acme", file=source, publish=False))
    assert await articles.listing(w.store, "acme") == []


def test_the_command_is_registered_with_the_cli() -> None:
    parsed = cli._parser().parse_args(["knowledge", "import", "--tenant", "acme", "faq.jsonl", "--publish"])
    assert (parsed.knowledge_action, parsed.file, parsed.publish) == ("import", Path("faq.jsonl"), True)
    assert cli.EXTENSIONS["knowledge"] is knowledge_cli
