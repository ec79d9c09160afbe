"""portal.yaml: pydantic models, `${VAR}` interpolation and error messages that point at the line.

`load_config(path)` accepts the portal's YAML (`servers:`) and the `mcpServers` JSON of Claude Desktop / Cursor /
Claude Code (same keys). Everything is validated here, once; the rest of the portal trusts these types.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import stat
import sys
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from portal_mcp.catalog import ToolFilter
from portal_mcp.credentials import SECRET_NAME, USER_REF, first_user_with, keys_needed, missing_keys
from portal_mcp.errors import ConfigError
from portal_mcp.naming import SERVER_NAME_PATTERN, python_name

_VAR = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
logger = logging.getLogger("portal_mcp.config")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class _ServerBase(_Model):
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    annotations: dict[str, AnnotationsOverride] = Field(
        default_factory=dict, description="tool name (or glob) -> corrected annotation hints, used by the policy"
    )
    disabled: bool = False
    timeout: float = Field(default=60.0, gt=0, description="seconds one tool call may take")
    connect_timeout: float = Field(default=30.0, gt=0, description="seconds to start and list tools")
    description: str | None = Field(default=None, description="one line shown in the search overview")
    owner: str | None = Field(default=None, description="who runs this service (searchable as `owner:NAME`)")
    tags: list[str] = Field(default_factory=list, description="labels (searchable as `tag:NAME`)")
    docs: str | None = Field(default=None, description="where to read more (a URL)")


class StdioServerConfig(_ServerBase):
    """A local server the portal starts as a child process and talks to over stdio."""

    kind: Literal["stdio"] = "stdio"
    command: str
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict, repr=False)
    cwd: Path | None = None
    max_restarts: int = Field(default=3, ge=0, description="respawns attempted per failure before giving up")
    list_as: str | None = Field(default=None, description="`${user.KEY}` servers: whose connection lists the tools")
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
    list_as: str | None = Field(default=None, description="`${user.KEY}` servers: whose connection lists the tools")
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
    max_output_bytes: int = Field(default=64_000, ge=1_000, description="printed output kept per run")
    max_tool_calls: int = Field(default=500, ge=1, description="tool calls allowed per run")
    max_result_bytes: int = Field(default=2_000_000, ge=1_000, description="size of one tool result sent to the code")
    backend: Literal["fork", "spawn"] = Field(
        default="fork",
        description="fork: workers forked from a warm fork server (fast); spawn: a fresh interpreter per run",
    )
    spare_workers: int = Field(
        default=2, ge=0, le=32, description="fork backend: confined workers kept ready for the next runs"
    )


class HttpUser(_Model):
    """A user: an HTTP caller known by their bearer token (write it as `${VAR}`, never inline), their groups (for
    the policy) and their own downstream secrets. A user without a token (e.g. the stdio `user:`) has no HTTP access."""

    token: str | None = Field(
        default=None, repr=False, description="none: the user cannot call over HTTP (e.g. the stdio `user:`)"
    )
    groups: list[str] = Field(default_factory=list)
    secrets: dict[str, str] = Field(
        default_factory=dict,
        repr=False,
        description="KEY -> this user's downstream credential, used where a server's headers/env say `${user.KEY}`",
    )

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not SECRET_NAME.fullmatch(key):
                raise ValueError(f"secret name {key!r} must be a letter or _ followed by letters, digits or _")
        return value


REPLICA_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""A replica's name: it prefixes the approval tokens the replica hands out (`r1.<random>`), so it has no dot."""


