"""Stubs for every tool of the real-world corpus (../shared/corpus, skipped when it is not checked out)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from mcp_types import Tool

from portal_mcp.catalog.model import Catalog
from portal_mcp.catalog.stubs import render_module, render_stub, render_stubs
from tests.stubs._mypy import mypy_errors
from tests.stubs.test_names import undefined_names

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "servers"

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus not found at {CORPUS}")


@pytest.fixture(scope="module")
def corpus() -> Catalog:
    listings = {}
    for path in sorted(CORPUS.glob("*.json")):
        data = json.loads(path.read_text())
        listings[data["server"]] = [Tool.model_validate(tool) for tool in data["tools"]]
    return Catalog.build(listings)


def test_every_corpus_tool_renders_valid_python_at_every_detail(corpus: Catalog) -> None:
    failures = []
    for entry in corpus:
        for detail in ("name", "signature", "full"):
            try:
                ast.parse(render_stub(entry, detail=detail))
            except SyntaxError as error:
                failures.append(f"{entry.qualified_name} ({detail}): {error}")
    assert len(corpus) > 1000
    assert failures == []


def test_every_corpus_server_module_type_checks_with_mypy(corpus: Catalog, tmp_path: Path) -> None:
    for server in corpus.servers():
        (tmp_path / f"{server}.pyi").write_text(render_module(server, corpus.by_server(server)))
    assert mypy_errors(tmp_path) == ""


def test_every_search_style_reply_over_the_corpus_defines_or_inlines_every_type_it_names(corpus: Catalog) -> None:
    failures = []
    for server in corpus.servers():
        entries = corpus.by_server(server)
        for start in range(0, len(entries), 5):
            reply = render_stubs(entries[start : start + 5], detail="full", full_first=2)
            if missing := undefined_names(reply):
                failures.append(f"{server}[{start}:{start + 5}]: {sorted(missing)}")
    assert failures == []
