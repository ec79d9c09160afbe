"""Other MCP clients' config files, read unchanged: their server lists become the portal's `servers:`.

| client         | file                                              | servers under                      |
| -------------- | ------------------------------------------------- | ---------------------------------- |
| Claude Desktop | claude_desktop_config.json                        | `mcpServers` (other keys ignored)  |
| Claude Code    | .mcp.json; ~/.claude.json                         | `mcpServers`; `projects.<dir>.mcpServers` |
| Cursor         | ~/.cursor/mcp.json, .cursor/mcp.json              | `mcpServers`                       |
| VS Code        | .vscode/mcp.json                                  | `servers` (+ `inputs`)             |
| Windsurf       | ~/.codeium/windsurf/mcp_config.json               | `mcpServers` (`serverUrl`)         |
| Zed            | ~/.config/zed/settings.json                       | `context_servers`                  |

Their variables work in every config: `${env:VAR}` (= `${VAR}`), `${userHome}`, `${workspaceFolder}` (the folder
holding `.vscode/` or `.cursor/`, else the config's folder), `${workspaceFolderBasename}`, `${pathSeparator}` and
`${input:ID}` (a VS Code `promptString` input: its value comes from the environment variable named after the id,
`api-key` -> `API_KEY`, or from the secrets file under the id or that name). JSON files may have comments and
trailing commas (VS Code and Zed write them).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from portal_mcp.config.models import PortalConfig
from portal_mcp.config.parsing import nearest_line
from portal_mcp.errors import ConfigError
from portal_mcp.naming import SERVER_NAME_PATTERN, python_name

logger = logging.getLogger("portal_mcp.config")

PORTAL_KEYS = frozenset(name for name, field in PortalConfig.model_fields.items() if not field.exclude)
"""The top-level keys of portal.yaml (kept in step with `PortalConfig` by a test)."""
CLIENT_ONLY_SERVER_KEYS = frozenset(
    {"alwaysAllow", "autoApprove", "disabledTools", "dev", "gallery", "version", "transportType", "settings", "source"}
)
"""Keys other clients keep on a server that mean nothing to the portal (approval lists, dev mode, Zed settings)."""
_WORKSPACE_MARKERS = (".vscode", ".cursor", ".zed", ".windsurf")
_CLIENT_VAR = re.compile(r"\$\{(env:([A-Za-z_][A-Za-z0-9_]*)|input:([^}]+)|userHome|workspaceFolder|workspaceFolderBasename|pathSeparator|/)\}")  # fmt: skip
Lines = dict[tuple[Any, ...], int]


def is_client_file(data: Mapping[str, Any], source: str) -> bool:
    """Another client's file: it has their keys, or it is JSON (portal.yaml is YAML)."""
    return bool({"mcpServers", "context_servers", "projects", "inputs"} & set(data)) or source.endswith(".json")


def normalise_client(
    data: dict[str, Any], lines: Lines, source: str, cwd: Path | None = None
) -> tuple[dict[str, Any], Lines]:
    """Another client's file as portal.yaml data: servers under `servers` with identifier names, known server keys
    renamed, their keys for other things dropped (one info line names them)."""
    if not is_client_file(data, source):
        return data, lines
    lines = dict(lines)
    if "mcpServers" in data and "servers" in data:
        raise ConfigError(
            "use either `servers` or `mcpServers`, not both", source=source, line=lines.get(("mcpServers",))
        )
    found: dict[str, tuple[tuple[Any, ...], Any]] = {}  # name -> (its path in the file, its settings)
    for key in ("mcpServers", "servers", "context_servers"):
        section = data.get(key)
        if section is None:
            continue
        if not isinstance(section, dict):
            raise ConfigError(
                f"`{key}` must be a mapping of server name to settings", source=source, line=lines.get((key,))
            )
        for name, server in section.items():
            if key == "context_servers" and isinstance(server, dict) and not {"command", "url"} & set(server):
                logger.info("%s: skipping %r: a Zed extension provides it, not a command", source, name)
                continue
            found[str(name)] = ((key, name), server)
    projects = data.get("projects")
    if isinstance(projects, dict):  # ~/.claude.json: user servers, then those of the project in this folder
        here = str((cwd or Path.cwd()).resolve())
        entry = projects.get(here)
        if isinstance(entry, dict) and isinstance(entry.get("mcpServers"), dict):
            found.update({str(n): (("projects", here, "mcpServers", n), s) for n, s in entry["mcpServers"].items()})
            logger.info("%s: using the servers of project %s too", source, here)
    ignored = sorted(
        str(key) for key in data if key not in PORTAL_KEYS and key not in ("mcpServers", "context_servers", "inputs")
    )
    if ignored:
        logger.info("%s: ignoring keys that are not about MCP servers: %s", source, ", ".join(ignored))
    result = {key: value for key, value in data.items() if key in PORTAL_KEYS}
    servers: dict[str, Any] = {}
    for name, (path, server) in found.items():
        ident = name if re.match(SERVER_NAME_PATTERN, name) else python_name(name)
        if ident in servers:
            raise ConfigError(
                f"server names {name!r} and another both become {ident!r}; rename one",
                source=source,
                line=nearest_line(path, lines),
            )
        for spot, line in list(lines.items()):
            if spot[: len(path)] == path:
                lines[("servers", ident, *spot[len(path) :])] = line
        servers[ident] = _server(server) if isinstance(server, dict) else server
    result["servers"] = servers
    return result, lines


