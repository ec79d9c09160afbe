"""portal-mcp: one MCP server in front of many, exposing `search_api` and `execute_code`.

The names in `__all__` are the face for embedding the portal in an application, kept stable:
```
from portal_mcp import Portal, PortalError, load_config

async with Portal.open(load_config("portal.yaml")) as portal:
    print(portal.search_api("current time in Tokyo"))
```
Everything else is reached through its own module. The errors load with the package; `Portal`, `PortalConfig` and
`load_config` on first use, so importing any submodule does not load the portal (the sandbox worker imports
`portal_mcp.sandbox.worker` with the network stack removed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from portal_mcp.errors import (
    ArgumentError,
    AuditStoreError,
    ConfigError,
    ConnectError,
    ConnectionNeededError,
    DownstreamError,
    LimitError,
    MissingSecretError,
    PolicyDeniedError,
    PortalError,
    ProtocolViolation,
    RunCancelledError,
    RunError,
    SandboxError,
    SearchModelError,
    ServerDownError,
    ServerUnavailableError,
    SnapshotOnlyError,
    TokenRejectedError,
    ToolCallError,
    ToolFailedError,
    ToolTimeoutError,
    TooManyTasksError,
    TooManyWaitingError,
    UnknownRunError,
    UnknownToolError,
    WorkerStartError,
)

if TYPE_CHECKING:
    from portal_mcp.config import PortalConfig, load_config
    from portal_mcp.portal import Portal

__version__ = "0.1.0"

__all__ = [
    "ArgumentError",
    "AuditStoreError",
    "ConfigError",
    "ConnectError",
    "ConnectionNeededError",
    "DownstreamError",
    "LimitError",
    "MissingSecretError",
    "PolicyDeniedError",
    "Portal",
    "PortalConfig",
    "PortalError",
    "ProtocolViolation",
    "RunCancelledError",
    "RunError",
    "SandboxError",
    "SearchModelError",
    "ServerDownError",
    "ServerUnavailableError",
    "SnapshotOnlyError",
    "TokenRejectedError",
    "TooManyTasksError",
    "TooManyWaitingError",
    "ToolCallError",
    "ToolFailedError",
    "ToolTimeoutError",
    "UnknownRunError",
    "UnknownToolError",
    "WorkerStartError",
    "__version__",
    "load_config",
]


def __getattr__(name: str) -> Any:
    """`Portal`, `PortalConfig` and `load_config`, loaded on first use."""
    if name == "Portal":
        from portal_mcp.portal import Portal

        return Portal
    if name in ("PortalConfig", "load_config"):
        from portal_mcp import config

        return getattr(config, name)
    raise AttributeError(f"module 'portal_mcp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
