"""Observed return types: what learning a result's shape costs on the event loop, next to parsing the same result.

For results of about 2 KB, 100 KB and 3 MB (lists of GitHub-style issues: nested users, labels, reactions), the
median time of `ShapeBook.observe` (the shape of one call, merged into the tool's shape) is measured against
`json.loads` of the same text, which the bridge does anyway for a JSON text result. The observation visits at most
`MAX_NODES` values, so its cost stays flat as results grow; the stub it yields is counted in cl100k tokens.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from mcp_types import Tool

from portal_mcp.catalog.model import Catalog
from portal_mcp.catalog.shapes import MAX_NODES, ShapeBook
from portal_mcp.catalog.stubs import render_stubs
from portal_mcp.catalog.tokens import count_tokens

NAME = "shapes"
REPEATS = 30
ISSUES = (1, 55, 1_650)
"""Issues per result: about 2 KB, 100 KB and 3 MB of JSON."""


def issue(number: int) -> dict[str, Any]:
    user = {key: f"https://api.example.com/{key}/{number}" for key in ("url", "html_url", "repos_url", "events_url")}
    user |= {"login": f"user{number}", "id": number, "type": "User", "site_admin": False}
    return {
        "id": number,
        "number": number,
        "title": f"Issue {number}",
        "state": "open",
        "user": user,
        "labels": [{"id": 1, "name": "bug", "color": "d73a4a", "default": True}],
        "assignees": [user],
        "milestone": None,
        "comments": number % 7,
        "created_at": "2026-01-01T00:00:00Z",
        "body": "text " * 200,
        "reactions": {"+1": 1, "-1": 0, "heart": 2, "total_count": 3},
    }


def _median_ms(action: Callable[[], object]) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 3)


def run() -> dict[str, Any]:
    tool = Tool.model_validate({"name": "list_issues", "inputSchema": {"type": "object"}})
    entry = Catalog.build({"github": [tool]}).entries[0]
    rows = []
    for count in ISSUES:
        value = [issue(n) for n in range(count)]
        text = json.dumps(value)
        book = ShapeBook()
        rows.append(
            {
                "issues": count,
                "bytes": len(text),
                "observe_ms": _median_ms(lambda book=book, value=value: book.observe(entry, value)),
                "json_loads_ms": _median_ms(lambda text=text: json.loads(text)),
                "stub_tokens": count_tokens(render_stubs([entry], observed=book.observed([entry]))),
            }
        )
    return {"repeats": REPEATS, "max_nodes": MAX_NODES, "rows": rows}


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "## Observed return types: cost of learning a result's shape",
        "",
        f"Median of {results['repeats']} runs; the observation visits at most {results['max_nodes']:,} values.",
        "",
        "| issues | bytes | observe (ms) | json.loads (ms) | stub tokens |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in results["rows"]:
        cells = [f"{row['issues']:,}", f"{row['bytes']:,}", row["observe_ms"], row["json_loads_ms"], row["stub_tokens"]]
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    return "\n".join(lines) + "\n"
