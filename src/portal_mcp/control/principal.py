"""Who a search, a run or a call is for: `Principal`, resolved once where a request enters the portal.

```
principals = Principals(config, policy)
alice = principals.get("alice")        # an HTTP user (their bearer token named them)
dana = principals.get("dana", ("eng",))  # a user whose OAuth token says they are in `eng` (plus config groups)
local = principals.local               # the stdio / command-line user: `user:` of the config, else the OS user
alice.rules.decide(entry)              # their policy
```
The surface (the bearer token, the stdio user) and the command line resolve a principal; everything below takes
one and never guesses: there is no "no user", and no allow-all default standing in for a missing policy.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass

from portal_mcp.config import PortalConfig
from portal_mcp.control.access import AccessPolicy, UserRules

__all__ = ["Principal", "Principals", "local_user"]


@dataclass(frozen=True)
class Principal:
    """A user as the portal knows them: their name (what the audit records and whose `${user.KEY}` secrets a call
    uses), their groups (`http.users.NAME.groups`, and those their OAuth token lists) and their effective policy."""

    name: str
    groups: tuple[str, ...]
    rules: UserRules

    @classmethod
    def unrestricted(cls, name: str) -> Principal:
        """A user with no policy at all: every tool, no approvals, no limits (tests and embedders without a config)."""
        return cls(name, (), UserRules(name))


def local_user(config: PortalConfig) -> str:
    """The user of stdio and the command line: the config's `user:`, else the OS account running the portal."""
    if config.user:
        return config.user
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's arbitrary uid)
        return "unknown"


class Principals:
    """Resolves user names to principals (cached: the config never changes while the portal runs)."""

    def __init__(self, config: PortalConfig, policy: AccessPolicy) -> None:
        self._policy = policy
        self._known: dict[tuple[str, tuple[str, ...]], Principal] = {}
        self.local = self.get(local_user(config))
        """The stdio / command-line user."""

    def get(self, name: str, groups: tuple[str, ...] = ()) -> Principal:
        """User `name` in the groups the config gives them plus `groups` (what their OAuth token says)."""
        member_of = tuple(dict.fromkeys((*self._policy.groups(name), *groups)))
        key = (name, member_of)
        found = self._known.get(key)
        if found is None:
            found = self._known[key] = Principal(name, member_of, self._policy.for_user(name, member_of))
        return found
