"""Servers still starting, seen from agent code: code that names one waits for its first attempt, and code that
calls a server whose tools are not known gets why (still connecting, or down) instead of a NameError."""

from __future__ import annotations

import re
from collections.abc import Collection

from portal_mcp.downstream._pool import DownstreamPool


async def await_starting(pool: DownstreamPool, code: str, namespaces: Collection[str]) -> None:
    """Code naming a server on its first attempt, with no tools known yet, waits for it (its connect_timeout)."""
    for status in pool.statuses():
        if (
            status.state == "connecting"
            and status.name not in namespaces
            and re.search(rf"\b{re.escape(status.name)}\s*\.", code)
        ):
            await pool.ready(status.name)


def unlisted(pool: DownstreamPool, namespaces: Collection[str]) -> dict[str, str]:
    """Servers not connected whose tools are not known, with why (code naming one gets it, not a NameError)."""
    found: dict[str, str] = {}
    for s in pool.statuses():
        if s.name in namespaces:
            continue
        if s.state == "connecting":
            found[s.name] = (
                f"server {s.name!r} is still connecting ({s.for_seconds:.0f} s) and has never listed its tools "
                "here; run the code again once search_api shows them"
            )
        elif (down := pool.down_error(s.name)) is not None:
            found[s.name] = str(down)
    return found
