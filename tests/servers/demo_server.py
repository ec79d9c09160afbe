"""A real MCP server for the downstream tests, runnable over stdio, streamable HTTP or SSE.

    python tests/servers/demo_server.py [--transport stdio|http|sse] [--port P] [--many N] [--page-size K]

Tools: `echo`, `add` (structured output), `slow`, `fail` (tool error), `crash` (kills the process), `add_tool`
(registers a tool at runtime and sends `notifications/tools/list_changed`), `stats` (calls seen, calls cancelled),
`header` (an HTTP request header, to check that configured headers arrive) and `pid`.

`MCPServer` answers `tools/list` in one page, so this server is written on the low-level `Server` and pages its
listing (`--page-size`, default 50); `--many N` adds N filler tools so a client has to follow `nextCursor`.
Flags that make it misbehave on purpose: `--exit-at-start` (print to stderr and exit 3 before speaking),
`--hang-at-start` (never answer), `--once FILE` (run only if FILE does not exist yet, then create it: every respawn
after the first start fails), `--loop-cursor` (every page points back at itself), `--spawn-child` (start a
long-sleeping child process, to check that the client cleans up the whole process tree), `--require-header N=V`
(HTTP and SSE: answer 401 to requests without that header). `DEMO_START_DELAY=SECONDS` in its environment makes
it sleep that long before it starts (a slow server, with the same command line).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp.server import NotificationOptions, Server, ServerRequestContext


def _tool(name: str, description: str, params: dict[str, str] | None = None, **extra: Any) -> types.Tool:
    """A tool whose parameters (name -> JSON type) are all required."""
    params = params or {}
    schema: dict[str, Any] = {"type": "object", "properties": {key: {"type": kind} for key, kind in params.items()}}
    if params:
        schema["required"] = list(params)
    return types.Tool(name=name, description=description, input_schema=schema, **extra)


_ECHO = _tool(
    "echo", "Return the text unchanged.", {"text": "string"}, annotations=types.ToolAnnotations(read_only_hint=True)
)
_ADD = _tool(
    "add",
    "Add two integers.",
    {"a": "integer", "b": "integer"},
    output_schema={"type": "object", "properties": {"result": {"type": "integer"}}, "required": ["result"]},
)
_SLOW = _tool("slow", "Sleep for `seconds`, then answer.", {"seconds": "number"})
_FAIL = _tool("fail", "Answer with a tool error carrying `message`.", {"message": "string"})
_CRASH = _tool("crash", "Kill this server process without answering.")
_ADD_TOOL = _tool(
    "add_tool",
    "Register a new tool called `name` and notify the client that the tool list changed.",
    {"name": "string"},
)
_STATS = _tool("stats", "Counters: tool calls started, and calls cancelled by the client.")
_PID = _tool("pid", "This server's process id (to kill it from a test).")
_HEADER = _tool("header", "The value of an HTTP request header (empty over stdio).", {"name": "string"})


def _text(text: str, *, is_error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=is_error)


def build_server(
    *, many: int = 0, page_size: int = 50, loop_cursor: bool = False, silent_changes: bool = False
) -> Server[Any]:
    """The demo server: its tool list lives in this closure, so `add_tool` changes what later pages show (and, with
    `silent_changes`, never says so: what the portal's `relist_every` is for)."""
    tools: list[types.Tool] = [_ECHO, _ADD, _SLOW, _FAIL, _CRASH, _ADD_TOOL, _STATS, _HEADER, _PID]
    tools += [
        types.Tool(
            name=f"extra_{i:04d}",
            description=f"Filler tool number {i}.",
            input_schema={"type": "object", "properties": {}},
        )
        for i in range(many)
    ]
    added: set[str] = set()
    counters = {"calls": 0, "cancelled": 0, "lists": 0}

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        start = int(params.cursor) if params is not None and params.cursor else 0
        counters["lists"] += start == 0
        end = start + page_size
        if loop_cursor:
            return types.ListToolsResult(tools=tools[:page_size], next_cursor="0")
        return types.ListToolsResult(tools=tools[start:end], next_cursor=str(end) if end < len(tools) else None)

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        counters["calls"] += 1
        args = params.arguments or {}
        match params.name:
            case "echo":
                return _text(str(args["text"]))
            case "add":
                total = int(args["a"]) + int(args["b"])
                return types.CallToolResult(
                    content=[types.TextContent(type="text", text=str(total))], structured_content={"result": total}
                )
            case "slow":
                try:
                    await anyio.sleep(float(args["seconds"]))
                except anyio.get_cancelled_exc_class():
                    counters["cancelled"] += 1
                    raise
                return _text(f"slept {args['seconds']}s")
            case "fail":
                return _text(str(args["message"]), is_error=True)
            case "crash":
                if "note" in args:  # what a server logs about the call it was serving (not in the schema)
                    sys.stderr.write(f"demo server: serving {args['note']}\n")
                sys.stderr.write("demo server: crashing on request\n")
                sys.stderr.flush()
                os._exit(1)
            case "add_tool":
                name = str(args["name"])
                if name not in added:
                    added.add(name)
                    tools.append(
                        types.Tool(
                            name=name,
                            description=f"Added at runtime as {name!r}.",
                            input_schema={"type": "object", "properties": {}},
                        )
                    )
                if not silent_changes:
                    await ctx.session.send_tool_list_changed()
                return _text(f"added {name}")
            case "stats":
                return types.CallToolResult(content=[], structured_content=dict(counters))
            case "pid":
                return _text(str(os.getpid()))
            case "header":
                request = ctx.request
                headers = getattr(request, "headers", None)
                value = headers.get(str(args["name"]), "") if headers is not None else ""
                return _text(value)
            case name if name in added or name.startswith("extra_"):
                return _text(f"{name} ok")
            case name:
                return _text(f"unknown tool {name!r}", is_error=True)

    return Server("demo", version="1.0.0", on_list_tools=list_tools, on_call_tool=call_tool)


def _options(server: Server[Any]) -> Any:
    return server.create_initialization_options(NotificationOptions(tools_changed=True))


async def _serve_stdio(server: Server[Any]) -> None:
    from mcp.server.stdio import stdio_server

    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, _options(server))


