"""Who a downstream server's questions and progress are for: the per-call context of a shared link.

A link serves every run of every user, so when a server sends `elicitation/create` or `notifications/progress`
during a call, the portal must find the run that made the call. Each call carries a `CallContext` (built by the
bridge for one run) and the link finds it three ways:

- progress: the SDK routes it by the request's progress token to the callback given to that very call;
- questions on a 2026-07-28 connection arrive in the call's own `InputRequiredResult`, driven in the caller's
  task, so the context variable set around the call is there; so it is for a handshake-era question over
  streamable HTTP (the SDK reads the POST's stream in the context of the task that sent the request);
- a handshake-era question over stdio carries nothing that names its call: it goes to the one run with calls in
  flight on the link, and is declined when several runs have calls there (the portal cannot tell whose it is).

A question that reaches nobody (no context, or a client that cannot be asked) is declined: the server sees
`action: decline`, which every server must handle.

A URL question the user accepted is remembered by its elicitation id, so the server's later
`notifications/elicitation/complete` (2025-11-25: the user finished at the URL) reaches the same run's client,
which may then retry what waited on it. A completion for an id this link's server never asked about is ignored:
one server cannot tell a client another server's sign-in is done.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

import anyio
import mcp_types as types
from mcp.client.session import ClientRequestContext
from mcp.shared.dispatcher import ProgressFnT

Elicit = Callable[[str, types.ElicitRequestParams], Awaitable[types.ElicitResult]]
"""(server, the server's question) -> the person's answer; the run decides how it reaches them."""
Progress = Callable[[str, float, float | None, str | None], Awaitable[None]]
"""(server, progress, total, message) of a downstream call, for the run's progress notifications."""

Completed = Callable[[str], Awaitable[None]]
"""(elicitation id) -> tell the run's client that a URL question it accepted is done."""
Connect = Callable[[str, types.ElicitRequestURLParams, Callable[[], Awaitable[str | None]]], Awaitable[str | None]]
"""(server, the URL to open, wait until the user is done there) -> None once they are, else why not (declined, the
flow failed or expired): how a run asks its user to connect their account, where the user's client opens URLs."""

DECLINED = types.ElicitResult(action="decline")


@dataclass(eq=False)
class CallContext:
    """What a call made inside one run brings to the link: how to ask that run's user, where progress goes."""

    owner: object
    """The run (any object with identity): calls of one owner may share a question when it cannot be placed."""
    elicit: Elicit | None = None
    progress: Progress | None = None
    connect: Connect | None = None
    """Set when the run's client can open a URL (URL-mode elicitation): "connect your account" asks there."""
    completed: Completed | None = None
    """Set with `connect`: how a server's `notifications/elicitation/complete` reaches the run's client."""
    deadlines: list[anyio.CancelScope] = field(default_factory=list)
    """The timeouts of this context's requests in flight, lifted while a person answers."""

    @contextlib.contextmanager
    def timed(self, scope: anyio.CancelScope) -> Iterator[None]:
        self.deadlines.append(scope)
        try:
            yield
        finally:
            self.deadlines.remove(scope)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """The link's call timeout stops while a person answers and restarts in full afterwards."""
        saved = [(scope, scope.deadline - anyio.current_time()) for scope in self.deadlines]
        for scope, _ in saved:
            scope.deadline = math.inf
        try:
            yield
        finally:
            for scope, left in saved:
                scope.deadline = anyio.current_time() + max(left, 0.0)


CURRENT: ContextVar[CallContext | None] = ContextVar("portal_mcp_call", default=None)


URLS_REMEMBERED = 256
"""Accepted URL questions a link remembers for their completion; past this the oldest is forgotten (a server that
never completes its questions cannot grow the portal's memory)."""


class Asking:
    """One link's routing of server questions to the calls in flight on it."""

    def __init__(self, server: str) -> None:
        self.server = server
        self._in_flight: dict[int, CallContext] = {}
        self._urls: dict[str, CallContext] = {}
        """Accepted URL questions by elicitation id, oldest first: who is told when the server says one is done."""

    @contextlib.contextmanager
    def calling(self, context: CallContext | None) -> Iterator[None]:
        """Around one request: the context is the task's current one and counted in flight on this link."""
        if context is None:
            yield
            return
        key = id(context)
        self._in_flight[key] = context
        token = CURRENT.set(context)
        try:
            yield
        finally:
            CURRENT.reset(token)
            self._in_flight.pop(key, None)

    def context(self) -> CallContext | None:
        """The call a question arriving now belongs to, or None when it cannot be told."""
        found = CURRENT.get()
        if found is not None:
            return found
        owners = {id(context.owner): context for context in self._in_flight.values()}
        return next(iter(owners.values())) if len(owners) == 1 else None

    async def on_elicit(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        """The SDK's elicitation callback of this link's `Client` (both protocol generations)."""
        call = self.context()
        if call is None or call.elicit is None:
            return DECLINED
        with call.paused():
            answer = await call.elicit(self.server, params)
        if isinstance(params, types.ElicitRequestURLParams) and params.elicitation_id and answer.action == "accept":
            self._urls.pop(params.elicitation_id, None)
            self._urls[params.elicitation_id] = call
            while len(self._urls) > URLS_REMEMBERED:
                del self._urls[next(iter(self._urls))]
        return answer

    async def on_complete(self, elicitation_id: str) -> None:
        """The server's `notifications/elicitation/complete`: the client of the run that accepted that URL question
        is told (once); an id this server never asked about is ignored."""
        call = self._urls.pop(elicitation_id, None)
        if call is not None and call.completed is not None:
            await call.completed(elicitation_id)

    def progress_callback(self, context: CallContext | None) -> ProgressFnT | None:
        """The SDK progress callback of one call: the server's progress, named, to the run that made the call."""
        if context is None or context.progress is None:
            return None
        report, server = context.progress, self.server

        async def forward(progress: float, total: float | None, message: str | None) -> None:
            await report(server, progress, total, message)

        return forward