class ReplicaConfig(_Model):
    """This portal among several replicas behind a load balancer: an approval answer (a 2026-07-28 retry) that
    reaches a replica other than the one whose run asked is forwarded to that one, at the address listed here."""

    id: str | None = Field(
        default=None,
        description="this replica's name; replicas share one config, so usually `serve --replica-id` or "
        "PORTAL_REPLICA_ID instead",
    )
    peers: dict[str, str] = Field(
        default_factory=dict,
        description="replica name -> base URL its portal serves at (`http://10.0.0.1:8000`, `/mcp` is added), "
        "every replica including this one; only these are ever forwarded to",
    )

    @field_validator("id")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        if value is not None and not REPLICA_ID.fullmatch(value):
            raise ValueError(f"replica id {value!r} must be 1-64 letters, digits, - or _")
        return value

    @field_validator("peers")
    @classmethod
    def _peers(cls, value: dict[str, str]) -> dict[str, str]:
        peers = {}
        for name, url in value.items():
            if not REPLICA_ID.fullmatch(name):
                raise ValueError(f"peer name {name!r} must be 1-64 letters, digits, - or _ (a replica id)")
            if not re.fullmatch(r"https?://[^/?#@\s]+(/[^?#\s]*)?", url):
                raise ValueError(f"peer {name!r}: {url!r} must be an http:// or https:// base URL (no query or user)")
            url = url.rstrip("/")
            if url.endswith("/mcp"):
                raise ValueError(f"peer {name!r}: give the replica's base URL without `/mcp` ({url[:-4]!r})")
            peers[name] = url
        return peers

    @model_validator(mode="after")
    def _known_id(self) -> ReplicaConfig:
        if self.id is not None and self.peers and self.id not in self.peers:
            raise PydanticCustomError(
                "replica_id",
                f"replica id {self.id!r} is not one of `peers` ({', '.join(sorted(self.peers))}): list every "
                "replica, this one included",
            )
        return self


class HttpConfig(_Model):
    """The portal's own streamable HTTP endpoint."""

    bearer_tokens: list[str] = Field(
        default_factory=list,
        repr=False,
        description="tokens of anonymous callers (user 'bearer'); some token is required off loopback",
    )
    users: dict[str, HttpUser] = Field(default_factory=dict, description="user name -> token: who each caller is")
    allowed_hosts: list[str] = Field(default_factory=list, description="extra Host headers (DNS rebinding guard)")
    allowed_origins: list[str] = Field(default_factory=list, description="extra Origin values (DNS rebinding guard)")
    stateless: bool = Field(
        default=False,
        description="no MCP sessions: any replica can serve any request (no log notifications or elicitation)",
    )
    replica: ReplicaConfig = Field(
        default_factory=ReplicaConfig,
        description="several replicas: this one's id and every replica's URL, to forward approval answers",
    )


class AuditConfig(_Model):
    """Where audit events go: a SQLite file (`sqlite: PATH`) or a PostgreSQL database shared by replicas
    (`postgres: DSN`), at most one of them; otherwise a bounded window in memory."""

    sqlite: Path | None = Field(
        default=None,
        description="SQLite file of the durable audit log, created on first use (relative to the config file's folder)",
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


Approve = Literal["never", "destructive", "always"]


class PolicyRule(_Model):
    """What one block of the policy says; unset fields leave the decision to a less specific block.

    Patterns are `server.tool` shell-style globs on the tool's original or Python name; a bare `server` means
    all of its tools.
    """

    allow: list[str] = Field(default_factory=list, description="only these tools (union over the blocks that apply)")
    deny: list[str] = Field(default_factory=list, description="never these tools (any block's deny wins)")
    read_only: bool | None = Field(default=None, description="only tools annotated read-only")
    approve: Approve | None = Field(
        default=None, description="ask the user (MCP elicitation) before destructive calls, or before every call"
    )
    runs_per_minute: int | None = Field(default=None, ge=1, description="execute_code runs per user per minute")
    calls_per_run: int | None = Field(default=None, ge=1, description="tool calls one run may make")


class PolicyConfig(_Model):
    """Who may call which tools, and how. A user's rules: `users.NAME`, else their `groups`, else `default`."""

    default: PolicyRule = Field(default_factory=PolicyRule)
    groups: dict[str, PolicyRule] = Field(default_factory=dict)
    users: dict[str, PolicyRule] = Field(default_factory=dict)
    approval_timeout: float = Field(default=300.0, gt=0, description="seconds to wait for the user's answer")


class PortalConfig(_Model):
    secrets_file: Path | None = Field(
        default=None, description="YAML mapping NAME: value whose names `${NAME}` can use (relative to the config)"
    )
    servers: dict[str, ServerConfig] = Field(default_factory=dict)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    user: str | None = Field(default=None, description="who stdio calls are attributed to (default: the OS user)")
    source: str | None = Field(default=None, exclude=True)
    substituted_secrets: frozenset[str] = Field(default=frozenset(), exclude=True, repr=False)
    """Values that came from the secrets file, or from `${VAR}` in headers, env or `http`: all get redacted."""

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
        return {value for value in values if value}

    def enabled_servers(self) -> dict[str, StdioServerConfig | RemoteServerConfig | SnapshotServerConfig]:
        return {name: server for name, server in self.servers.items() if not server.disabled}

    def tool_filters(self) -> dict[str, ToolFilter]:
        return {name: server.tools.as_filter() for name, server in self.servers.items()}


def bundled_schemas_dir() -> Path:
    """The bundled snapshot folder: packaged in a wheel, or `schemas/` at the repository root."""
    packaged = Path(str(resources.files("portal_mcp"))) / "_bundled" / "schemas"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "schemas"


def bundled_config_path() -> Path:
    """The default config served when no `--config` is given."""
    return Path(str(resources.files("portal_mcp"))) / "default.yaml"


def builtin_variables() -> dict[str, str]:
    """Variables every config may use, besides the environment."""
    return {"PORTAL_PYTHON": sys.executable, "PORTAL_SCHEMAS": str(bundled_schemas_dir())}


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> PortalConfig:
    """Read, interpolate and validate a config file; `None` loads the bundled default."""
    file = Path(path) if path is not None else bundled_config_path()
    source = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found; pass an existing file to --config", source=source) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror}", source=source) from None
    variables = {**builtin_variables(), **(os.environ if environ is None else environ)}
    return parse_config(text, source=source, base_dir=file.resolve().parent, environ=variables)


