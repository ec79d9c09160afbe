"""An `execute_code` request following its run: progress notifications, downstream questions, cancellation; and
a `search_api` request waiting for the search index to be built.

- A request with a progress token gets the run's progress (`runs/progress.py`) as `notifications/progress`.
- A downstream server's question during the run goes to this request's client: asked now on a handshake-era
  connection that can carry a server request, left open for the `InputRequiredResult` on 2026-07-28 (with the
  approvals, `runs/approvals.py`), declined where the client cannot be asked.
- A `search_api` request after the catalog changed builds the new index off the event loop (seconds at 10,000
  tools), telling a client that sent a progress token when it starts and ends.
- A request that is cancelled (`notifications/cancelled`, or a 2026-07-28 client closing the request) stops its run:
  the worker is killed and every downstream call in flight is cancelled downstream.
"""

from __future__ import annotations

from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext

from portal_mcp.portal import Portal
from portal_mcp.runs.approvals import PendingRuns, asks_in_result, can_elicit, direct_elicitor
from portal_mcp.runs.progress import RunProgress
from portal_mcp.runs.run import Elicitor, Run, RunOutcome


def wants_progress(ctx: ServerRequestContext[Any]) -> RunProgress | None:
    """A progress record for the run when the request carries a progress token, else None."""
    return RunProgress() if _has_token(ctx) else None


def elicitor(ctx: ServerRequestContext[Any]) -> Elicitor | None:
    """How a downstream's question is asked now: a server request, on handshake-era connections whose client
    declared elicitation (on 2026-07-28 questions go back in the result instead; elsewhere they are declined)."""
    return direct_elicitor(ctx) if can_elicit(ctx) and not asks_in_result(ctx) else None


async def follow(
    ctx: ServerRequestContext[Any], approvals: PendingRuns, run: Run
) -> RunOutcome | types.InputRequiredResult:
    """Wait for the run's outcome or its questions (`PendingRuns.progress`), sending progress meanwhile when the
    client asked for it; a cancelled request cancels the run (in `progress`)."""
    progress = run.progress
    if progress is None or not _has_token(ctx):
        return await approvals.progress(run)
    async with anyio.create_task_group() as group:
        group.start_soon(progress.forward, ctx.session.report_progress)
        reply = await approvals.progress(run)
        group.cancel_scope.cancel()
    return reply


def _has_token(ctx: ServerRequestContext[Any]) -> bool:
    raw = (ctx.params or {}).get("_meta")
    meta: dict[str, Any] = {**(raw if isinstance(raw, dict) else {}), **(ctx.meta or {})}
    return meta.get("progressToken", meta.get("progress_token")) is not None


async def index_built(ctx: ServerRequestContext[Any], portal: Portal) -> None:
    """Before a search: build the current catalog's index off the event loop if a change made it stale."""
    if portal.indexed:
        return
    told = _has_token(ctx)
    if told:
        await ctx.session.report_progress(0, None, f"building the search index over {len(portal.catalog)} tools")
    await anyio.to_thread.run_sync(portal.index)
    if told:
        await ctx.session.report_progress(1, None, "the search index is built")
