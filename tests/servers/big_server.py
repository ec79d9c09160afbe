"""A stdio MCP server of many tools (`big_server.py N`: N tools, default 6000): a big catalog for a portal in a
subprocess. `add_tools` is shared with the in-process big servers of the tests."""

from __future__ import annotations

import sys

from mcp.server import MCPServer

TOPICS = ("invoice", "ticket", "pod", "bucket", "dashboard", "contact", "branch", "alert", "table", "page")
VERBS = ("create", "list", "get", "update", "delete", "archive", "export", "sync")


def add_tools(server: MCPServer, count: int) -> None:
    """`count` tools named `VERB_TOPIC_NUMBER`, each with a sentence of its own (so no two rank alike)."""
    for number in range(count):
        topic, verb = TOPICS[number % len(TOPICS)], VERBS[(number // len(TOPICS)) % len(VERBS)]
        description = f"{verb.title()} a {topic} of workspace {number}: the {topic} record, its owner and history."
        server.add_tool(lambda: "ok", name=f"{verb}_{topic}_{number}", description=description)


if __name__ == "__main__":
    big = MCPServer("big")
    add_tools(big, int(sys.argv[1]) if len(sys.argv) > 1 else 6000)
    big.run("stdio")
