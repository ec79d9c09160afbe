"""The MCP surface: the server that serves the two tools over stdio and streamable HTTP (server), bearer auth,
`/metrics` and `/healthz`, and the forwarding of approval answers between replicas (peers).

May import every layer below it (see docs/architecture.md), never cli.
"""
