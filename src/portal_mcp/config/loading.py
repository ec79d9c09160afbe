"""Loading a config: `load_config(path)` / `parse_config(text)`, the `mcpServers` JSON of Claude Desktop / Cursor /
Claude Code (same keys), what kind each server is, and `import_as_yaml` (mcpServers JSON -> portal.yaml)."""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from portal_mcp.config.checks import check_policy, check_users
from portal_mcp.config.clients import (
    client_variables,
    inputs_by_id,
    normalise_client,
    read_env_file,
    strip_json_comments,
)
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
    node, data = parse_yaml(strip_json_comments(text), source)
    lines = key_lines(node) if node is not None else {}
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping with a `servers:` key", source=source, line=1)

    inputs = inputs_by_id(data)
    data, lines = normalise_client(data, lines, source)
    _check_server_names(data, lines, source)
    data = dict(data)
    secrets: dict[str, str] = {}
    if data.get("secrets_file") is not None:
        secrets_path = secrets_file_path(data["secrets_file"], environ, base_dir, source, lines.get(("secrets_file",)))
        secrets = read_secrets(secrets_path, source, lines.get(("secrets_file",)))
        data["secrets_file"] = str(secrets_path)
    captured = set(secrets.values())
    variables = Variables(environ, secrets)
    data = client_variables(data, base_dir, inputs, variables, source, lines, captured)
    data = interpolate(data, variables, (), lines, source, captured)
    servers = data.get("servers")
    if servers is None:
        servers = data["servers"] = {}
    if not isinstance(servers, dict):
        raise ConfigError(
            "`servers` must be a mapping of server name to settings", source=source, line=lines.get(("servers",))
        )
    problems: list[ConfigError] = []
    for name, server in list(servers.items()):
        try:
            if not isinstance(server, dict):
                raise ConfigError(
                    f"server {name!r}: settings must be a mapping", source=source, line=lines.get(("servers", name))
                )
            servers[name] = _classify_server(str(name), server, base_dir, source, lines)
        except ConfigError as exc:
            problems.append(exc)  # every problem is listed, not only the first
            del servers[name]
    if isinstance(data.get("state_dir"), str):
        data["state_dir"] = str(base_dir / Path(data["state_dir"]).expanduser())
    for section in ("audit", "connections"):  # their `sqlite:` files are relative to the config's folder
        found = data.get(section)
        if isinstance(found, dict) and isinstance(found.get("sqlite"), str):
            data[section] = {**found, "sqlite": str(base_dir / Path(found["sqlite"]).expanduser())}
    search = data.get("search")
    if isinstance(search, dict):
        data["search"] = _search_paths(search, base_dir)
    check_user_ref_places(data, (), source, lines)
    try:
        config = PortalConfig.model_validate({**data, "source": source, "substituted_secrets": frozenset(captured)})
    except ValidationError as exc:
        raise ConfigError.combined([*problems, config_error(exc, source, lines, allowed_keys)]) from None
    if problems:
        raise ConfigError.combined(problems)
    check_users(config, source, lines)
    check_policy(config, source, lines)
    return resolve_listing_users(config, source, lines)


def allowed_keys(loc: tuple[Any, ...]) -> set[str]:
    """The keys a mapping at `loc` of portal.yaml may have (for "did you mean" on an unknown key)."""
    models: list[type[BaseModel]] = [PortalConfig]
    parts = list(loc)
    while parts:
        part = str(parts.pop(0))
        found: list[type[BaseModel]] = []
        mapping = False
        for model in models:
            field = model.model_fields.get(part)
            if field is not None:
                inner, is_mapping = _models_in(field.annotation)
                found.extend(inner)
                mapping = mapping or is_mapping
        if mapping and parts:
            parts.pop(0)  # a name of the user's choosing (a server, a user): its value is the model
        models = found
    return {name for model in models for name in model.model_fields if name not in ("kind", "source")}


