"""Asking the user to approve a call made inside agent code, through MCP elicitation, in either protocol era.

Handshake-era clients (protocol up to 2025-11-25) take a server-initiated `elicitation/create` request while the
`execute_code` call is open: the run simply waits for the answer (`direct_approver`).

On 2026-07-28 a server may not send requests; it answers the `tools/call` with an `InputRequiredResult` carrying
the question and an opaque `requestState`, and the client calls again with the answer (multi round-trip
requests). A sandbox run cannot be replayed safely (the calls before the question would run twice), so the run
stays paused in this portal process and `PendingRuns` hands the answer to it: the retry must reach the same
portal process. With `http.replica` configured the `requestState` token names the replica (`r1.<random>`), and a
replica that gets an answer for another one's run forwards it there (`peers.ReplicaRouter`). Runs whose user never
answers are refused by the policy's `approval_timeout` and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import secrets
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import NoBackChannelError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from portal_mcp.config import REPLICA_ID
from portal_mcp.control.audit import Verdict
from portal_mcp.runs.bridge import ApprovalRequest, Approver
from portal_mcp.sandbox.host import RunResult

logger = logging.getLogger(__name__)

APPROVAL_SCHEMA: types.ElicitRequestedSchema = {
    "type": "object",
    "properties": {"approve": {"type": "boolean", "title": "Allow this call", "default": True}},
    "required": ["approve"],
}

Run = Callable[[Approver], Coroutine[Any, Any, RunResult]]
"""Starts `execute_code` with the given approver."""

_REPLICA_PREFIX = re.compile(rf"({REPLICA_ID.pattern})\.")
NO_PEERS = (
    "no replicas are configured here: give each replica an id (`serve --replica-id NAME` or PORTAL_REPLICA_ID) and "
    "list every replica's URL in `http: {replica: {peers: {NAME: URL}}}` of the config they share"
)


def new_token(replica: str | None) -> str:
    """A fresh `requestState`: `REPLICA.<random>` when this portal is a named replica, else just the random part."""
    random = secrets.token_urlsafe(24)  # URL-safe base64: never a dot, so the first dot ends the replica id
    return f"{replica}.{random}" if replica else random


def replica_of(token: str) -> str | None:
    """The replica a `requestState` token names, or None. The token comes from the client, so the id is only ever
    compared with this replica's and looked up among the configured peers, never used as an address."""
    found = _REPLICA_PREFIX.match(token)
    return found.group(1) if found else None


def can_elicit(ctx: ServerRequestContext[Any]) -> bool:
    capabilities = ctx.session.client_capabilities
    return capabilities is not None and capabilities.elicitation is not None


def asks_in_result(ctx: ServerRequestContext[Any]) -> bool:
    """True on 2026-07-28 (questions go back in an `InputRequiredResult`); handshake-era clients are asked with a
    server request instead, which fails as unsupported where there is no session to carry it (stateless HTTP)."""
    return ctx.protocol_version in MODERN_PROTOCOL_VERSIONS


def verdict_of(answer: types.ElicitResult) -> Verdict:
    if answer.action == "accept":
        # Fail closed: only an explicit yes approves (an unticked box may arrive as null, "false", 0 or nothing).
        return "approved" if (answer.content or {}).get("approve") is True else "declined"
    return "declined" if answer.action == "decline" else "cancelled"


def direct_approver(ctx: ServerRequestContext[Any]) -> Approver:
    """Asks with a server-initiated request on this request's connection (handshake-era protocol)."""

    async def approve(request: ApprovalRequest) -> Verdict:
        try:
            answer = await ctx.session.elicit_form(
                request.message(), APPROVAL_SCHEMA, related_request_id=ctx.request_id
            )
        except NoBackChannelError:  # a handshake-era request without a session (stateless HTTP)
            return "no_session"
        except Exception:  # the client's error or a closed connection: the call is simply not approved
            logger.warning("the approval request for %s failed", request.tool, exc_info=True)
            return "failed"
        return verdict_of(answer)

    return approve


async def no_session(request: ApprovalRequest) -> Verdict:
    """The approver of a handshake-era request without a session (stateless HTTP): nobody can be asked, and the
    client's capabilities are not even known (they were declared on an `initialize` this portal did not keep)."""
    return "no_session"


