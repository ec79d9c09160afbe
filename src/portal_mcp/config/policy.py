"""portal.yaml's `policy:`: who may call which tools, and how (the rules; control/access.py applies them)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from portal_mcp.config.base import _Model

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

    def blocks(self) -> list[tuple[tuple[str, ...], PolicyRule]]:
        """Every block with its key path in the config (`("policy", "groups", "eng")`), default first."""
        found: list[tuple[tuple[str, ...], PolicyRule]] = [(("policy", "default"), self.default)]
        found += [(("policy", "groups", name), rule) for name, rule in self.groups.items()]
        found += [(("policy", "users", name), rule) for name, rule in self.users.items()]
        return found
