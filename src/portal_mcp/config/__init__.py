"""portal.yaml: pydantic models, `${VAR}` interpolation and error messages that point at the line.

`load_config(path)` accepts the portal's YAML (`servers:`) and the `mcpServers` JSON of Claude Desktop / Cursor /
Claude Code (same keys). Everything is validated here, once; the rest of the portal trusts these types.

The modules: `models` (the pydantic models), `parsing` (YAML with key lines, `${VAR}` interpolation, errors as
sentences), `secrets` (`secrets_file` and `${user.KEY}` checks), `checks` (policy names, reserved user names), `loading` (load/parse,
the `mcpServers` JSON, `import_as_yaml`, the bundled config); public names are re-exported here.
"""

from portal_mcp.config.auth import AuthConfig, IntrospectionConfig, TrustedProxyConfig
from portal_mcp.config.http import REPLICA_ID, HttpConfig, HttpUser, ReplicaConfig, is_loopback
from portal_mcp.config.limits import HttpLimitsConfig, LimitsConfig
from portal_mcp.config.loading import (
    builtin_variables,
    bundled_config_path,
    bundled_schemas_dir,
    import_as_yaml,
    load_config,
    parse_config,
)
from portal_mcp.config.models import (
    ANONYMOUS,
    AnnotationsOverride,
    AuditConfig,
    PortalConfig,
    RemoteServerConfig,
    SandboxConfig,
    ServerConfig,
    SnapshotServerConfig,
    StdioServerConfig,
    ToolFilter,
    ToolsConfig,
)
from portal_mcp.config.oauth import CONNECT_WAIT
from portal_mcp.config.policy import Approve, PolicyConfig, PolicyRule
from portal_mcp.config.search import SearchConfig

__all__ = [
    "ANONYMOUS",
    "CONNECT_WAIT",
    "REPLICA_ID",
    "AnnotationsOverride",
    "Approve",
    "AuditConfig",
    "AuthConfig",
    "HttpConfig",
    "HttpLimitsConfig",
    "HttpUser",
    "IntrospectionConfig",
    "LimitsConfig",
    "PolicyConfig",
    "PolicyRule",
    "PortalConfig",
    "RemoteServerConfig",
    "ReplicaConfig",
    "SandboxConfig",
    "SearchConfig",
    "ServerConfig",
    "SnapshotServerConfig",
    "StdioServerConfig",
    "ToolFilter",
    "ToolsConfig",
    "TrustedProxyConfig",
    "builtin_variables",
    "bundled_config_path",
    "bundled_schemas_dir",
    "import_as_yaml",
    "is_loopback",
    "load_config",
    "parse_config",
]