def parse_config(text: str, *, source: str, base_dir: Path, environ: Mapping[str, str]) -> PortalConfig:
    """Validate config text (YAML or JSON). Every problem becomes a `ConfigError` naming the place."""
    node, data = _parse_yaml(text, source)
    lines = _key_lines(node) if node is not None else {}
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping with a `servers:` key", source=source, line=1)

    data, lines = _normalise_root(data, lines, source)
    data = dict(data)
    secrets: dict[str, str] = {}
    if data.get("secrets_file") is not None:
        secrets_path = _secrets_path(data["secrets_file"], environ, base_dir, source, lines.get(("secrets_file",)))
        secrets = _read_secrets(secrets_path, source, lines.get(("secrets_file",)))
        data["secrets_file"] = str(secrets_path)
    captured = set(secrets.values())
    data = _interpolate(data, _Variables(environ, secrets), (), lines, source, captured)
    servers = data.get("servers")
    if servers is None:
        servers = data["servers"] = {}
    if not isinstance(servers, dict):
        raise ConfigError(
            "`servers` must be a mapping of server name to settings", source=source, line=lines.get(("servers",))
        )
    for name, server in list(servers.items()):
        if not isinstance(server, dict):
            raise ConfigError(
                f"server {name!r}: settings must be a mapping", source=source, line=lines.get(("servers", name))
            )
        servers[name] = _classify_server(str(name), server, base_dir, source, lines)
    audit = data.get("audit")
    if isinstance(audit, dict) and isinstance(audit.get("sqlite"), str):
        data["audit"] = {**audit, "sqlite": str(base_dir / Path(audit["sqlite"]).expanduser())}
    _check_user_ref_places(data, (), source, lines)
    try:
        config = PortalConfig.model_validate({**data, "source": source, "substituted_secrets": frozenset(captured)})
    except ValidationError as exc:
        raise _config_error(exc, source, lines) from None
    _check_policy(config, source, lines)
    return _resolve_listing_users(config, source, lines)


class _Variables(Mapping[str, str]):
    """What `${NAME}` can name: the environment (builtins included) first, then the secrets file."""

    def __init__(self, environ: Mapping[str, str], secrets: Mapping[str, str]) -> None:
        self._environ = environ
        self._secrets = secrets

    def __contains__(self, key: object) -> bool:
        return key in self._environ or key in self._secrets

    def __getitem__(self, key: str) -> str:
        if key in self._environ:
            return self._environ[key]
        return self._secrets[key]

    def __iter__(self) -> Iterator[str]:
        return iter({**dict.fromkeys(self._secrets), **dict.fromkeys(self._environ)})

    def __len__(self) -> int:
        return len(set(self._environ) | set(self._secrets))


