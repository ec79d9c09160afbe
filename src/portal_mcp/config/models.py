"""The pydantic models of portal.yaml: one frozen model per section, `extra="forbid"` everywhere.

Everything is validated once, at load (`portal_mcp.config.loading`); the rest of the portal trusts these types.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from mcp_types import Tool
from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from portal_mcp.config.auth import AuthConfig
from portal_mcp.config.base import _Model
from portal_mcp.config.http import HttpConfig
from portal_mcp.config.limits import LimitsConfig
from portal_mcp.config.oauth import ConnectionsConfig, OAuthConfig, key_problem
from portal_mcp.config.policy import PolicyConfig
from portal_mcp.config.search import SearchConfig, ServerCuration
from portal_mcp.config.user_refs import keys_needed


@dataclass(frozen=True)
class ToolFilter:
    """Allow/deny lists of tool names (original names, shell-style globs). Deny wins over allow."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()

    def permits(self, tool_name: str) -> bool:
        if any(fnmatch.fnmatchcase(tool_name, pattern) for pattern in self.deny):
            return False
        return not self.allow or any(fnmatch.fnmatchcase(tool_name, pattern) for pattern in self.allow)


class ToolsConfig(_Model):
    """Which of a server's tools enter the catalog (shell-style globs on the original tool names)."""

    allow: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)

    def as_filter(self) -> ToolFilter:
        return ToolFilter(allow=tuple(self.allow), deny=tuple(self.deny))


class AnnotationsOverride(_Model):
    """Corrections to a tool's MCP annotations, which servers send as hints (unset: keep the server's)."""

    read_only: bool | None = None
    destructive: bool | None = None
    idempotent: bool | None = None
    open_world: bool | None = None

    def as_hints(self) -> dict[str, bool]:
        """The set fields under their MCP wire names (`readOnlyHint`, ...)."""
        names = {
            "read_only": "readOnlyHint",
            "destructive": "destructiveHint",
            "idempotent": "idempotentHint",
            "open_world": "openWorldHint",
        }
        return {wire: value for field, wire in names.items() if (value := getattr(self, field)) is not None}


def _interval(value: object) -> object:
    """`off`/`false`/`0` -> 0.0 (never); a number of seconds otherwise."""
    return 0.0 if value in ("off", False, "0", 0) else value


Interval = Annotated[float, BeforeValidator(_interval), Field(ge=0)]
"""Seconds between re-listings; 0 (or `off`) turns them off."""


class _ServerBase(_Model):
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    search: ServerCuration = Field(
        default_factory=ServerCuration, description="keywords, aliases and description overrides for search"
    )
    annotations: dict[str, AnnotationsOverride] = Field(
        default_factory=dict, description="tool name (or glob) -> corrected annotation hints, used by the policy"
    )
    disabled: bool = False
    timeout: float = Field(default=60.0, gt=0, description="seconds one tool call may take")
    connect_timeout: float = Field(default=30.0, gt=0, description="seconds to start and list tools")
    relist_every: Interval | None = Field(
        default=None, description="seconds between re-listings of a server that never announces changes (0/off: none)"
    )
    description: str | None = Field(default=None, description="one line shown in the search overview")
    owner: str | None = Field(default=None, description="who runs this service (searchable as `owner:NAME`)")
    tags: list[str] = Field(default_factory=list, description="labels (searchable as `tag:NAME`)")
    docs: str | None = Field(default=None, description="where to read more (a URL)")
    observe_results: bool = Field(
        default=True,
        description="learn what tools without an outputSchema return (keys and types, never values) from their calls, "
        "and show it as their return type in stubs",
    )


class StdioServerConfig(_ServerBase):
    """A local server the portal starts as a child process and talks to over stdio."""

    kind: Literal["stdio"] = "stdio"
    command: str
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict, repr=False)
    cwd: Path | None = None
    max_restarts: int = Field(default=3, ge=0, description="respawns attempted per failure before giving up")
    list_as: str | None = Field(default=None, description="`${user.KEY}` servers: whose connection lists the tools")
    known_tools: Path | None = Field(
        default=None,
        description="a snapshot file searched until the server has listed its tools once (relative to the config)",
    )
    user_idle_timeout: float = Field(
        default=900.0, gt=0, description="`${user.KEY}` servers: seconds before an idle user's connection is closed"
    )

    def user_keys(self) -> frozenset[str]:
        """The KEYs of the `${user.KEY}` references in `env`: non-empty means one process per calling user."""
        return keys_needed(self.env.values())


