"""A real MCP server for the credential tests: it records the credentials it receives and echoes them back.

    python tests/servers/auth_server.py [--transport stdio|http] [--port P] [--record FILE]

Tools:
- `tag(text)`: appends `{"auth": <Authorization header>, "api_key": <$API_KEY>, "text": text, "pid": pid}` as a
  JSON line to FILE (what the downstream really received), answers `tagged <text>`;
- `whoami()`: answers the Authorization header and $API_KEY, as a successful result (an echo);
- `reject()`: answers a tool error quoting them, like a 401 body that repeats the token it refused;
- `reject_rpc()`: the same as a JSON-RPC error;
- `env_digest(name)`: `{"pid": pid, "sha256": sha256(os.environ[name])}`, so a test can tell which value a process
  holds without it passing through the portal;
- `print_env(name)`: writes the variable's value to stderr (a server that logs its configuration).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.shared.exceptions import MCPError


def _tool(name: str, description: str, params: dict[str, str] | None = None) -> types.Tool:
    params = params or {}
    schema: dict[str, Any] = {"type": "object", "properties": {key: {"type": kind} for key, kind in params.items()}}
    if params:
        schema["required"] = list(params)
    return types.Tool(name=name, description=description, input_schema=schema)


TOOLS = [
    _tool("tag", "Record the credentials this call arrived with, next to `text`.", {"text": "string"}),
    _tool("whoami", "The Authorization header and API_KEY this call arrived with."),
    _tool("reject", "Fail like a server refusing the credentials, quoting them."),
    _tool("reject_rpc", "Fail with a JSON-RPC error quoting the credentials."),
    _tool("env_digest", "This process's id and the SHA-256 of an environment variable.", {"name": "string"}),
    _tool("print_env", "Write an environment variable to stderr.", {"name": "string"}),
]


def _text(text: str, *, is_error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=is_error)


def build_server(record: Path | None) -> Server[Any]:
    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=TOOLS)

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        args = params.arguments or {}
        headers = getattr(ctx.request, "headers", None)
        auth = headers.get("authorization", "") if headers is not None else ""
        api_key = os.environ.get("API_KEY", "")
        match params.name:
            case "tag":
                if record is not None:
                    line = {"auth": auth, "api_key": api_key, "text": args["text"], "pid": os.getpid()}
                    with record.open("a", encoding="utf-8") as file:
                        file.write(json.dumps(line) + "\n")
                return _text(f"tagged {args['text']}")
            case "whoami":
                return _text(f"you sent Authorization={auth!r} API_KEY={api_key!r}")
            case "reject":
                return _text(f"401 Unauthorized: credentials {auth!r} / {api_key!r} were revoked", is_error=True)
            case "reject_rpc":
                raise MCPError(code=-32001, message=f"invalid credentials {auth!r} {api_key!r}")
            case "env_digest":
                value = os.environ.get(str(args["name"]), "")
                digest = hashlib.sha256(value.encode()).hexdigest()
                return types.CallToolResult(content=[], structured_content={"pid": os.getpid(), "sha256": digest})
            case "print_env":
                sys.stderr.write(f"auth server config: {args['name']}={os.environ.get(str(args['name']), '')}\n")
                sys.stderr.flush()
                return _text("printed")
            case name:
                return _text(f"unknown tool {name!r}", is_error=True)

    return Server("auth", version="1.0.0", on_list_tools=list_tools, on_call_tool=call_tool)


async def _serve_stdio(server: Server[Any]) -> None:
    from mcp.server.stdio import stdio_server

    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--record", type=Path)
    args = parser.parse_args(argv)
    server = build_server(args.record)
    if args.transport == "stdio":
        anyio.run(_serve_stdio, server)
        return

    import uvicorn

    uvicorn.run(server.streamable_http_app(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