def _secrets_path(raw: Any, environ: Mapping[str, str], base_dir: Path, source: str, line: int | None) -> Path:
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError("`secrets_file` must be a path (a string) to a YAML file", source=source, line=line)
    expanded = _interpolate(raw, environ, ("secrets_file",), {("secrets_file",): line} if line else {}, source, set())
    return base_dir / Path(expanded).expanduser()


def _read_secrets(path: Path, source: str, line: int | None) -> dict[str, str]:
    """The secrets file: a YAML mapping NAME: string. Its values never appear in an error message."""
    try:
        info = path.stat()
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"secrets_file {str(path)!r} does not exist; create it (a YAML mapping `NAME: value`, then "
            "`chmod 600` it) or fix the path (relative paths start at the config file's folder)",
            source=source,
            line=line,
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read secrets_file {str(path)!r}: {exc.strerror}", source=source, line=line) from None
    where = str(path)
    if os.name == "posix":
        if info.st_mode & stat.S_IWOTH:
            raise ConfigError(
                f"secrets_file {where!r} is writable by every user of this machine, who could swap the credentials; "
                f"run `chmod 600 {where}`",
                source=source,
                line=line,
            )
        if info.st_mode & (stat.S_IRGRP | stat.S_IROTH | stat.S_IWGRP):
            logger.warning(
                "secrets_file %r can be read by other users (mode %s); run `chmod 600 %s`",
                where,
                oct(stat.S_IMODE(info.st_mode)),
                where,
            )
    node, data = _parse_yaml(text, where)
    lines = _key_lines(node) if node is not None else {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("a secrets file must be a YAML mapping of `NAME: value`", source=where, line=1)
    for key, value in data.items():
        key_line = lines.get((key,))
        if not isinstance(key, str) or not SECRET_NAME.fullmatch(key):
            raise ConfigError(
                f"secret name {key!r} must be a letter or _ followed by letters, digits or _ (it is used as `${{NAME}}`)",
                source=where,
                line=key_line,
            )
        if not isinstance(value, str):
            raise ConfigError(
                f"secret {key!r} must be a string, not {type(value).__name__}; quote it (`{key}: '...'`)",
                source=where,
                line=key_line,
            )
    return dict(data)


def _user_ref_place(path: tuple[Any, ...], data: Mapping[str, Any]) -> bool:
    """True where `${user.KEY}` may stand: a value in a remote server's `headers` or a stdio server's `env`."""
    if len(path) != 4 or path[0] != "servers":
        return False
    server = data.get("servers", {}).get(path[1])
    kind = server.get("kind") if isinstance(server, dict) else None
    return (kind, path[2]) in (("remote", "headers"), ("stdio", "env"))


def _check_user_ref_places(
    value: Any, path: tuple[Any, ...], source: str, lines: Mapping[tuple[Any, ...], int], root: Any = None
) -> Any:
    """Refuse `${user.KEY}` outside headers/env (in place: a `$${user.KEY}` there becomes a literal `${user.KEY}`)."""
    root = value if root is None else root
    if isinstance(value, dict):
        for key, item in value.items():
            value[key] = _check_user_ref_places(item, (*path, key), source, lines, root)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            value[i] = _check_user_ref_places(item, (*path, i), source, lines, root)
    elif isinstance(value, str) and USER_REF.search(value) and not _user_ref_place(path, root):
        for match in USER_REF.finditer(value):
            if not match.group(1):
                where = ".".join(str(p) for p in path)
                raise ConfigError(
                    f"`${{user.{match.group(2)}}}` in {where}: a user's secret can only be used in a remote server's "
                    "`headers` or a stdio server's `env` values (command lines, urls and the rest are visible to "
                    "other users and in logs); write `$${user...}` for a literal",
                    source=source,
                    line=_nearest_line(path, lines),
                )
        return USER_REF.sub(lambda match: match.group(0)[1:], value)
    return value


def _resolve_listing_users(config: PortalConfig, source: str, lines: Mapping[tuple[Any, ...], int]) -> PortalConfig:
    """Check every `${user.KEY}` against the users' secrets and settle whose connection lists each such server."""
    users = config.user_secrets()
    servers: dict[str, Any] = {}
    for name, server in config.servers.items():
        servers[name] = server
        if isinstance(server, SnapshotServerConfig):
            continue
        needed = server.user_keys()
        line = lines.get(("servers", name))
        if not needed:
            if server.list_as is not None:
                raise ConfigError(
                    f"server {name!r}: `list_as` only applies to servers whose headers/env use `${{user.KEY}}`; "
                    "remove it",
                    source=source,
                    line=lines.get(("servers", name, "list_as"), line),
                )
            continue
        if server.disabled:
            continue
        for key in sorted(needed):
            if not any(secrets.get(key) for secrets in users.values()):
                raise ConfigError(
                    f"server {name!r} uses `${{user.{key}}}` but no user has the secret {key!r}; add it to "
                    f"`http.users.NAME.secrets` (e.g. `{key}: ${{NAME_{key}}}`) for the users who call this server",
                    source=source,
                    line=line,
                )
        listing = server.list_as
        if listing is not None:
            if listing not in users:
                known = ", ".join(users) or "none"
                raise ConfigError(
                    f"server {name!r}: `list_as: {listing}` is not a user in `http.users` (users: {known})",
                    source=source,
                    line=lines.get(("servers", name, "list_as"), line),
                )
            missing = missing_keys(needed, users[listing])
            if missing:
                raise ConfigError(
                    f"server {name!r}: `list_as: {listing}` lacks the secret(s) {', '.join(missing)} the server needs; "
                    f"add them to `http.users.{listing}.secrets` or list as another user",
                    source=source,
                    line=lines.get(("servers", name, "list_as"), line),
                )
        else:
            listing = first_user_with(needed, users)
            if listing is None:
                raise ConfigError(
                    f"server {name!r} needs the secrets {', '.join(sorted(needed))}, and no single user has all of "
                    "them, so no connection can list its tools; give one user all of them (and `list_as:` that user)",
                    source=source,
                    line=line,
                )
            servers[name] = server.model_copy(update={"list_as": listing})
    return config.model_copy(update={"servers": servers})


def _check_policy(config: PortalConfig, source: str, lines: Mapping[tuple[Any, ...], int]) -> None:
    """Names in the policy must exist: a misspelt user, group or server would silently apply to no one."""
    policy = config.policy
    users = set(config.http.users) | ({config.user} if config.user else set())
    groups = {group for user in config.http.users.values() for group in user.groups}
    for name in policy.users:
        if name not in users:
            raise ConfigError(
                f"`policy.users` names {name!r}, who is neither in `http.users` nor the stdio `user:`; "
                "fix the name or add the user",
                source=source,
                line=lines.get(("policy", "users", name)),
            )
    for name in policy.groups:
        if name not in groups:
            known = ", ".join(sorted(groups)) or "none"
            raise ConfigError(
                f"`policy.groups` names {name!r}, but no user in `http.users` has that group (groups: {known})",
                source=source,
                line=lines.get(("policy", "groups", name)),
            )
    blocks: list[tuple[tuple[str, ...], PolicyRule]] = [(("policy", "default"), policy.default)]
    blocks += [(("policy", "groups", name), rule) for name, rule in policy.groups.items()]
    blocks += [(("policy", "users", name), rule) for name, rule in policy.users.items()]
    for path, rule in blocks:
        for key in ("allow", "deny"):
            for pattern in getattr(rule, key):
                server = pattern.split(".", 1)[0]
                if not any(mark in server for mark in "*?[") and server not in config.servers:
                    raise ConfigError(
                        f"`{'.'.join(path)}.{key}` pattern {pattern!r} names no configured server "
                        f"(servers: {', '.join(config.servers) or 'none'}); patterns are `server.tool` globs",
                        source=source,
                        line=_nearest_line((*path, key), lines),
                    )


def _parse_yaml(text: str, source: str) -> tuple[yaml.Node | None, Any]:
    """The document's node tree (for line numbers) and its data. A syntax error names the problem and the line,
    never the text around it (a secrets file's line holds a secret)."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader), yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"YAML syntax error: {problem}", source=source, line=line) from None
    except yaml.YAMLError:
        raise ConfigError("YAML error: the file is not valid YAML", source=source) from None


def _normalise_root(
    data: dict[str, Any], lines: dict[tuple[Any, ...], int], source: str
) -> tuple[dict[str, Any], dict[tuple[Any, ...], int]]:
    """Accept `mcpServers` (Claude Desktop / Cursor JSON) as `servers`, sanitising names into identifiers."""
    if "mcpServers" not in data:
        servers = data.get("servers")
        if isinstance(servers, dict):
            for name in servers:
                if not isinstance(name, str) or not re.match(SERVER_NAME_PATTERN, name):
                    raise ConfigError(
                        f"server name {name!r} is not a Python identifier (it is the namespace agent code uses); "
                        f"rename it, e.g. to {python_name(str(name))!r}",
                        source=source,
                        line=lines.get(("servers", name)),
                    )
        return data, lines
    if "servers" in data:
        raise ConfigError(
            "use either `servers` or `mcpServers`, not both", source=source, line=lines.get(("mcpServers",))
        )
    data = dict(data)
    raw = data.pop("mcpServers")
    if not isinstance(raw, dict):
        raise ConfigError(
            "`mcpServers` must be a mapping of server name to settings", source=source, line=lines.get(("mcpServers",))
        )
    renamed: dict[str, Any] = {}
    new_lines = {k: v for k, v in lines.items() if not k or k[0] != "mcpServers"}
    for name, server in raw.items():
        ident = python_name(str(name)) if not re.match(SERVER_NAME_PATTERN, str(name)) else str(name)
        if ident in renamed:
            raise ConfigError(f"server names {name!r} and another both become {ident!r}; rename one", source=source)
        renamed[ident] = server
        for key, line in lines.items():
            if key[:2] == ("mcpServers", name):
                new_lines[("servers", ident, *key[2:])] = line
    data["servers"] = renamed
    return data, new_lines


def _classify_server(
    name: str, server: dict[str, Any], base_dir: Path, source: str, lines: dict[tuple[Any, ...], int]
) -> dict[str, Any]:
    """Decide stdio / remote / snapshot from the keys present, and resolve relative paths."""
    line = lines.get(("servers", name))
    kinds = [key for key in ("command", "url", "snapshot") if key in server]
    if len(kinds) > 1:
        both = " and ".join(f"`{k}`" for k in kinds)
        raise ConfigError(
            f"server {name!r} has both {both}; a server is a local command, a remote url or a snapshot file, so keep one",
            source=source,
            line=line,
        )
    if not kinds:
        raise ConfigError(
            f"server {name!r} needs one of `command` (local process), `url` (remote server) or `snapshot` (saved tool list)",
            source=source,
            line=line,
        )
    server = dict(server)
    kind = kinds[0]
    transport = server.get("type")
    if kind == "command":
        if transport in ("stdio", None):
            server.pop("type", None)
        else:
            raise ConfigError(
                f"server {name!r}: `type: {transport}` does not go with `command` (use `type: stdio` or drop it)",
                source=source,
                line=line,
            )
        server["kind"] = "stdio"
        command = server.get("command")
        if isinstance(command, str) and ("/" in command or "\\" in command) and not Path(command).is_absolute():
            server["command"] = str((base_dir / command).resolve())
        if isinstance(server.get("cwd"), str):
            server["cwd"] = str((base_dir / server["cwd"]).resolve())
    elif kind == "url":
        # Claude Code / VS Code spell streamable HTTP as `streamable-http` or `http`.
        if transport in ("streamable-http", "streamableHttp", "streamable_http", None):
            server["type"] = "http"
        server["kind"] = "remote"
    else:
        server["kind"] = "snapshot"
        snapshot = server.get("snapshot")
        if isinstance(snapshot, str):
            path = (base_dir / snapshot).resolve()
            if not path.is_file():
                raise ConfigError(
                    f"server {name!r}: snapshot file {str(path)!r} does not exist; capture one with "
                    "`portal-mcp snapshot --config FILE --out DIR` or fix the path (relative paths start at the config file's folder)",
                    source=source,
                    line=lines.get(("servers", name, "snapshot"), line),
                )
            server["snapshot"] = str(path)
    return server


def _interpolate(
    value: Any,
    environ: Mapping[str, str],
    path: tuple[Any, ...],
    lines: Mapping[tuple[Any, ...], int],
    source: str,
    captured: set[str],
) -> Any:
    """Expand `${VAR}` and `${VAR:-default}` in every string; `$${VAR}` is a literal `${VAR}`.

    Values substituted into credential places (server `headers` and `env`, the `http` section) are added to
    `captured`, so they can be redacted. `${user.KEY}` does not match (the dot): it is resolved per call.
    """
    if isinstance(value, str):

        def expand(match: re.Match[str]) -> str:
            escaped, var, default = match.group(1), match.group(2), match.group(3)
            if escaped:
                return match.group(0)[1:]
            if var in environ:
                found = environ[var]
            elif default is not None:
                found = default
            else:
                where = ".".join(str(p) for p in path) or "config"
                raise ConfigError(
                    f"environment variable {var!r} (used in {where}) is not set (neither in the environment nor in "
                    f"`secrets_file`); set it, or write `${{{var}:-default}}`",
                    source=source,
                    line=_nearest_line(path, lines),
                )
            if _credential_place(path):
                captured.add(found)
            return found

        return _VAR.sub(expand, value)
    if isinstance(value, dict):
        return {key: _interpolate(item, environ, (*path, key), lines, source, captured) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item, environ, (*path, i), lines, source, captured) for i, item in enumerate(value)]
    return value


def _credential_place(path: tuple[Any, ...]) -> bool:
    return path[:2] in (("http", "bearer_tokens"), ("http", "users")) or (
        len(path) >= 3 and path[0] in ("servers", "mcpServers") and path[2] in ("headers", "env")
    )


def _key_lines(node: yaml.Node, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """Map every key path in the YAML document to its 1-based line, so errors can point at it."""
    found: dict[tuple[Any, ...], int] = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*path, key_node.value)
            found.update(_key_lines(value_node, key))
            found[key] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found.update(_key_lines(item, (*path, i)))
    return found


def _nearest_line(path: tuple[Any, ...], lines: Mapping[tuple[Any, ...], int]) -> int | None:
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return None


def _config_error(exc: ValidationError, source: str, lines: Mapping[tuple[Any, ...], int]) -> ConfigError:
    """Turn pydantic's first error into one sentence naming the key (and server) at fault."""
    error = exc.errors()[0]
    loc = tuple(part for part in error["loc"] if part not in ("stdio", "remote", "snapshot"))
    line = _nearest_line(loc, lines)
    subject = _describe(loc)
    if error["type"] == "extra_forbidden":
        key = loc[-1]
        owner = _describe(loc[:-1])
        message = f"unknown key {key!r} in {owner}; check the spelling (see the portal.yaml reference in the README)"
    elif error["type"] == "missing":
        message = f"{subject} is required"
    else:
        message = f"{subject}: {error['msg']}"
    more = len(exc.errors()) - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ConfigError(message, source=source, line=line)


def _describe(loc: tuple[Any, ...]) -> str:
    if len(loc) >= 2 and loc[0] == "servers":
        rest = ".".join(str(p) for p in loc[2:])
        return f"server {loc[1]!r}" + (f" key {rest!r}" if rest else "")
    if not loc:
        return "the top level"
    return "key " + repr(".".join(str(p) for p in loc))


class _AnyVariable(dict[str, str]):
    """An environment in which every variable is set, so `import` can validate without expanding anything."""

    def __contains__(self, key: object) -> bool:
        return True

    def __missing__(self, key: str) -> str:
        return "x"


def import_as_yaml(path: Path) -> str:
    """Render an `mcpServers` JSON file (or a portal.yaml) as portal.yaml, keeping `${VAR}` references as written."""
    source = str(path)
    text = path.read_text(encoding="utf-8")
    # Validate first (all variables count as set) so a broken file fails here with the usual messages.
    parse_config(
        text, source=source, base_dir=path.resolve().parent, environ=_AnyVariable({**builtin_variables(), **os.environ})
    )
    data = yaml.safe_load(text) or {}
    servers = data.get("mcpServers", data.get("servers", {}))
    body: dict[str, Any] = {"servers": {}}
    for name, server in servers.items():
        server = dict(server)
        if server.get("type") in ("stdio", "streamable-http", "streamableHttp", "streamable_http") or (
            server.get("type") == "http" and "url" in server
        ):
            server.pop("type")
        ident = name if re.match(SERVER_NAME_PATTERN, str(name)) else python_name(str(name))
        body["servers"][ident] = server
    for key in ("sandbox", "http", "audit", "policy", "user"):
        if key in data:
            body[key] = data[key]
    return yaml.safe_dump(body, sort_keys=False, allow_unicode=True)


def is_loopback(host: str) -> bool:
    """True when `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