def _sse_app(server: Server[Any]) -> Any:
    from mcp.server.sse import SseServerTransport
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Mount, Route

    transport = SseServerTransport("/messages/")

    async def sse_endpoint(request: Request) -> Response:
        async with transport.connect_sse(request.scope, request.receive, request._send) as (read, write):
            await server.run(read, write, _options(server))
        return Response()

    return Starlette(
        routes=[
            Route("/sse", endpoint=sse_endpoint, methods=["GET"]),
            Mount("/messages/", app=transport.handle_post_message),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=["stdio", "http", "sse"], default="stdio")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--many", type=int, default=0)
    parser.add_argument("--page-size", type=int, default=50)
    parser.add_argument("--loop-cursor", action="store_true")
    parser.add_argument("--silent-changes", action="store_true", help="add_tool sends no tools/list_changed")
    parser.add_argument("--exit-at-start", action="store_true")
    parser.add_argument("--hang-at-start", action="store_true")
    parser.add_argument("--once", type=Path)
    parser.add_argument("--spawn-child", action="store_true")
    parser.add_argument("--require-header", metavar="NAME=VALUE", help="HTTP: answer 401 without this header")
    args = parser.parse_args(argv)

    # A slow start (a cold `npx` download, a big JVM) without changing the command line, so the portal's last known
    # tools for this exact command still apply: DEMO_START_DELAY=SECONDS.
    time.sleep(float(os.environ.get("DEMO_START_DELAY", "0")))
    if args.exit_at_start:
        sys.stderr.write("demo server: refusing to start (--exit-at-start)\n")
        sys.exit(3)
    if args.once is not None:
        if args.once.exists():
            sys.stderr.write(f"demo server: {args.once} exists, so this is a respawn; exiting\n")
            sys.exit(4)
        args.once.touch()
    if args.hang_at_start:
        time.sleep(3600)
    if args.spawn_child:
        # Inherits the process group and all three pipes, as the node child of `npx` does.
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])

    server = build_server(
        many=args.many, page_size=args.page_size, loop_cursor=args.loop_cursor, silent_changes=args.silent_changes
    )
    if args.transport == "stdio":
        anyio.run(_serve_stdio, server)
        return

    import uvicorn

    app = server.streamable_http_app() if args.transport == "http" else _sse_app(server)
    if args.require_header:
        app = _RequireHeader(app, *args.require_header.split("=", 1))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


class _RequireHeader:
    """ASGI middleware answering 401 unless the request carries `name: value` (a stand-in for a bearer token)."""

    def __init__(self, app: Any, name: str, value: str) -> None:
        self.app = app
        self.header = (name.lower().encode(), value.encode())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.header not in scope["headers"]:
            await send({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"missing credentials"})
            return
        await self.app(scope, receive, send)


if __name__ == "__main__":
    main()