def _models_in(annotation: Any) -> tuple[list[type[BaseModel]], bool]:
    """The pydantic models an annotation holds (through Optional, unions, Annotated, dict values and lists), and
    whether it is a mapping of names to them."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation], False
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is dict and len(args) == 2:
        return _models_in(args[1])[0], True
    models: list[type[BaseModel]] = []
    for arg in args:
        models.extend(_models_in(arg)[0])
    return models, False


def _check_server_names(data: dict[str, Any], lines: dict[tuple[Any, ...], int], source: str) -> None:
    """portal.yaml server names are the namespaces agent code uses: each must be a Python identifier."""
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


def _search_paths(search: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """`search.cache`, and a `search.model` written as a path (./x, ../x, /x, ~/x), start at the config's folder."""
    search = dict(search)
    if isinstance(search.get("cache"), str):
        search["cache"] = str(base_dir / Path(search["cache"]).expanduser())
    model = search.get("model")
    if isinstance(model, str) and model.startswith((".", "/", "~")):
        search["model"] = str(base_dir / Path(model).expanduser())
    return search


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
        typos = {
            key: near[0]
            for key in server
            if (near := difflib.get_close_matches(str(key), ["command", "url", "snapshot"], n=1, cutoff=0.6))
        }
        hint = "".join(f"; `{key}` looks like a typo for `{near}`" for key, near in typos.items())
        raise ConfigError(
            f"server {name!r} needs one of `command` (local process), `url` (remote server) or `snapshot` (saved tool "
            f"list){hint}",
            source=source,
            line=lines.get(("servers", name, next(iter(typos))), line) if typos else line,
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
        env_file = server.pop("envFile", None)
        if isinstance(env_file, str):
            env_path = base_dir / Path(env_file).expanduser()
            line_of = lines.get(("servers", name, "envFile"), line)
            server["env"] = {**read_env_file(env_path, source, line_of), **(server.get("env") or {})}
        if server.get("cwd") is None and isinstance(server.get("args"), list):
            server["args"] = [_arg_path(arg, base_dir) for arg in server["args"]]
    if kind in ("command", "url") and isinstance(server.get("known_tools"), str):
        server["known_tools"] = str((base_dir / server["known_tools"]).resolve())
    if kind == "url":
        # Claude Code / VS Code spell streamable HTTP as `streamable-http` or `http`.
        if transport in ("streamable-http", "streamableHttp", "streamable_http", None):
            server["type"] = "http"
        server["kind"] = "remote"
    elif kind == "snapshot":
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


def _arg_path(arg: Any, base_dir: Path) -> Any:
    """A relative path in `args` (without `cwd:`) names a file next to the config, as `command:` does: `./x`,
    `../x`, or a `dir/file` that exists there. Package names (`@scope/pkg`), flags and URLs stay as written."""
    if not isinstance(arg, str) or not arg or arg.startswith(("-", "@", "/", "~")) or "://" in arg or "=" in arg:
        return arg
    if arg.startswith(("./", "../")) or ("/" in arg and (base_dir / arg).exists()):
        return str((base_dir / arg).resolve())
    return arg


class _AnyVariable(dict[str, str]):
    """An environment in which every variable is set, so `import` can validate without expanding anything."""

    def __contains__(self, key: object) -> bool:
        return True

    def __missing__(self, key: str) -> str:
        return "x"


def import_servers(path: Path) -> dict[str, Any]:
    """The portal.yaml data of another client's config file (or a portal.yaml): its servers (and portal sections),
    `${VAR}` references kept as written (another client's variables in the portal's spelling). Validates first,
    with every variable counted as set, so a broken file fails here with the usual messages."""
    source = str(path)
    text = strip_json_comments(path.read_text(encoding="utf-8"))
    base_dir = path.resolve().parent
    parse_config(text, source=source, base_dir=base_dir, environ=_AnyVariable({**builtin_variables(), **os.environ}))
    data = yaml.safe_load(text) or {}
    inputs = inputs_by_id(data)
    data, lines = normalise_client(data, {}, source)
    data = client_variables(data, base_dir, inputs, {}, source, lines, set(), keep_refs=True)
    body: dict[str, Any] = {"servers": {}}
    for name, server in data.get("servers", {}).items():
        server = dict(server)
        if server.get("type") in ("stdio", "streamable-http", "streamableHttp", "streamable_http") or (
            server.get("type") == "http" and "url" in server
        ):
            server.pop("type")
        body["servers"][name] = server
    for key in ("sandbox", "http", "audit", "policy", "user"):
        if key in data:
            body[key] = data[key]
    return body


def import_as_yaml(path: Path) -> str:
    """Render another client's config file (or a portal.yaml) as portal.yaml, keeping `${VAR}` references."""
    return yaml.safe_dump(import_servers(path), sort_keys=False, allow_unicode=True)
