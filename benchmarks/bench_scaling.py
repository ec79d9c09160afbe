"""Scaling: rows a-d and a typical search_api reply as the catalog grows from 10 to 10,000 tools.

Real schemas from `schemas/`, replicated under new server names (`gitlab_2`, ...) past the bundled size; smaller
sizes are a fixed seeded sample of the bundled catalog (see `portal_mcp.benchmark.grow_listings`). The search reply
at each size comes from a real Portal over snapshot files of that grown catalog.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

import anyio
from common import HERE, bundled_listings, fmt, open_portal, snapshot_config, write_snapshots
from mcp_types import Tool

from portal_mcp.benchmark import TYPICAL_QUERIES, scaling_rows
from portal_mcp.catalog.tokens import count_tokens

NAME = "scaling"
SIZES = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
PLOT = HERE / "scaling.png"
CONTEXT_WINDOW = 200_000


def _search_median(listings: dict[str, list[Tool]]) -> int:
    async def measure() -> int:
        with tempfile.TemporaryDirectory() as folder:
            paths = write_snapshots(listings, Path(folder))
            async with open_portal(snapshot_config(paths)) as portal:
                return int(statistics.median(count_tokens(portal.search_api(q)) for q in TYPICAL_QUERIES))

    return anyio.run(measure)


def run() -> dict[str, Any]:
    points = scaling_rows(bundled_listings(), SIZES, search=_search_median)
    results = {"sizes": list(SIZES), "points": [p.as_dict() for p in points], "plot": PLOT.name}
    plot(results, PLOT)
    return results


def plot(results: dict[str, Any], path: Path) -> None:
    """A log-log plot of the rows against catalog size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = results["points"]
    tools = [p["tools"] for p in points]
    fig, ax = plt.subplots(figsize=(9, 5.6), dpi=120)
    series = [
        ("a: every tool, full schema", "full", "#c0392b", "o"),
        ("b: required params only", "required", "#e67e22", "s"),
        ("c: names + descriptions", "names", "#8e44ad", "^"),
    ]
    for label, key, colour, marker in series:
        ax.plot(tools, [p[key] for p in points], label=label, color=colour, marker=marker, linewidth=2)
    ax.plot(
        tools,
        [p["portal"] + (p["search"] or 0) for p in points],
        label="portal: 2 tools + a typical search_api reply",
        color="#27ae60",
        marker="D",
        linewidth=2.5,
    )
    ax.plot(tools, [p["portal"] for p in points], label="d: portal's 2 tools alone", color="#16a085", linestyle="--")
    ax.axhline(CONTEXT_WINDOW, color="grey", linestyle=":", linewidth=1.2)
    ax.text(tools[0], CONTEXT_WINDOW * 1.15, "200k-token context window", color="grey", fontsize=9)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tools in the catalog (real schemas, log scale)")
    ax.set_ylabel("context tokens before the first call (cl100k, log scale)")
    last = points[-1]
    ax.set_title(
        f"Context cost as the catalog grows: at {last['tools']:,} tools, {fmt(last['full'])} tokens inline "
        f"vs {fmt(last['portal'] + (last['search'] or 0))} through portal-mcp",
        fontsize=10,
    )
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)
    ax.legend(loc="upper left", fontsize=9, framealpha=0.95)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "## Scaling: 10 to 10,000 tools",
        "",
        "Real schemas from `schemas/`; sizes above the bundled catalog replicate it under new server names, smaller "
        "sizes are a fixed seeded sample of it. `search` is the median real `search_api` reply at that size.",
        "",
        f"![scaling plot]({results['plot']})",
        "",
        "| tools | servers | a: full | b: required | c: names | d: portal | d + search | a / (d + search) | saved |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in results["points"]:
        with_search = p["portal"] + (p["search"] or 0)
        lines.append(
            f"| {p['tools']:,} | {p['servers']} | {fmt(p['full'])} | {fmt(p['required'])} | {fmt(p['names'])} | "
            f"{fmt(p['portal'])} | {fmt(with_search)} | {p['full'] / with_search:,.0f}x | "
            f"{1 - with_search / p['full']:.2%} |"
        )
    lines += [
        "",
        "Copies are identical to their originals, so this measures context size, not search quality: at 10,000 tools "
        "a search returns five equally good copies where a real catalog would have five different tools.",
    ]
    return "\n".join(lines) + "\n"
