"""The access policy: which tools a user may call, which need their approval first, and how often they may run code.

```
policy = AccessPolicy(config)
rules = policy.for_user("alice")
rules.decide(entry)        # Decision.ALLOW / Decision.APPROVE, or raises PolicyDeniedError
policy.view("alice", catalog)   # the tools alice may use, and the ones refused to her with why
policy.view("dana", catalog, groups=("eng",))   # a user whose groups came with their OAuth token
```
A user's rules come from three levels of `policy:` in the config, most specific first: `users.NAME`, then each of
their groups (`http.users.NAME.groups`, or the groups a caller's principal carries), then `default`. Allow and deny lists add up across the levels that apply (a deny anywhere wins; with
any allow list, a tool must match one). The single settings (`read_only`, `approve`, the limits) take the most
specific level that sets them; where several groups set one, the strictest wins.

Annotations are hints from the servers; `servers.NAME.annotations` in the config corrects them per tool. Per the
MCP spec, a tool that is not read-only counts as destructive unless it says `destructiveHint: false`.
"""

from __future__ import annotations

import enum
import fnmatch
import time
import weakref
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from portal_mcp.catalog.model import Catalog, ToolEntry
from portal_mcp.config import Approve, PolicyConfig, PolicyRule, PortalConfig
from portal_mcp.errors import PolicyDeniedError

_APPROVE_ORDER: dict[Approve, int] = {"never": 0, "destructive": 1, "always": 2}


class Decision(enum.Enum):
    ALLOW = "allow"
    APPROVE = "approve"
    """Allowed once the user approves this call."""


@dataclass(frozen=True)
class UserRules:
    """The effective policy for one user."""

    user: str
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    read_only: bool = False
    approve: Approve = "never"
    runs_per_minute: int | None = None
    calls_per_run: int | None = None
    annotations: Mapping[str, Mapping[str, Mapping[str, bool]]] | None = None
    """server -> tool name glob -> hint overrides (wire names)."""

    @property
    def unrestricted(self) -> bool:
        """Nothing to check per call: every tool allowed without approval."""
        return not (self.allow or self.deny or self.read_only or self.approve != "never")

    def decide(self, entry: ToolEntry) -> Decision:
        """May this user call `entry`? Raises `PolicyDeniedError` saying which rule refused it."""
        tool = entry.qualified_name
        denied_by = next((pattern for pattern in self.deny if _matches(pattern, entry)), None)
        if denied_by is not None:
            raise PolicyDeniedError(tool, "deny", f"the policy denies {_pattern_text(denied_by)} to {self.user!r}")
        if self.allow and not any(_matches(pattern, entry) for pattern in self.allow):
            raise PolicyDeniedError(tool, "allow", f"it is not among the tools the policy allows {self.user!r}")
        hints = self.hints(entry)
        read_only = hints.get("readOnlyHint") is True
        if self.read_only and not read_only:
            raise PolicyDeniedError(
                tool,
                "read_only",
                f"{self.user!r} may only call tools annotated read-only, and {entry.server}'s "
                f"{entry.name!r} is not (an operator can correct a wrong hint under `servers.{entry.server}.annotations`)",
            )
        destructive = not read_only and hints.get("destructiveHint") is not False
        if self.approve == "always" or (self.approve == "destructive" and destructive):
            return Decision.APPROVE
        return Decision.ALLOW

    def server_refusal(self, server: str) -> PolicyDeniedError | None:
        """Why this user may not use `server`'s resources and prompts (None: they may). They are reads, so only the
        server's reach counts: a deny of the whole server (`srv`, `srv.*`), or an allow list naming none of it."""
        whole = [pattern for pattern in self.deny if _server_part(pattern, server) and pattern.partition(".")[2] in "*"]
        if whole:
            return PolicyDeniedError(server, "deny", f"the policy denies {_pattern_text(whole[0])} to {self.user!r}")
        if self.allow and not any(_server_part(pattern, server) for pattern in self.allow):
            return PolicyDeniedError(server, "allow", f"the policy allows {self.user!r} no tool of {server!r}")
        return None

    def hints(self, entry: ToolEntry) -> Mapping[str, Any]:
        """The tool's annotations with the config's corrections applied."""
        overrides = (self.annotations or {}).get(entry.server)
        if not overrides:
            return entry.annotations  # the common case, on every call: no copy
        hints = dict(entry.annotations)
        for pattern, override in overrides.items():
            if fnmatch.fnmatchcase(entry.name, pattern) or fnmatch.fnmatchcase(entry.python_name, pattern):
                hints.update(override)
        return hints

    def refusals(self, catalog: Catalog) -> dict[str, str]:
        """The tools of `catalog` this user may not call at all, with why (qualified name -> message)."""
        if not (self.allow or self.deny or self.read_only):
            return {}
        refused: dict[str, str] = {}
        for entry in catalog:
            try:
                self.decide(entry)
            except PolicyDeniedError as exc:
                refused[entry.qualified_name] = str(exc)
        return refused

    def needs_approval(self, entries: Iterable[ToolEntry]) -> list[str]:
        """The qualified names among `entries` whose calls this user must approve."""
        if self.approve == "never":
            return []
        found = []
        for entry in entries:
            try:
                if self.decide(entry) is Decision.APPROVE:
                    found.append(entry.qualified_name)
            except PolicyDeniedError:
                continue
        return found

    def approval_note(self, entries: Iterable[ToolEntry]) -> str:
        """The sentence a search reply adds about `entries` this user must approve ("" when none)."""
        approval = self.needs_approval(entries)
        if not approval:
            return ""
        return f" Calls to {', '.join(approval)} ask the user for approval first; refused calls raise PermissionError."


