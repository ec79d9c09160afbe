"""The `execute_code` sandbox: agent code in a confined, single-use worker process, tool calls served by the portal.

Portal side: `host` (`SandboxHost`, `RunResult`: one session per run, limits, frame validation), `launcher`
(where workers come from: the fork server and its spares, or a spawned interpreter) and `channel` (the
socket I/O). Worker side: `zygote` (the fork server), `worker` (one run), `confine` (rlimits and the kernel
layers), `policy` (the only importer of RestrictedPython) and `facades` (what code may import). `protocol`
is the JSON frames between them. Host names are loaded lazily so a worker, which imports this package too,
does not pay for anyio. The threat model and the layers: `docs/sandbox.md`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from portal_mcp.sandbox.host import RunResult, SandboxHost, ToolCaller

__all__ = ["RunResult", "SandboxHost", "ToolCaller"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from portal_mcp.sandbox import host

        return getattr(host, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
