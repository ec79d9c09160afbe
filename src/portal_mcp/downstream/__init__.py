"""Connections to downstream MCP servers: one official-SDK `Client` per server, owned by a `DownstreamPool`.

```
DownstreamPool                 async context manager; owns one task group and every process it starts
├── Link (stdio|http|sse|inproc)   a long-lived task that enters `mcp.client.Client`, lists the tools and parks
│                                  until the connection ends, the pool closes or the server says
│                                  `tools/list_changed`; it (re)connects when a call finds the connection dead
└── snapshot / disabled            tools read from a file / nothing; no task
```
anyio requires the task that enters a cancel scope to exit it, so only a link's own task enters and exits the SDK's
context managers. `call_tool` sends its request on the link's live `Client` from the caller's task (the SDK session
serves concurrent requests) and asks the link task for a new connection when it finds the old one dead.

Connections use the `initialize` handshake (`mode="legacy"`): every server released so far speaks it, and
`tools/list_changed` arrives as a plain notification. A server that rejects it as too old is retried with
`mode="auto"` (the 2026 `server/discover` era), where list changes come through `Client.listen()`.

The modules: `_pool` (the pool), `_link` (one server's connection and its respawns), `_call_path` (sending a
request from the caller's task, resending one that never left), `_listing` (paged lists, redacted, digests), `_relisting` (change announcements and the `relist_every` re-listing), `_transports`
(the watched SDK transports), `_failures` (errors as sentences), `_stderr` (stderr forwarding), `_processes` (leftover child
processes), `_events` (what a link reports to the pool), `_asking` (a server's questions and progress, to
the run whose call it is serving); users' own OAuth accounts (`oauth:` servers): `_oauth` (the SDK's OAuth client
with the stored connection), `_accounts` (the pool's side), `_connect` (connect flows waiting for a browser,
revocation), `_login` (`portal-mcp login`'s loopback redirect, the callback page).
"""

from portal_mcp.catalog.status import ServerState, ServerStatus, TransportKind
from portal_mcp.downstream._asking import DECLINED, CallContext, Elicit, Progress
from portal_mcp.downstream._connect import disconnect
from portal_mcp.downstream._events import DownstreamEvent, EventKind
from portal_mcp.downstream._listing import Extras
from portal_mcp.downstream._login import complete_from, login
from portal_mcp.downstream._pool import DownstreamPool
from portal_mcp.downstream._starting import await_starting, unlisted

__all__ = [
    "DECLINED",
    "CallContext",
    "DownstreamEvent",
    "DownstreamPool",
    "Elicit",
    "EventKind",
    "Extras",
    "Progress",
    "ServerState",
    "ServerStatus",
    "TransportKind",
    "await_starting",
    "complete_from",
    "disconnect",
    "login",
    "unlisted",
]