@dataclass
class _PendingRun:
    """One run started for a 2026-07-28 client: its task, and the questions it is waiting on."""

    user: str | None
    task: asyncio.Task[RunResult] | None = None
    asks: dict[str, tuple[ApprovalRequest, asyncio.Future[Verdict]]] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    finished_at: float | None = None
    _keys: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def mark_finished(self) -> None:
        self.finished_at = time.monotonic()

    async def ask(self, request: ApprovalRequest) -> Verdict:
        key = f"approve-{next(self._keys)}"
        future: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        self.asks[key] = (request, future)
        self.changed.set()
        try:
            return await future
        finally:
            self.asks.pop(key, None)  # answered, or given up by the policy's timeout

    def answer(self, responses: Mapping[str, Any]) -> None:
        for key, response in responses.items():
            pending = self.asks.get(key)
            if pending is not None and not pending[1].done() and isinstance(response, types.ElicitResult):
                pending[1].set_result(verdict_of(response))

    def open_questions(self) -> dict[str, types.ElicitRequest]:
        return {
            key: types.ElicitRequest(
                params=types.ElicitRequestFormParams(message=request.message(), requested_schema=APPROVAL_SCHEMA)
            )
            for key, (request, future) in self.asks.items()
            if not future.done()
        }


MAX_WAITING_PER_USER = 16
"""Runs of one user that may wait for approval answers at once (each holds a sandbox worker while it waits)."""


class PendingRuns:
    """Runs paused for an approval under the 2026-07-28 protocol, by their `requestState` token."""

    def __init__(
        self, keep_seconds: float, replica: str | None = None, max_waiting: int = MAX_WAITING_PER_USER
    ) -> None:
        self._keep = keep_seconds
        self._max_waiting = max_waiting
        self._runs: dict[str, _PendingRun] = {}
        self.replica = replica
        """This replica's id (`http.replica.id`): new tokens name it, tokens naming another one were misrouted."""

    def __len__(self) -> int:
        return len(self._runs)

    async def start(self, user: str | None, run: Run) -> RunResult | types.InputRequiredResult | str:
        """Start a run that may ask questions; returns its result, the first questions, or (too many of this
        user's runs are waiting for answers already) an error message."""
        self._forget_stale()
        waiting = sum(1 for pending in self._runs.values() if pending.user == user and pending.asks)
        if waiting >= self._max_waiting:
            return (
                f"execute_code: {waiting} of your runs are already waiting for your approval answers; answer or let "
                f"them time out (the policy's approval_timeout) before starting more"
            )
        token = new_token(self.replica)
        pending = self._runs[token] = _PendingRun(user)
        pending.task = asyncio.get_running_loop().create_task(run(pending.ask))
        pending.task.add_done_callback(_retrieve)
        pending.task.add_done_callback(lambda _: pending.mark_finished())
        return await self._progress(token, pending)

    async def resume(
        self, user: str | None, token: str, responses: Mapping[str, Any] | None, *, not_forwarded: str | None = None
    ) -> RunResult | types.InputRequiredResult | str:
        """Hand the client's answers to the run `token` names; returns as `start` does, or an error message.

        `not_forwarded`: why the HTTP layer kept an answer for another replica's run here (see `peers`)."""
        owner = replica_of(token)
        if owner is not None and owner != self.replica:
            here = f"this replica ({self.replica!r})" if self.replica else "this replica (which has no id)"
            return (
                f"execute_code: this approval answer is for a run on portal replica {owner!r}, and {here} could "
                f"not forward it there: {not_forwarded or NO_PEERS}. Run the code again."
            )
        pending = self._runs.get(token)
        if pending is None or pending.user != user:  # another user's run: told the same, so nothing is revealed
            elsewhere = (
                ""
                if owner is not None or self.replica is not None
                else " If several portal replicas serve behind a load balancer, the run may live on another portal "
                f"replica that could not be told from this answer: {NO_PEERS}, so answers reach the run's replica."
            )
            return (
                "execute_code: this approval answer belongs to no run waiting here: the run may have timed out "
                "(the policy's approval_timeout) or finished, or the answer came with another user's token."
                f"{elsewhere} Run the code again."
            )
        pending.answer(responses or {})
        return await self._progress(token, pending)

    async def _progress(self, token: str, pending: _PendingRun) -> RunResult | types.InputRequiredResult:
        """Wait until the run finishes or asks something new."""
        assert pending.task is not None
        while True:
            questions = pending.open_questions()
            if pending.task.done():
                self._runs.pop(token, None)
                return pending.task.result()
            if questions:
                pending.changed.clear()
                return types.InputRequiredResult(input_requests=dict(questions), request_state=token)
            pending.changed.clear()
            waiter = asyncio.ensure_future(pending.changed.wait())
            try:
                await asyncio.wait({pending.task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter

    def _forget_stale(self) -> None:
        """Drop runs that finished more than `keep_seconds` ago while no client came back for the result."""
        now = time.monotonic()
        for token, pending in list(self._runs.items()):
            if pending.finished_at is not None and now - pending.finished_at > self._keep:
                self._runs.pop(token, None)


def _retrieve(task: asyncio.Task[RunResult]) -> None:
    """Mark a failure as seen (it is raised to whoever collects the result, if anyone does)."""
    if not task.cancelled() and task.exception() is not None:
        logger.error("an execute_code run waiting for approval failed", exc_info=task.exception())
