"""`${user.KEY}` references: the per-user secrets a downstream's headers/env name, resolved per call.

`${user.KEY}` in a remote server's `headers` or a stdio server's `env` is not expanded when the config loads (the
load-time `${VAR}` pattern does not match the dot); it is resolved for each call from the calling user's
`http.users.NAME.secrets`. `$${user.KEY}` is a literal `${user.KEY}`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

USER_REF = re.compile(r"\$(\$)?\{user\.([A-Za-z_][A-Za-z0-9_]*)\}")
"""`${user.KEY}` (group 2 is KEY); with a leading `$` (group 1) it is an escaped, literal `${user.KEY}`."""
SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def user_keys(text: str) -> set[str]:
    """The KEYs of the (unescaped) `${user.KEY}` references in `text`."""
    return {match.group(2) for match in USER_REF.finditer(text) if not match.group(1)}


def keys_needed(values: Iterable[str]) -> frozenset[str]:
    """Every KEY referred to as `${user.KEY}` in these values."""
    found: set[str] = set()
    for value in values:
        found |= user_keys(value)
    return frozenset(found)


def missing_keys(needed: Iterable[str], secrets: Mapping[str, str]) -> list[str]:
    """The needed KEYs a user does not have (an empty value counts as not set), sorted."""
    return sorted(key for key in needed if not secrets.get(key))


def expand_user_refs(text: str, secrets: Mapping[str, str]) -> str:
    """`text` with each `${user.KEY}` replaced by the user's secret (check `missing_keys` first: a missing KEY
    raises KeyError) and each `$${user.KEY}` by a literal `${user.KEY}`."""

    def expand(match: re.Match[str]) -> str:
        if match.group(1):
            return match.group(0)[1:]
        return secrets[match.group(2)]

    return USER_REF.sub(expand, text)


def first_user_with(needed: Iterable[str], users: Mapping[str, Mapping[str, str]]) -> str | None:
    """The first user (in config order) who has every needed secret."""
    needed = list(needed)
    for name, secrets in users.items():
        if not missing_keys(needed, secrets):
            return name
    return None
