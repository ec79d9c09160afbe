"""The portal's own face: its two tools (names, descriptions, input schemas) and its instructions, as a client lists
them. A low module on purpose: the server serves these, and token counting (`catalog.tokens`, the savings report
and the `/metrics` gauge) measures them, without either depending on the other."""

from __future__ import annotations

import mcp_types as types

MAX_LIMIT = 20
"""The most tools one `search_api` reply may name."""

SEARCH_DESCRIPTION = (
    "Find tools across all connected servers. Returns them as typed Python stubs named `server.tool`. "
    "Search before execute_code; an empty query lists the servers."
)
EXECUTE_DESCRIPTION = (
    "Run Python that calls tools found with search_api: `r = await server.tool(arg=value)` (keyword arguments, "
    "top-level await; `asyncio.gather` runs calls concurrently). Filter and combine results in code and print only "
    "what you need; the reply is the printed output and the last expression's value. A failed tool raises ToolError. "
    '`await portal.search("query")` finds tools from code: [{name, signature, description}]; '
    "`portal.tool(name)` is the function."
)
"""The start of the `execute_code` description; the server appends the importable modules (from the sandbox's
facade list) and any server aliases (`surface.server.execute_description`)."""
INSTRUCTIONS = (
    "portal-mcp fronts many MCP servers. Use search_api to find tools, then execute_code to call them from Python."
)

TOOLS = [
    types.Tool(
        name="search_api",
        description=SEARCH_DESCRIPTION,
        input_schema={
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "what you need, in words"},
                "server": {"type": "string", "description": "only this server"},
                "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 5},
                "detail": {"enum": ["name", "signature", "full"], "description": "default: full docs for the top 2"},
            },
            "required": ["query"],
        },
        annotations=types.ToolAnnotations(read_only_hint=True, open_world_hint=False),
    ),
    types.Tool(
        name="execute_code",
        description=EXECUTE_DESCRIPTION,
        input_schema={
            "type": "object",
            "properties": {"code": {"type": "string", "description": "Python source"}},
            "required": ["code"],
        },
        annotations=types.ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=True),
        # A long run may be started as a task (2025-11-25 `task: {ttl}`, surface/tasks.py) or waited for.
        execution=types.ToolExecution(task_support="optional"),
    ),
]
