"""Tokens: the four rows of `portal-mcp bench` on the bundled catalog, plus a typical search_api reply."""

from __future__ import annotations

from typing import Any

import anyio
from common import bundled_config, fmt, open_portal, pct

from portal_mcp.benchmark import TYPICAL_QUERIES, measure_tokens, with_queries
from portal_mcp.catalog.tokens import portal_tools_json

NAME = "tokens"


async def _measure() -> dict[str, Any]:
    async with open_portal(bundled_config()) as portal:
        replies = [portal.search_api(query) for query in TYPICAL_QUERIES]
        report = measure_tokens(portal.catalog, portal_tools_json(), replies)
    return with_queries(report, TYPICAL_QUERIES).as_dict()


def run() -> dict[str, Any]:
    return anyio.run(_measure)


def markdown(results: dict[str, Any]) -> str:
    rows = results["rows"]
    full = rows[0]["tokens"]
    search = results["typical_search"]
    lines = [
        "## Tokens up front: the bundled catalog",
        "",
        f"{results['tools']:,} tools on {results['servers']} real servers (the snapshots in `schemas/`). "
        "Each row counts the compact JSON `{name, description, inputSchema}` of every tool as a client lists it "
        "to the model (`portal-mcp bench` prints the same table).",
        "",
        "| row | what the model sees | tokens | saved vs a |",
        "|---|---|---:|---:|",
    ]
    lines += [f"| {r['label']} | {r['what']} | {fmt(r['tokens'])} | {pct(r['saving'])} |" for r in rows]
    lines.append(
        f"| d+s | d + one typical `search_api` reply | {fmt(search['portal_with_search'])} | {pct(search['saving'])} |"
    )
    lines += [
        "",
        f"The typical reply is the median over {len(search['queries'])} queries (5 full stubs each): "
        + ", ".join(f"`{q}` {fmt(t)}" for q, t in zip(search["queries"], search["tokens"], strict=True))
        + ".",
        "",
        "<details><summary>Per server</summary>",
        "",
        "| server | tools | a: full | b: required | c: names |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, s in sorted(results["per_server"].items(), key=lambda item: -item[1]["a"]):
        lines.append(f"| {name} | {s['tools']} | {fmt(s['a'])} | {fmt(s['b'])} | {fmt(s['c'])} |")
    lines += ["", "</details>", "", f"Row a is {full / rows[3]['tokens']:,.0f} times row d."]
    return "\n".join(lines) + "\n"
