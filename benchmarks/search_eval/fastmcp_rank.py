"""Rank the evaluation queries with FastMCP's CodeMode search; runs inside a venv that has `fastmcp` installed.

`python fastmcp_rank.py IN.json OUT.json`. IN holds `{"tools": [{"server", "tool"}], "queries": [...], "depth"}`
(`tool` is the tool as served by tools/list); OUT gets `{"version", "rankings": {query: [server.tool, ...]}}`.

What it runs is CodeMode's own default: `fastmcp.experimental.transforms.code_mode.Search()` ranks with
`BM25SearchTransform(max_results=sys.maxsize)._search`, a BM25 Okapi index over each tool's name, description
and parameter names and descriptions. Tools are `ProxyTool`s built from the same tools/list JSON, named
`server_tool` as FastMCP's namespace transform names mounted servers.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any


async def rank(data: dict[str, Any]) -> dict[str, Any]:
    import fastmcp
    import mcp_types
    from fastmcp.experimental.transforms.code_mode import Search
    from fastmcp.server.providers.proxy import ProxyTool

    tools = []
    qualified: dict[str, str] = {}
    for item in data["tools"]:
        wire = mcp_types.Tool.model_validate(item["tool"])
        tool = ProxyTool.from_mcp_tool(lambda: None, wire)
        name = f"{item['server']}_{wire.name}"
        tools.append(tool.model_copy(update={"name": name}))
        qualified[name] = f"{item['server']}.{item['python_name']}"
    search_fn = Search()._search_fn
    rankings = {}
    for query in data["queries"]:
        found = await search_fn(tools, query)
        rankings[query] = [qualified[tool.name] for tool in found[: data["depth"]]]
    return {"version": fastmcp.__version__, "rankings": rankings}


def main(argv: list[str]) -> int:
    source, target = Path(argv[0]), Path(argv[1])
    result = asyncio.run(rank(json.loads(source.read_text(encoding="utf-8"))))
    target.write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
