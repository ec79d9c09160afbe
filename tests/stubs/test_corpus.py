"""Stubs for every tool of the real-world corpus (../shared/corpus, skipped when it is not checked out)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from mcp_types import Tool

from portal_mcp.catalog.model import Catalog
from portal_mcp.catalog.stubs import render_module, render_stub
from tests.stubs._mypy import mypy_errors

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