class RemoteServerConfig(_ServerBase):
    """A server reached over streamable HTTP (default) or the older SSE transport."""

    kind: Literal["remote"] = "remote"
    url: str
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    type: Literal["http", "sse"] = "http"
    oauth: OAuthConfig | None = Field(default=None, description="each user connects their own account (OAuth 2.1)")
    list_as: str | None = Field(default=None, description="`${user.KEY}` servers: whose connection lists the tools")
    known_tools: Path | None = Field(
        default=None,
        description="a snapshot file searched until the server has listed its tools once (relative to the config)",
    )
    user_idle_timeout: float = Field(
        default=900.0, gt=0, description="`${user.KEY}` servers: seconds before an idle user's connection is closed"
    )

    def user_keys(self) -> frozenset[str]:
        """The KEYs of the `${user.KEY}` references in `headers`: non-empty means one connection per calling user."""
        return keys_needed(self.headers.values())

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"url {value!r} must start with http:// or https://")
        return value


class SnapshotServerConfig(_ServerBase):
    """A saved tools/list snapshot: searchable, stubs exist, tools cannot be called."""

    kind: Literal["snapshot"] = "snapshot"
    snapshot: Path


ServerConfig = Annotated[StdioServerConfig | RemoteServerConfig | SnapshotServerConfig, Field(discriminator="kind")]


class SandboxConfig(_Model):
    """Limits for one `execute_code` run."""

    timeout: float = Field(default=30.0, gt=0, description="wall-clock seconds per run")
    memory_mb: int = Field(default=512, ge=32, description="address-space limit of the worker process")
    cpu_seconds: float = Field(default=10.0, gt=0, description="CPU time per run")
    max_output_bytes: int = Field(
        default=20_000,
        ge=1_000,
        description="printed output kept per run (~5k tokens): past it the start and the end are kept, with a note",
    )
    max_tool_calls: int = Field(default=500, ge=1, description="tool calls allowed per run")
    max_result_bytes: int = Field(default=2_000_000, ge=1_000, description="size of one tool result sent to the code")
    backend: Literal["fork", "spawn"] = Field(
        default="fork",
        description="fork: workers forked from a warm fork server (fast); spawn: a fresh interpreter per run",
    )
    spare_workers: int = Field(
        default=2, ge=0, le=32, description="fork backend: confined workers kept ready for the next runs"
    )
    language: Literal["auto", "open", "strict"] = Field(
        default="auto",
        description="auto: the Python models write where the OS confines the worker's network and files, "
        "the strict subset where it does not; open: always (an operator's choice); strict: always",
    )


ANONYMOUS = "bearer"
"""The user every `http.bearer_tokens` caller is (so no configured user may have this name)."""


class AuditConfig(_Model):
    """Where audit events go: a SQLite file (`sqlite: PATH`) or a PostgreSQL database shared by replicas
    (`postgres: DSN`), at most one of them; otherwise a bounded window in memory."""

    sqlite: Path | None = Field(
        default=None,
        description="SQLite file of the durable audit log, created when the portal starts (relative to the config file's folder)",
    )
    postgres: SecretStr | None = Field(
        default=None,
        description="PostgreSQL DSN (libpq key=value or postgresql:// URL) of an audit log shared by several portals; "
        "tables created on first use; write the password as ${VAR}",
    )

    @model_validator(mode="after")
    def _one_store(self) -> AuditConfig:
        if self.sqlite is not None and self.postgres is not None:
            raise PydanticCustomError(
                "audit_stores",
                "`sqlite` and `postgres` are exclusive: keep `postgres` for a log shared by several portals, "
                "`sqlite` for one",
            )
        return self


