"""`portal-mcp install CLIENT`: put the portal into another client's config file, and optionally move that file's
servers into portal.yaml (`--import`), so a user switches to the portal in one step.

| client         | file written (Linux; macOS in ~/Library/Application Support) | key          |
| -------------- | ------------------------------------------------------------ | ------------ |
| claude-desktop | ~/.config/Claude/claude_desktop_config.json                  | `mcpServers` |
| claude-code    | ~/.claude.json (user scope)                                  | `mcpServers` |
| cursor         | ~/.cursor/mcp.json                                           | `mcpServers` |
| vscode         | ~/.config/Code/User/mcp.json                                 | `servers`    |

Before a file changes it is copied to `FILE.bak-YYYYMMDD-HHMMSS`. Installing twice changes nothing; an entry of the
same name that is not this one is left alone unless `force`. Other keys of the file are kept (JSON comments in a
VS Code file are not: the backup has them). Any other client: `entry_json` prints the entry to paste.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from portal_mcp.config.clients import strip_json_comments
from portal_mcp.config.loading import import_servers
from portal_mcp.errors import ConfigError

Client = Literal["claude-desktop", "claude-code", "cursor", "vscode"]
CLIENTS: tuple[Client, ...] = ("claude-desktop", "claude-code", "cursor", "vscode")


@dataclass
class Installed:
    """What `install` did, for the CLI to report."""

    file: Path
    changed: bool
    backup: Path | None = None
    imported: list[str] = field(default_factory=list)
    portal_yaml: Path | None = None


def client_file(client: Client, home: Path, platform: str = sys.platform) -> Path:
    """Where `client` keeps its MCP servers for this user."""
    app_support = home / "Library" / "Application Support"
    if client == "claude-desktop":
        return (app_support if platform == "darwin" else home / ".config") / "Claude" / "claude_desktop_config.json"
    if client == "claude-code":
        return home / ".claude.json"
    if client == "cursor":
        return home / ".cursor" / "mcp.json"
    return (app_support if platform == "darwin" else home / ".config") / "Code" / "User" / "mcp.json"


def servers_key(client: Client) -> str:
    return "servers" if client == "vscode" else "mcpServers"


def portal_entry(client: Client | None, command: str, config: Path | None) -> dict[str, Any]:
    """The client's entry that starts the portal over stdio."""
    args = ["serve", *(["--config", str(config)] if config is not None else [])]
    entry: dict[str, Any] = {"command": command, "args": args}
    if client in ("claude-code", "vscode"):
        entry = {"type": "stdio", **entry}
    return entry


def entry_json(name: str, command: str, config: Path | None) -> str:
    """The `mcpServers` snippet for any other client (Windsurf, Cline, ...)."""
    return json.dumps({"mcpServers": {name: portal_entry(None, command, config)}}, indent=2)


def install(
    client: Client,
    *,
    home: Path,
    command: str,
    config: Path | None,
    name: str = "portal",
    force: bool = False,
    move_servers: bool = False,
    file: Path | None = None,
) -> Installed:
    """Write (or merge) the portal's entry into `client`'s file. With `move_servers`, the file's other servers are
    added to `config` (portal.yaml; required then) and removed from the file. Raises `ConfigError` for a same-named
    entry (without `force`), a file that is not a JSON object, or a server name already in portal.yaml."""
    path = file or client_file(client, home)
    data = _read(path)
    key = servers_key(client)
    servers = data.setdefault(key, {})
    if not isinstance(servers, dict):
        raise ConfigError(f"`{key}` must be a JSON object of servers; fix the file first", source=str(path))
    wanted = portal_entry(client, command, config)
    existing = servers.get(name)
    if existing is not None and existing != wanted and not force:
        raise ConfigError(
            f"it already has a server named {name!r} that is not this portal ({json.dumps(existing)}); "
            "pass --name to use another name, or --force to replace it",
            source=str(path),
        )
    result = Installed(path, changed=False)
    if move_servers:
        if config is None:
            raise ConfigError("--import needs --config: the portal.yaml the servers move to", source=str(path))
        moving = {n: s for n, s in servers.items() if n != name and not _is_portal(s)}
        if moving:
            result.imported = _add_to_portal_yaml(path, moving, config, force)
            result.portal_yaml = config
            for moved in moving:
                del servers[moved]
    if existing != wanted or result.imported:
        servers[name] = wanted
        result.backup = _backup(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        result.changed = True
    return result


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        return {}
    try:
        data = json.loads(strip_json_comments(text))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON: {exc.msg}; fix it first", source=str(path), line=exc.lineno) from None
    if not isinstance(data, dict):
        raise ConfigError("the file must hold a JSON object", source=str(path), line=1)
    return data


def _is_portal(server: Any) -> bool:
    """An entry that starts a portal (so `--import` never puts the portal behind itself)."""
    if not isinstance(server, dict):
        return False
    command = str(server.get("command", ""))
    return Path(command).name == "portal-mcp" or "portal_mcp" in [str(arg) for arg in server.get("args", [])]


def _backup(path: Path) -> Path | None:
    if not path.exists():
        return None
    backup = path.with_name(f"{path.name}.bak-{time.strftime('%Y%m%d-%H%M%S')}")
    counter = 1
    while backup.exists():
        backup = path.with_name(f"{path.name}.bak-{time.strftime('%Y%m%d-%H%M%S')}-{counter}")
        counter += 1
    shutil.copy2(path, backup)
    return backup


def _add_to_portal_yaml(source: Path, moving: dict[str, Any], config: Path, force: bool) -> list[str]:
    """Add the client's servers (as `import` renders them) to portal.yaml (created if missing; backed up first)."""
    staged = source.with_name(f".{source.name}.portal-import.json")
    staged.write_text(json.dumps({"mcpServers": moving}), encoding="utf-8")
    try:
        body = import_servers(staged)
    finally:
        staged.unlink(missing_ok=True)
    current: dict[str, Any] = {}
    if config.exists():
        loaded = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ConfigError("the top level must be a mapping with a `servers:` key", source=str(config), line=1)
        current = loaded
    servers = current.setdefault("servers", {}) or {}
    current["servers"] = servers
    clash = sorted(set(servers) & set(body["servers"]))
    if clash and not force:
        raise ConfigError(
            f"it already has servers named {', '.join(clash)}; rename them there, or pass --force to replace them",
            source=str(config),
        )
    servers.update(body["servers"])
    _backup(config)
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(yaml.safe_dump(current, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return list(body["servers"])
