"""Start-up progress in the log while servers connect in the background.

```
connecting 27 servers ...
25 up, 2 connecting (memory: 41 s, jira: 12 s)
all 27 servers settled: 26 up, 1 failed (jira)
```
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import anyio

from portal_mcp.downstream._link import Link
from portal_mcp.naming import plural

logger = logging.getLogger("portal_mcp.downstream")

PROGRESS_EVERY = 5.0
"""Seconds between progress lines while some server is still connecting."""


def summary(links: Mapping[str, Link]) -> tuple[str, bool]:
    """One progress line, and whether any server is still on its first attempt."""
    now = time.monotonic()
    connecting = [link for link in links.values() if not link.first_settled.is_set()]
    up = sum(1 for link in links.values() if link.state == "connected")
    failed = [link.name for link in links.values() if link.first_settled.is_set() and link.state != "connected"]
    parts = [f"{up} up"]
    if connecting:
        waiting = ", ".join(f"{link.name}: {now - link.since:.0f} s" for link in connecting)
        parts.append(f"{len(connecting)} connecting ({waiting})")
    if failed:
        parts.append(f"{len(failed)} failed ({', '.join(failed)}; retried in the background)")
    return ", ".join(parts), bool(connecting)


async def report_progress(links: Mapping[str, Link], every: float = PROGRESS_EVERY) -> None:
    """Log a line now, every `every` seconds while a server is on its first attempt, and once all have settled."""
    if not links:
        return
    logger.info("connecting %s ...", plural(len(links), "server"), extra={"event": "connecting"})
    while True:
        with anyio.move_on_after(every):
            for link in list(links.values()):
                await link.first_settled.wait()
        if any(link.closing for link in links.values()):
            return  # the portal is stopping: nothing to report
        line, pending = summary(links)
        if not pending:
            logger.info("all %s settled: %s", plural(len(links), "server"), line, extra={"event": "settled"})
            return
        logger.info("%s", line, extra={"event": "connecting"})
