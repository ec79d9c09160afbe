"""Secrets in the config: the `secrets_file` (what `${NAME}` can name after the environment) and `${user.KEY}`
references (allowed only in headers/env, each KEY held by some user, and whose connection lists the tools)."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from portal_mcp.config.models import PortalConfig, SnapshotServerConfig
from portal_mcp.config.parsing import interpolate, key_lines, nearest_line, parse_yaml
from portal_mcp.config.user_refs import SECRET_NAME, USER_REF, first_user_with, missing_keys
from portal_mcp.errors import ConfigError

logger = logging.getLogger("portal_mcp.config")


class Variables(Mapping[str, str]):
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


def secrets_file_path(raw: Any, environ: Mapping[str, str], base_dir: Path, source: str, line: int | None) -> Path:
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError("`secrets_file` must be a path (a string) to a YAML file", source=source, line=line)
    expanded = interpolate(raw, environ, ("secrets_file",), {("secrets_file",): line} if line else {}, source, set())
    return base_dir / Path(expanded).expanduser()


def read_secrets(path: Path, source: str, line: int | None) -> dict[str, str]:
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
    node, data = parse_yaml(text, where)
    lines = key_lines(node) if node is not None else {}
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


def check_user_ref_places(
    value: Any, path: tuple[Any, ...], source: str, lines: Mapping[tuple[Any, ...], int], root: Any = None
) -> Any:
    """Refuse `${user.KEY}` outside headers/env (in place: a `$${user.KEY}` there becomes a literal `${user.KEY}`)."""
    root = value if root is None else root
    if isinstance(value, dict):
        for key, item in value.items():
            value[key] = check_user_ref_places(item, (*path, key), source, lines, root)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            value[i] = check_user_ref_places(item, (*path, i), source, lines, root)
    elif isinstance(value, str) and USER_REF.search(value) and not _user_ref_place(path, root):
        for match in USER_REF.finditer(value):
            if not match.group(1):
                where = ".".join(str(p) for p in path)
                raise ConfigError(
                    f"`${{user.{match.group(2)}}}` in {where}: a user's secret can only be used in a remote server's "
                    "`headers` or a stdio server's `env` values (command lines, urls and the rest are visible to "
                    "other users and in logs); write `$${user...}` for a literal",
                    source=source,
                    line=nearest_line(path, lines),
                )
        return USER_REF.sub(lambda match: match.group(0)[1:], value)
    return value


def resolve_listing_users(config: PortalConfig, source: str, lines: Mapping[tuple[Any, ...], int]) -> PortalConfig:
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
