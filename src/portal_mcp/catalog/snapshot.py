"""Snapshot files: a server's `tools/list` saved as JSON, so its tools are searchable without running it.

```json
{"server": "memory", "source": "npx -y @modelcontextprotocol/server-memory", "tools": [<Tool as served>]}
```
Tools use the MCP wire names (`inputSchema`, `outputSchema`, `annotations`). A bare `{"tools": [...]}` (a saved
`tools/list` result) is accepted too. `portal-mcp snapshot` writes these files with `dump_snapshot`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mcp_types import Tool
from pydantic import ValidationError

from portal_mcp.errors import ConfigError

__all__ = ["dump_snapshot", "load_snapshot", "parse_snapshot"]


def load_snapshot(path: str | Path) -> list[Tool]:
    """The tools saved in a snapshot file, in listing order. Raises `ConfigError` naming the file and the problem."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            "snapshot file not found; capture one with `portal-mcp snapshot --config FILE --out DIR`", source=source
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"cannot read the snapshot file: {reason}", source=source) from None
    return parse_snapshot(text, source=source)


def parse_snapshot(text: str, *, source: str) -> list[Tool]:
    """Validate snapshot text; `source` names it in errors."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"snapshot is not valid JSON: {exc.msg}", source=source, line=exc.lineno) from None
    if not isinstance(data, dict):
        raise ConfigError('a snapshot must be a JSON object with a "tools" list', source=source)
    tools = data.get("tools")
    if not isinstance(tools, list):
        found = "no" if tools is None else f"a {type(tools).__name__} as"
        raise ConfigError(
            f'a snapshot needs a "tools" list (a tools/list result) but has {found} "tools"', source=source
        )
    return [_tool(item, index, source) for index, item in enumerate(tools)]


def _tool(item: Any, index: int, source: str) -> Tool:
    label = f"tools[{index}]"
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        label += f" ({item['name']!r})"
    if not isinstance(item, dict):
        raise ConfigError(f"{label} must be a Tool object, not {type(item).__name__}", source=source)
    try:
        return Tool.model_validate(item)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "the tool"
        if error["type"] == "missing":
            raise ConfigError(f"{label}: `{where}` is required", source=source) from None
        raise ConfigError(f"{label}: `{where}`: {error['msg']}", source=source) from None


def dump_snapshot(server: str, source: str, tools: Sequence[Tool]) -> str:
    """A snapshot file's text: pretty JSON, tools in listing order, wire names, no nulls, newline at the end.

    Keys are not sorted: schema `properties` keep the server's order, which is the parameter order stubs show.
    """
    document = {
        "server": server,
        "source": source,
        "tools": [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in tools],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
