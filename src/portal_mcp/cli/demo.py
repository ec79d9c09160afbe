"""`portal-mcp demo`: a scripted agent session against `portal-mcp serve`, through a real MCP client over stdio.

It shows the portal's main job on the bundled catalog: the model sees two tools, searches, writes code that calls
two live servers concurrently, and the context it would have paid for every tool inline is printed beside it.
"""

from __future__ import annotations

import sys
import textwrap

from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax

from portal_mcp.benchmark import measure_tokens, report_table
from portal_mcp.catalog.model import Catalog
from portal_mcp.catalog.snapshot import load_snapshot
from portal_mcp.catalog.tokens import compact
from portal_mcp.config import bundled_schemas_dir

DEMO_CODE = textwrap.dedent(
    """\
    import asyncio
    tokyo, paris = await asyncio.gather(
        time.get_current_time(timezone="Asia/Tokyo"),
        time.get_current_time(timezone="Europe/Paris"),
    )
    await memory.create_entities(entities=[
        {"name": "portal-mcp", "entityType": "project", "observations": [f"demo ran at {tokyo['datetime']} Tokyo time"]},
    ])
    graph = await memory.search_nodes(query="portal-mcp")
    print("Tokyo:", tokyo["datetime"], "| Paris:", paris["datetime"])
    print("memory now holds:", [e["name"] for e in graph["entities"]])
    {"tokyo_is_dst": tokyo["is_dst"], "entities": len(graph["entities"])}
    """
)


def _text(result: object) -> str:
    return "\n".join(getattr(block, "text", "") for block in getattr(result, "content", []))


async def run_demo(console: Console) -> int:
    """Drive the portal like an agent would; returns a process exit code."""
    params = StdioServerParameters(command=sys.executable, args=["-m", "portal_mcp", "serve"])
    console.rule("portal-mcp demo: a real MCP client talking to `portal-mcp serve` over stdio")
    async with Client(params, mode="legacy", read_timeout_seconds=180) as client:
        listed = await client.list_tools()
        # Counted the way `portal-mcp bench` counts every row: {name, description, inputSchema} as listed.
        tools_json = compact(
            [{"name": t.name, "description": t.description, "inputSchema": t.input_schema} for t in listed.tools]
        )
        console.print(f"The model sees {len(listed.tools)} tools: {', '.join(t.name for t in listed.tools)}")

        overview = await client.call_tool("search_api", {"query": ""})
        console.print(Panel(_text(overview), title="search_api(query='')", expand=False))
        found = await client.call_tool("search_api", {"query": "current time in a timezone", "limit": 2})
        console.print(
            Panel(_text(found), title="search_api(query='current time in a timezone', limit=2)", expand=False)
        )

        console.print(Syntax(DEMO_CODE, "python", theme="ansi_dark", word_wrap=True))
        ran = await client.call_tool("execute_code", {"code": DEMO_CODE})
        console.print(Panel(_text(ran), title="execute_code -> " + ("error" if ran.is_error else "ok"), expand=False))
        replies = [
            _text(found),
            _text(await client.call_tool("search_api", {"query": "remember a fact about a person"})),
        ]

    # Count the naive way from the bundled snapshots of the same servers (the client cannot see the catalog).
    listings = {path.stem: load_snapshot(path) for path in sorted(bundled_schemas_dir().glob("*.json"))}
    report = measure_tokens(Catalog.build(listings), tools_json, replies)
    console.print(report_table(report))
    return 1 if ran.is_error else 0
