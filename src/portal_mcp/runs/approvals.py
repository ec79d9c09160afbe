"""Asking the user to approve a call made inside agent code, and downstream servers' questions, through MCP
elicitation, in either protocol era (the questions themselves: `asking.py`).

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

import logging
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import NoBackChannelError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from portal_mcp.config import REPLICA_ID
from portal_mcp.control.audit import Verdict
from portal_mcp.errors import TooManyWaitingError, UnknownRunError
from portal_mcp.runs.asking import APPROVAL_SCHEMA, Elicitation, request_of, send, verdict_of
from portal_mcp.runs.bridge import ApprovalRequest, Approver
from portal_mcp.runs.run import Elicitor, Run, RunOutcome

logger = logging.getLogger(__name__)

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


def direct_elicitor(ctx: ServerRequestContext[Any]) -> Elicitor:
    """Asks a downstream server's question with a server-initiated request on this request's connection
    (handshake-era protocol); a client that fails to answer declines it."""

    async def elicit(question: Elicitation) -> types.ElicitResult:
        try:
            return await send(ctx.session, question, ctx.request_id)
        except Exception:  # the client's error, no back channel, or a closed connection: the server sees a decline
            logger.warning("asking the user %s's question failed", question.server, exc_info=True)
            return types.ElicitResult(action="decline")

    return elicit


async def no_session(request: ApprovalRequest) -> Verdict:
    """The approver of a handshake-era request without a session (stateless HTTP): nobody can be asked, and the
    client's capabilities are not even known (they were declared on an `initialize` this portal did not keep)."""
    return "no_session"


MAX_WAITING_PER_USER = 16
"""Runs of one user that may wait for approval answers at once (each holds a sandbox worker while it waits)."""


class PendingRuns:
    """The runs of 2026-07-28 clients paused on approval questions, by their `requestState` token. The portal owns
    it (the runs themselves live in the portal's task group); the MCP surface hands it answers."""

    def __init__(
        self, keep_seconds: float, replica: str | None = None, max_waiting: int = MAX_WAITING_PER_USER
    ) -> None:
        self._keep = keep_seconds
        self._max_waiting = max_waiting
        self._runs: dict[str, Run] = {}
        self.replica = replica
        """This replica's id (`http.replica.id`): new tokens name it, tokens naming another one were misrouted."""

    def __len__(self) -> int:
        return len(self._runs)

    def new_token(self) -> str:
        return new_token(self.replica)

    def check_room(self, user: str) -> None:
        """Raise `TooManyWaitingError` when `user` has too many runs waiting for answers to start another."""
        self._forget_stale()
        waiting = sum(1 for run in self._runs.values() if run.principal.name == user and run.open_questions())
        if waiting >= self._max_waiting:
            raise TooManyWaitingError(user, waiting)

    async def progress(self, run: Run) -> RunOutcome | types.InputRequiredResult:
        """Wait until `run` is over (its outcome) or, when it asks later, has open questions (kept here by its token
        and returned as an InputRequiredResult). The run is cancelled if this wait is: its client cancelled the
        request or went away (one that comes back later does so after an InputRequiredResult, not during a wait)."""
        try:
            while True:
                questions = run.open_questions()
                if run.done:
                    self._runs.pop(run.token, None)
                    return await run.wait()
                if questions and run.asks_later:
                    self._runs[run.token] = run
                    input_requests: dict[str, types.InputRequest] = {
                        key: request_of(request) for key, request in questions.items()
                    }
                    return types.InputRequiredResult(input_requests=input_requests, request_state=run.token)
                await run.changed()
        except BaseException:
            self._runs.pop(run.token, None)
            run.cancel()
            raise

    def resume(
        self, user: str, token: str, responses: Mapping[str, Any] | None, *, not_forwarded: str | None = None
    ) -> Run:
        """Hand the client's answers to the run `token` names and return it (for `progress`). Raises
        `UnknownRunError` when no run of `user` waits here under that token.

        `not_forwarded`: why the HTTP layer kept an answer for another replica's run here (see `peers`)."""
        owner = replica_of(token)
        if owner is not None and owner != self.replica:
            here = f"this replica ({self.replica!r})" if self.replica else "this replica (which has no id)"
            raise UnknownRunError(
                f"execute_code: this approval answer is for a run on portal replica {owner!r}, and {here} could "
                f"not forward it there: {not_forwarded or NO_PEERS}. Run the code again."
            )
        run = self._runs.get(token)
        if run is None or run.principal.name != user:  # another user's run: told the same, so nothing is revealed
            elsewhere = (
                ""
                if owner is not None or self.replica is not None
                else " If several portal replicas serve behind a load balancer, the run may live on another portal "
                f"replica that could not be told from this answer: {NO_PEERS}, so answers reach the run's replica."
            )
            raise UnknownRunError(
                "execute_code: this approval answer belongs to no run waiting here: the run may have timed out "
                "(the policy's approval_timeout) or finished, or the answer came with another user's token."
                f"{elsewhere} Run the code again."
            )
        run.answer({key: answer for key, answer in (responses or {}).items() if isinstance(answer, types.ElicitResult)})
        return run

    def _forget_stale(self) -> None:
        """Drop runs that finished more than `keep_seconds` ago while no client came back for the result."""
        now = time.monotonic()
        for token, run in list(self._runs.items()):
            if run.finished_at is not None and now - run.finished_at > self._keep:
                self._runs.pop(token, None)
