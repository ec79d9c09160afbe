"""Loading a config: `load_config(path)` / `parse_config(text)`, the `mcpServers` JSON of Claude Desktop / Cursor /
Claude Code (same keys), what kind each server is, and `import_as_yaml` (mcpServers JSON -> portal.yaml)."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from portal_mcp.config.checks import check_policy, check_users
from portal_mcp.config.models import PortalConfig
from portal_mcp.config.parsing import config_error, interpolate, key_lines, parse_yaml
from portal_mcp.config.secrets import (
    Variables,
    check_user_ref_places,
    read_secrets,
    resolve_listing_users,
    secrets_file_path,
)
from portal_mcp.errors import ConfigError
from portal_mcp.naming import SERVER_NAME_PATTERN, python_name


def bundled_schemas_dir() -> Path:
    """The bundled snapshot folder: packaged in a wheel, or `schemas/` at the repository root."""
    packaged = Path(str(resources.files("portal_mcp"))) / "_bundled" / "schemas"
    if packaged.is_dir():
        return packaged
    return Path(str(resources.files("portal_mcp"))).resolve().parents[1] / "schemas"  # src/portal_mcp -> the root


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
    node, data = parse_yaml(text, source)
    lines = key_lines(node) if node is not None else {}
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping with a `servers:` key", source=source, line=1)

    data, lines = _normalise_root(data, lines, source)
    data = dict(data)
    secrets: dict[str, str] = {}
    if data.get("secrets_file") is not None:
        secrets_path = secrets_file_path(data["secrets_file"], environ, base_dir, source, lines.get(("secrets_file",)))
        secrets = read_secrets(secrets_path, source, lines.get(("secrets_file",)))
        data["secrets_file"] = str(secrets_path)
    captured = set(secrets.values())
    data = interpolate(data, Variables(environ, secrets), (), lines, source, captured)
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
    search = data.get("search")
    if isinstance(search, dict):
        data["search"] = _search_paths(search, base_dir)
    check_user_ref_places(data, (), source, lines)
    try:
        config = PortalConfig.model_validate({**data, "source": source, "substituted_secrets": frozenset(captured)})
    except ValidationError as exc:
        raise config_error(exc, source, lines) from None
    check_users(config, source, lines)
    check_policy(config, source, lines)
    return resolve_listing_users(config, source, lines)


def _search_paths(search: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """`search.cache`, and a `search.model` written as a path (./x, ../x, /x, ~/x), start at the config's folder."""
    search = dict(search)
    if isinstance(search.get("cache"), str):
        search["cache"] = str(base_dir / Path(search["cache"]).expanduser())
    model = search.get("model")
    if isinstance(model, str) and model.startswith((".", "/", "~")):
        search["model"] = str(base_dir / Path(model).expanduser())
    return search


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