@dataclass(frozen=True)
class UserView:
    """One user's side of a catalog: the tools they may use (`catalog`: what their code's namespaces and the
    pre-run check see) and the ones the policy keeps from them, with why (`refused`)."""

    catalog: Catalog
    refused: Mapping[str, str]


class AccessPolicy:
    """The config's `policy:` resolved per user (cached: the config never changes while the portal runs)."""

    def __init__(self, config: PortalConfig) -> None:
        self._policy: PolicyConfig = config.policy
        self._groups = {name: tuple(user.groups) for name, user in config.http.users.items()}
        self._annotations = {
            server: {pattern: override.as_hints() for pattern, override in settings.annotations.items()}
            for server, settings in config.servers.items()
            if settings.annotations
        }
        self._users: dict[tuple[str, tuple[str, ...]], UserRules] = {}
        # Per catalog object (a listing change makes a new one, and the old one's entries go with it), per user.
        self._views: weakref.WeakKeyDictionary[Catalog, dict[tuple[str, tuple[str, ...]], UserView]] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def approval_timeout(self) -> float:
        return self._policy.approval_timeout

    def groups(self, user: str) -> tuple[str, ...]:
        """The groups the config gives `user` (`http.users.NAME.groups`)."""
        return self._groups.get(user, ())

    def for_user(self, user: str, groups: tuple[str, ...] | None = None) -> UserRules:
        """`user`'s rules as a member of `groups` (default: the groups the config gives them)."""
        key = (user, self.groups(user) if groups is None else groups)
        rules = self._users.get(key)
        if rules is None:
            rules = self._users[key] = self._resolve(*key)
        return rules

    def view(self, user: str, catalog: Catalog, groups: tuple[str, ...] | None = None) -> UserView:
        """What `user` may use of `catalog`, cached per catalog and user (a listing change makes a new catalog)."""
        key = (user, self.groups(user) if groups is None else groups)
        per_user = self._views.setdefault(catalog, {})
        found = per_user.get(key)
        if found is None:
            refused = self.for_user(*key).refusals(catalog)
            usable = catalog if not refused else Catalog(e for e in catalog if e.qualified_name not in refused)
            found = per_user[key] = UserView(usable, refused)
        return found

    def hidden(self, user: str, catalog: Catalog, groups: tuple[str, ...] | None = None) -> frozenset[str]:
        """Qualified names `user` may not call at all (search, the overview and hints leave them out)."""
        return frozenset(self.view(user, catalog, groups).refused)

    def unmatched(self, catalog: Catalog) -> list[str]:
        """Policy patterns and annotation overrides that name no tool of a server whose tools are known: a typo
        there silently switches a control off (`deny: [github.delete_repoo]` denies nothing)."""
        known = set(catalog.servers())
        problems: list[str] = []
        for path, rule in self._policy.blocks():
            where = ".".join(path)
            for key in ("allow", "deny"):
                for pattern in getattr(rule, key):
                    server = pattern.split(".", 1)[0]
                    servers = [name for name in known if fnmatch.fnmatchcase(name, server)]
                    if (
                        "." in pattern
                        and servers
                        and not any(_matches(pattern, entry) for name in servers for entry in catalog.by_server(name))
                    ):
                        problems.append(f"`{where}.{key}` pattern {pattern!r} matches no tool of {', '.join(servers)}")
        for server, overrides in self._annotations.items():
            if server not in known:
                continue
            entries = catalog.by_server(server)
            for pattern in overrides:
                if not any(
                    fnmatch.fnmatchcase(entry.name, pattern) or fnmatch.fnmatchcase(entry.python_name, pattern)
                    for entry in entries
                ):
                    problems.append(f"`servers.{server}.annotations` key {pattern!r} matches no tool of {server}")
        return problems

    def _resolve(self, user: str, member_of: tuple[str, ...]) -> UserRules:
        policy = self._policy
        groups = [policy.groups[name] for name in member_of if name in policy.groups]
        own = policy.users.get(user)
        blocks = [block for block in (own, *groups, policy.default) if block is not None]
        return UserRules(
            user=user,
            allow=tuple(dict.fromkeys(p for block in blocks for p in block.allow)),
            deny=tuple(dict.fromkeys(p for block in blocks for p in block.deny)),
            read_only=_setting(own, groups, policy.default, "read_only", max, False),
            approve=_setting(own, groups, policy.default, "approve", _strictest_approve, "never"),
            runs_per_minute=_setting(own, groups, policy.default, "runs_per_minute", min, None),
            calls_per_run=_setting(own, groups, policy.default, "calls_per_run", min, None),
            annotations=self._annotations,
        )