def _server(server: dict[str, Any]) -> dict[str, Any]:
    """One server's settings in the portal's keys (Zed's `command: {path, args, env}`, Windsurf's `serverUrl`)."""
    server = {key: value for key, value in server.items() if key not in CLIENT_ONLY_SERVER_KEYS}
    command = server.get("command")
    if isinstance(command, dict):  # Zed
        server["command"] = command.get("path")
        server.setdefault("args", command.get("args", []))
        if command.get("env"):
            server.setdefault("env", command["env"])
    for alias in ("serverUrl", "httpUrl"):  # Windsurf, Gemini CLI
        if alias in server and "url" not in server:
            server["url"] = server.pop(alias)
    if server.get("enabled") is False:  # Zed
        server["disabled"] = True
    server.pop("enabled", None)
    if server.get("type") == "local":
        server["type"] = "stdio"
    return server


def client_variables(
    value: Any,
    base_dir: Path,
    inputs: Mapping[str, Mapping[str, Any]],
    variables: Mapping[str, str],
    source: str,
    lines: Mapping[tuple[Any, ...], int],
    captured: set[str],
    path: tuple[Any, ...] = (),
    *,
    keep_refs: bool = False,
) -> Any:
    """Replace the other clients' variables in every string (see the module docstring); `${env:VAR}` becomes the
    portal's `${VAR}`, so a missing one is reported like any other. Input values are secrets (`captured`).
    `keep_refs` (for `import`): `${input:ID}` becomes `${NAME}` and `${userHome}` `${HOME}`, nothing is looked up."""
    if isinstance(value, dict):
        return {
            k: client_variables(
                v, base_dir, inputs, variables, source, lines, captured, (*path, k), keep_refs=keep_refs
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            client_variables(v, base_dir, inputs, variables, source, lines, captured, (*path, i), keep_refs=keep_refs)
            for i, v in enumerate(value)
        ]
    if not isinstance(value, str) or "${" not in value:
        return value
    workspace = base_dir.parent if base_dir.name in _WORKSPACE_MARKERS else base_dir

    def replace(match: re.Match[str]) -> str:
        whole, env, input_id = match.group(1), match.group(2), match.group(3)
        if env:
            return "${" + env + "}"
        if input_id and keep_refs:
            return "${" + input_env_name(input_id) + "}"
        if whole == "userHome" and keep_refs:
            return "${HOME}"
        if input_id:
            found = input_value(input_id, inputs.get(input_id, {}), variables, source, nearest_line(path, lines))
            captured.add(found)
            return found.replace("${", "$${")
        return {
            "userHome": str(Path.home()),
            "workspaceFolder": str(workspace),
            "workspaceFolderBasename": workspace.name,
        }.get(whole, os.sep)

    return _CLIENT_VAR.sub(replace, value)


def input_env_name(input_id: str) -> str:
    """The environment variable a VS Code input's value comes from: `api-key` -> `API_KEY`."""
    return re.sub(r"[^A-Za-z0-9]+", "_", input_id).strip("_").upper() or "INPUT"


def input_value(
    input_id: str, spec: Mapping[str, Any], variables: Mapping[str, str], source: str, line: int | None
) -> str:
    """The value of `${input:ID}`: the environment variable named after the id, or the id in the secrets file."""
    name = input_env_name(input_id)
    for candidate in (name, input_id):
        if candidate in variables:
            return variables[candidate]
    about = f" ({spec['description']})" if isinstance(spec.get("description"), str) else ""
    raise ConfigError(
        f"VS Code input {input_id!r}{about} has no value: VS Code prompts for it, the portal cannot; set the "
        f"environment variable {name}, or add `{name}: ...` to the secrets file (`secrets_file:`)",
        source=source,
        line=line,
    )


def inputs_by_id(data: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """VS Code's `inputs` list as id -> its declaration (`promptString`; `pickString` too: its value is named the
    same way)."""
    found: dict[str, Mapping[str, Any]] = {}
    for item in data.get("inputs") or []:
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            found[item["id"]] = item
    return found


_JSON_NOISE = re.compile(r'"(?:\\.|[^"\\])*"|//[^\n]*|/\*.*?\*/|,(?=\s*[}\]])', re.S)


def strip_json_comments(text: str) -> str:
    """JSON with comments and trailing commas (JSONC, as VS Code and Zed write it) as plain JSON, lines kept."""
    if not text.lstrip().startswith(("{", "//", "/*")):
        return text

    def blank(match: re.Match[str]) -> str:
        token = match.group(0)
        if token.startswith('"'):
            return token
        return re.sub(r"[^\n]", " ", token)

    return _JSON_NOISE.sub(blank, text)


def read_env_file(path: Path, source: str, line: int | None) -> dict[str, str]:
    """`envFile` (VS Code, Cursor): KEY=VALUE lines, `#` comments, optional quotes and `export `."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read `envFile` {str(path)!r}: {exc.strerror or exc}; fix the path (relative paths start at the "
            "config's folder)",
            source=source,
            line=line,
        ) from None
    found: dict[str, str] = {}
    for raw in text.splitlines():
        entry = raw.strip()
        if not entry or entry.startswith("#") or "=" not in entry:
            continue
        key, _, value = entry.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        found[key.strip()] = value
    return found