class PortalConfig(_Model):
    secrets_file: Path | None = Field(
        default=None, description="YAML mapping NAME: value whose names `${NAME}` can use (relative to the config)"
    )
    servers: dict[str, ServerConfig] = Field(default_factory=dict)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    auth: AuthConfig | None = Field(
        default=None, description="OAuth: tokens from an identity provider (the portal as a resource server)"
    )
    audit: AuditConfig = Field(default_factory=AuditConfig)
    connections: ConnectionsConfig = Field(default_factory=ConnectionsConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    user: str | None = Field(default=None, description="who stdio calls are attributed to (default: the OS user)")
    relist_every: Interval = Field(default=600.0, description="servers' default `relist_every` (seconds; 0/off: none)")
    state_dir: Path | None = Field(
        default=None,
        description="where the portal keeps each server's last tool list (relative to the config; default: "
        "$PORTAL_MCP_STATE_DIR, else $XDG_STATE_HOME/portal-mcp, else ~/.local/state/portal-mcp)",
    )
    source: str | None = Field(default=None, exclude=True)
    substituted_secrets: frozenset[str] = Field(default=frozenset(), exclude=True, repr=False)
    """Values that came from the secrets file, or from `${VAR}` in headers, env or `http`: all get redacted."""

    @model_validator(mode="after")
    def _connections_key(self) -> PortalConfig:
        stored = sorted(name for name, oauth in self.oauth_servers().items() if oauth.token_exchange is None)
        if (problem := key_problem(self.connections, stored)) is not None:
            raise PydanticCustomError("connections_key", problem)
        exchanging = sorted(name for name, oauth in self.oauth_servers().items() if oauth.token_exchange is not None)
        if exchanging and (self.auth is None or self.auth.issuer is None):
            raise PydanticCustomError(
                "token_exchange",
                f"servers {', '.join(exchanging)} use `oauth.token_exchange`, which exchanges the access token callers "
                "sign in to the portal with: add `auth: {issuer: ..., resource: ...}` (docs/oauth.md)",
            )
        return self

    def oauth_servers(self) -> dict[str, OAuthConfig]:
        """Enabled remote servers each user connects their own account to (`oauth:`), by name."""
        return {
            name: server.oauth
            for name, server in self.servers.items()
            if isinstance(server, RemoteServerConfig) and server.oauth is not None and not server.disabled
        }

    def user_secrets(self) -> dict[str, dict[str, str]]:
        """User name -> that user's secrets, in config order."""
        return {name: dict(user.secrets) for name, user in self.http.users.items()}

    def secret_values(self) -> set[str]:
        """Every value the portal must never show: what `Redactor` takes out of replies, logs and errors."""
        values = set(self.substituted_secrets) | set(self.http.bearer_tokens)
        for user in self.http.users.values():
            if user.token is not None:
                values.add(user.token)
            values.update(user.secrets.values())
        if self.auth is not None and self.auth.introspection is not None:
            values.add(self.auth.introspection.client_secret.get_secret_value())
        if self.connections.key is not None:
            values.add(self.connections.key.get_secret_value())
        for oauth in self.oauth_servers().values():
            if oauth.client_secret is not None:
                values.add(oauth.client_secret.get_secret_value())
            if oauth.token_exchange is not None:
                values.add(oauth.token_exchange.client_secret.get_secret_value())
        return {value for value in values if value}

    def state_folder(self, environ: Mapping[str, str]) -> Path:
        """The portal's state folder: `state_dir`, else $PORTAL_MCP_STATE_DIR, else $XDG_STATE_HOME/portal-mcp, else
        ~/.local/state/portal-mcp."""
        if self.state_dir is not None:
            return self.state_dir
        if environ.get("PORTAL_MCP_STATE_DIR"):
            return Path(environ["PORTAL_MCP_STATE_DIR"]).expanduser()
        if environ.get("XDG_STATE_HOME"):
            return Path(environ["XDG_STATE_HOME"]).expanduser() / "portal-mcp"
        return Path.home() / ".local" / "state" / "portal-mcp"

    def enabled_servers(self) -> dict[str, StdioServerConfig | RemoteServerConfig | SnapshotServerConfig]:
        return {name: server for name, server in self.servers.items() if not server.disabled}

    def unobserved(self, server: str) -> bool:
        """Whether the shapes of `server`'s results are not to be learned (`observe_results: false`)."""
        config = self.servers.get(server)
        return config is not None and not config.observe_results

    def curated(self, server: str, tools: Sequence[Tool]) -> list[Tool]:
        """A server's tools as search and stubs show them (`servers.NAME.search.tools.TOOL.description`)."""
        config = self.servers.get(server)
        return config.search.apply(tools) if config is not None else list(tools)

    def tool_filters(self) -> dict[str, ToolFilter]:
        return {name: server.tools.as_filter() for name, server in self.servers.items()}
