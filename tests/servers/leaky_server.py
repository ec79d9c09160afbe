"""A stdio MCP server that quotes its credential, the way careless servers do, folded over several lines:

- `boom()` raises `ValueError("401 Unauthorized: bad token " + $API_KEY)`: the SDK's rich traceback on stderr
  (about 80 columns wide) folds a long key over several lines, a piece on each;
- `report()` answers a status report with the key folded at 40 columns.
"""

import os
import textwrap

from mcp.server import MCPServer

server = MCPServer("leaky")


@server.tool()
def boom() -> str:
    """Fail with the key in the message."""
    raise ValueError("401 Unauthorized: bad token " + os.environ["API_KEY"])


@server.tool()
def report() -> str:
    """A status report quoting the key, folded at 40 columns."""
    return "\n".join(
        [
            "status: connected with key",
            *textwrap.wrap(os.environ["API_KEY"], width=40, break_on_hyphens=False),
            "(expires soon)",
        ]
    )


if __name__ == "__main__":
    server.run()
