"""The `execute_code` sandbox: agent code in a restricted worker process, tool calls served by the portal.

`host` is the portal side (`SandboxHost`, `RunResult`); `worker` is the child's entry point; `protocol` the
JSON frames between them; `policy` (the only importer of RestrictedPython) and `facades` what code may do.
Host names are loaded lazily so a worker, which imports this package too, does not pay for anyio.
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
