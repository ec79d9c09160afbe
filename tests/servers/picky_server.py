"""A stdio MCP server that refuses to start for one user's key (printing that user's data to stderr first), and
serves `ping` to everyone else: a downstream whose failure text belongs to one user."""

import os
import sys

from mcp.server import MCPServer

if os.environ.get("API_KEY", "").startswith("bob"):
    print("loading workspace of bob: private-project-atlas, invoice 4711 overdue", file=sys.stderr, flush=True)
    sys.exit(3)

server = MCPServer("picky")


@server.tool()
def ping() -> str:
    """Answer pong."""
    return "pong"


if __name__ == "__main__":
    server.run()
