"""portal.yaml: pydantic models, `${VAR}` interpolation and error messages that point at the line.

`load_config(path)` accepts the portal's YAML (`servers:`) and the `mcpServers` JSON of Claude Desktop / Cursor /
Claude Code (same keys). Everything is validated here, once; the rest of the portal trusts these types.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from portal_mcp.catalog import ToolFilter
from portal_mcp.errors import ConfigError
from portal_mcp.naming import SERVER_NAME_PATTERN, python_name

_VAR = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


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
    env: dict[str, str] = Field(default_factory=dict)
    cwd: Path | None = None
    max_restarts: int = Field(default=3, ge=0, description="respawns attempted per failure before giving up")


class RemoteServerConfig(_ServerBase):
    """A server reached over streamable HTTP (default) or the older SSE transport."""

    kind: Literal["remote"] = "remote"
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    type: Literal["http", "sse"] = "http"

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
    """A caller of the HTTP endpoint, known by its bearer token (write it as `${VAR}`, never inline)."""

    token: str
    groups: list[str] = Field(default_factory=list)


class HttpConfig(_Model):
    """The portal's own streamable HTTP endpoint."""

    bearer_tokens: list[str] = Field(
        default_factory=list,
        description="tokens of anonymous callers (user 'bearer'); some token is required off loopback",
    )
    users: dict[str, HttpUser] = Field(default_factory=dict, description="user name -> token: who each caller is")
    allowed_hosts: list[str] = Field(default_factory=list, description="extra Host headers (DNS rebinding guard)")
    allowed_origins: list[str] = Field(default_factory=list, description="extra Origin values (DNS rebinding guard)")


class AuditConfig(_Model):
    """Where audit events go: a SQLite file with `sqlite: PATH`, otherwise a bounded window in memory."""

    sqlite: Path | None = Field(
        default=None,
        description="SQLite file of the durable audit log, created on first use (relative to the config file's folder)",
    )


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
    servers: dict[str, ServerConfig] = Field(default_factory=dict)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    user: str | None = Field(default=None, description="who stdio calls are attributed to (default: the OS user)")
    source: str | None = Field(default=None, exclude=True)

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
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"YAML syntax error: {problem}", source=source, line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", source=source) from None
    lines = _key_lines(node) if node is not None else {}
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping with a `servers:` key", source=source, line=1)

    data, lines = _normalise_root(data, lines, source)
    data = _interpolate(data, environ, (), lines, source)
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
    try:
        config = PortalConfig.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise _config_error(exc, source, lines) from None
    _check_policy(config, source, lines)
    return config


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
    value: Any, environ: Mapping[str, str], path: tuple[Any, ...], lines: dict[tuple[Any, ...], int], source: str
) -> Any:
    """Expand `${VAR}` and `${VAR:-default}` in every string; `$${VAR}` is a literal `${VAR}`."""
    if isinstance(value, str):

        def expand(match: re.Match[str]) -> str:
            escaped, var, default = match.group(1), match.group(2), match.group(3)
            if escaped:
                return match.group(0)[1:]
            if var in environ:
                return environ[var]
            if default is not None:
                return default
            where = ".".join(str(p) for p in path) or "config"
            raise ConfigError(
                f"environment variable {var!r} (used in {where}) is not set; set it, or write `${{{var}:-default}}`",
                source=source,
                line=_nearest_line(path, lines),
            )

        return _VAR.sub(expand, value)
    if isinstance(value, dict):
        return {key: _interpolate(item, environ, (*path, key), lines, source) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item, environ, (*path, i), lines, source) for i, item in enumerate(value)]
    return value


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
