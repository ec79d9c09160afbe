"""Checks across sections, once the models are valid: names the policy uses must exist, reserved names stay free."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any

from portal_mcp.config.models import ANONYMOUS, PortalConfig
from portal_mcp.config.parsing import nearest_line
from portal_mcp.errors import ConfigError


def check_policy(config: PortalConfig, source: str, lines: Mapping[tuple[Any, ...], int]) -> None:
    """Names in the policy must exist: a misspelt user, group or server would silently apply to no one. With
    `auth:`, users and groups also come from the identity provider's tokens, so their names are not checked."""
    policy = config.policy
    users = set(config.http.users) | ({config.user} if config.user else set())
    groups = {group for user in config.http.users.values() for group in user.groups}
    if config.auth is not None:
        users, groups = set(policy.users), set(policy.groups)
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
    for path, rule in policy.blocks():
        for key in ("allow", "deny"):
            for pattern in getattr(rule, key):
                server = pattern.split(".", 1)[0]
                if not fnmatch.filter(config.servers, server):
                    hint = f"; for tools on every server write `*.{pattern}`" if "." not in pattern else ""
                    raise ConfigError(
                        f"`{'.'.join(path)}.{key}` pattern {pattern!r} matches no configured server "
                        f"(servers: {', '.join(config.servers) or 'none'}); patterns are `server.tool` globs, and a "
                        f"pattern without a dot means whole servers{hint}",
                        source=source,
                        line=nearest_line((*path, key), lines),
                    )


def check_users(config: PortalConfig, source: str, lines: Mapping[tuple[Any, ...], int]) -> None:
    """Every token is a non-empty secret of one caller, and `bearer` (the user of the anonymous `bearer_tokens`) is
    no configured user's name: such a user would give every anonymous caller their groups and secrets."""
    http = config.http
    holders: list[tuple[tuple[Any, ...], str, str]] = [(("http", "bearer_tokens", i), f"`http.bearer_tokens[{i}]`", token) for i, token in enumerate(http.bearer_tokens)]  # fmt: skip
    holders += [(("http", "users", name, "token"), f"user {name!r}", user.token) for name, user in http.users.items() if user.token is not None]  # fmt: skip
    seen: dict[str, str] = {}
    for path, who, token in holders:
        if not token.strip():
            raise ConfigError(
                f"the token of {who} is empty (is the variable it names, e.g. `${{ALICE_TOKEN}}`, empty?); every "
                "token must be a non-empty secret",
                source=source,
                line=nearest_line(path, lines),
            )
        if token in seen:
            raise ConfigError(
                f"{seen[token]} and {who} have the same token; give each caller its own",
                source=source,
                line=nearest_line(path, lines),
            )
        seen[token] = who
    if ANONYMOUS in http.users:
        raise ConfigError(
            f"`http.users` may not have a user named {ANONYMOUS!r}: it is the user of `http.bearer_tokens`; "
            "rename the user",
            source=source,
            line=lines.get(("http", "users", ANONYMOUS)),
        )