def _setting(
    own: PolicyRule | None, groups: list[PolicyRule], default: PolicyRule, key: str, pick: Any, fallback: Any
) -> Any:
    """The most specific level that sets `key`; among groups, `pick` chooses the strictest."""
    if own is not None and getattr(own, key) is not None:
        return getattr(own, key)
    values = [getattr(group, key) for group in groups if getattr(group, key) is not None]
    if values:
        return pick(values)
    value = getattr(default, key)
    return fallback if value is None else value


def _strictest_approve(values: list[Approve]) -> Approve:
    return max(values, key=_APPROVE_ORDER.__getitem__)


def _matches(pattern: str, entry: ToolEntry) -> bool:
    if "." not in pattern:
        return fnmatch.fnmatchcase(entry.server, pattern)
    return fnmatch.fnmatchcase(f"{entry.server}.{entry.name}", pattern) or fnmatch.fnmatchcase(
        entry.qualified_name, pattern
    )


def _server_part(pattern: str, server: str) -> bool:
    return fnmatch.fnmatchcase(server, pattern.partition(".")[0])


def _pattern_text(pattern: str) -> str:
    return f"`{pattern}`" if "." in pattern else f"every tool of `{pattern}`"


class RunLimiter:
    """Runs per user in a sliding one-minute window. Kept in memory: with several replicas, each counts its own."""

    def __init__(self, window: float = 60.0) -> None:
        self._window = window
        self._starts: dict[str, deque[float]] = {}

    def admit(self, user: str, per_minute: int | None) -> float:
        """Count a run for `user` and return 0, or return the seconds until one is allowed (nothing counted)."""
        if per_minute is None:
            return 0.0
        now = time.monotonic()
        starts = self._starts.setdefault(user, deque())
        while starts and starts[0] <= now - self._window:
            starts.popleft()
        if len(starts) >= per_minute:
            return starts[0] + self._window - now
        starts.append(now)
        return 0.0
