"""One `execute_code` run as an object: `Run`, started by `Portal.start_run` and owned by the portal's task group.

```
run = await portal.start_run(code, principal)          # refused at once (pre-run check, rate limit) or running
outcome = await run.wait()                        # a RunResult from the sandbox, or a Refused
```
A run holds what belongs to it alone: its code and principal, its `requestState` token, its wall clock (paused while
a person answers), its call count, the approval questions it has open and, once over, its outcome. Whoever serves
the run (the MCP surface, the command line) decides how questions reach a person: asked now through an `Approver`,
left open on the run for the client to answer later (`ASK_LATER`: 2026-07-28's InputRequiredResult), or nobody can
be asked (None). `cancel()` stops a run; closing the portal cancels every run still going.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

import anyio
import mcp_types as types

from portal_mcp.control.audit import AuditEvent, Outcome, RefusalKind, Verdict
from portal_mcp.control.principal import Principal
from portal_mcp.downstream import DECLINED, CallContext
from portal_mcp.errors import RunCancelledError
from portal_mcp.runs.asking import Elicitation, verdict_of
from portal_mcp.runs.bridge import ApprovalRequest, Approver, Caller
from portal_mcp.runs.precheck import Problem
from portal_mcp.runs.progress import RunProgress
from portal_mcp.sandbox.host import RunClock, RunResult

__all__ = ["ASK_LATER", "Asking", "Elicitor", "Refused", "Run", "RunOutcome", "UrlsDone", "since_ms"]

logger = logging.getLogger(__name__)

ASK_LATER: Final = "later"
Asking = Approver | Literal["later"] | None
"""How a run's approval questions reach a person: an `Approver` asks now; `ASK_LATER` leaves them open on the run
(`Run.open_questions`, answered with `Run.answer`); None: nobody can be asked, so such calls are refused."""
Elicitor = Callable[[Elicitation], Awaitable[types.ElicitResult]]
"""Asks the user a downstream server's question now (a handshake-era client); with `ASK_LATER` such questions are
left open on the run like approvals, and with neither they are declined."""
UrlsDone = Callable[[str], Awaitable[None]]
"""Given for a client that opens URLs (URL-mode elicitation): tells it the URL question with this elicitation id is
done (`notifications/elicitation/complete` on 2025-11-25; nothing on 2026-07-28, which has no such notification):
the portal's own "connect your account" questions, and a downstream server's when that server says so."""


def since_ms(started: float) -> float:
    """Milliseconds since `started` (a `time.perf_counter()` reading)."""
    return (time.perf_counter() - started) * 1000


@dataclass(frozen=True)
class Refused:
    """A run the portal did not start: its code failed the pre-run check, or its user is over their rate limit or
    a budget of `limits:`."""

    kind: RefusalKind
    error: str
    """What the agent reads: the problems with line and column, or when the next run is allowed."""
    duration_ms: float
    problems: tuple[Problem, ...] = ()
    rule: str = ""
    """The audit's detail when the kind alone does not say it (`limit=limits.max_code_bytes`)."""

    # What a RunResult says too, so a caller can read either outcome the same way.
    @property
    def ok(self) -> bool:
        return False

    @property
    def output(self) -> str:
        return ""

    @property
    def value(self) -> str | None:
        return None

    @property
    def tool_calls(self) -> int:
        return 0

    @property
    def error_kind(self) -> RefusalKind:
        return self.kind

    def render(self) -> str:
        return f"Error: {self.error}"


RunOutcome = RunResult | Refused
"""How a run ended: the sandbox's result (which may be an error of the code), or the portal's refusal."""


@dataclass
class _Question:
    request: ApprovalRequest | Elicitation
    answered: anyio.Event
    answer: types.ElicitResult | None = None


class Run:
    """One run of agent code for `principal`. Built by `Portal.start_run`; its task lives in the portal's group."""

    def __init__(
        self,
        code: str,
        principal: Principal,
        token: str,
        asking: Asking,
        elicit: Elicitor | None = None,
        progress: RunProgress | None = None,
        urls: UrlsDone | None = None,
    ) -> None:
        self.code = code
        self.principal = principal
        self.token = token
        """The `requestState` a 2026-07-28 client sends back with its answers."""
        self.asks_later = asking == ASK_LATER
        self.clock = RunClock()
        approver = self._ask if asking == ASK_LATER else asking
        self._elicitor = elicit
        self._urls = urls
        self.progress = progress
        """What the run did so far, for a client that asked for progress notifications (None: nobody did)."""
        context = CallContext(
            self,
            self._elicit,
            progress.server_progress if progress is not None else None,
            connect=self._connect if urls is not None else None,
            completed=urls,
        )
        self.caller = Caller(principal, approver, self.clock.paused, context=context)
        self.cancelled = False
        """Stopped by `cancel()` (its client cancelled the request, or went away) before it ended by itself."""
        self.outcome: RunOutcome | None = None
        self.finished_at: float | None = None
        self.finished_at_wall: float | None = None
        """When it ended (`time.time()`), for a task's `lastUpdatedAt`."""
        self._error: BaseException | None = None
        self._questions: dict[str, _Question] = {}
        self._keys = itertools.count(1)
        self._scope = anyio.CancelScope()
        self._finished = anyio.Event()
        self._changed = anyio.Event()

    @property
    def calls(self) -> int:
        """Tool calls made so far (counted against the policy's `calls_per_run`)."""
        return self.caller.calls

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    def refuse(self, refusal: Refused) -> None:
        """End the run before it started."""
        self.outcome = refusal
        self._finish()

    async def execute(
        self, body: Callable[[Run], Awaitable[RunResult]], record: Callable[[AuditEvent], None] | None = None
    ) -> None:
        """The run's task: `body` runs the code; its result, or its failure, becomes what `wait` returns. A run
        stopped by `cancel()` is given to `record` (the audit) as cancelled; `body` records the runs that end."""
        started = time.perf_counter()
        try:
            with self._scope:
                self.outcome = await body(self)
        except Exception as exc:  # kept for whoever waits: the portal's task group must not fail with it
            self._error = exc
        finally:
            if self.cancelled and self.outcome is None and self._error is None and record is not None:
                record(self.cancelled_event((time.perf_counter() - started) * 1000))
            self._finish()

    @property
    def printed(self) -> Callable[[str], None] | None:
        """Told the code's printed text as it arrives, when a client follows the run's progress."""
        return self.progress.printed if self.progress is not None else None

    def cancel(self) -> None:
        """Stop the run (a no-op once it is over): the sandbox worker is killed, calls in flight are cancelled."""
        if not self.done:
            self.cancelled = True
        self._scope.cancel()

    async def wait(self) -> RunOutcome:
        """The outcome, once the run is over. Raises what stopped it: the sandbox's error, or RunCancelledError."""
        await self._finished.wait()
        if self._error is not None:
            raise self._error
        if self.outcome is None:
            raise RunCancelledError()
        return self.outcome

    async def changed(self) -> None:
        """Return when the run is over or has a new open question."""
        if not self.done:
            await self._changed.wait()

    def open_questions(self) -> dict[str, ApprovalRequest | Elicitation]:
        """The questions waiting for an answer, by key: approvals, and downstream servers' questions."""
        return {key: q.request for key, q in self._questions.items() if not q.answered.is_set()}

    def answer(self, answers: Mapping[str, types.ElicitResult]) -> None:
        """Answer open questions by key; unknown keys and questions answered already are ignored."""
        for key, answer in answers.items():
            question = self._questions.get(key)
            if question is not None and not question.answered.is_set():
                question.answer = answer
                question.answered.set()

    async def _ask(self, request: ApprovalRequest) -> Verdict:
        answer = await self._open(f"approve-{next(self._keys)}", request)
        return verdict_of(answer) if answer is not None else "cancelled"

    async def _elicit(self, server: str, params: types.ElicitRequestParams) -> types.ElicitResult:
        """A downstream server's question during one of this run's calls (`CallContext.elicit`): asked now, left
        open for the client to answer later, or declined when nobody can be asked. The run's clock stops meanwhile."""
        question = Elicitation(server, params)
        with self.clock.paused():
            if self.asks_later:
                return await self._open(f"elicit-{next(self._keys)}", question) or DECLINED
            if self._elicitor is not None:
                return await self._elicitor(question)
        return DECLINED

    async def _connect(
        self, server: str, question: types.ElicitRequestURLParams, finished: Callable[[], Awaitable[str | None]]
    ) -> str | None:
        """Ask the user to open a URL and sign in there (`CallContext.connect`), then wait until `finished` says how
        it went (None: done; a declined question gives ""). The run's clock stops meanwhile; the client is told
        when the sign-in is done."""
        with self.clock.paused():
            answer = await self._elicit(server, question)
            if answer.action != "accept":
                return ""
            problem = await finished()
        if problem is None and self._urls is not None and question.elicitation_id:
            await self._urls(question.elicitation_id)
        return problem

    async def _open(self, key: str, request: ApprovalRequest | Elicitation) -> types.ElicitResult | None:
        question = self._questions[key] = _Question(request, anyio.Event())
        self._notify()
        try:
            await question.answered.wait()
            return question.answer
        finally:
            self._questions.pop(key, None)  # answered, or given up (the policy's timeout, the call's end)

    def _notify(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    def _finish(self) -> None:
        self.finished_at, self.finished_at_wall = time.monotonic(), time.time()
        self._finished.set()
        self._notify()

    def cancelled_event(self, duration_ms: float) -> AuditEvent:
        """The record of a run stopped by `cancel()`: an error whose detail says `cancelled`."""
        return AuditEvent(
            "run", self.principal.name, "error", duration_ms, self._digest(), "cancelled", len(self.code), 0
        )

    def audit_event(self, outcome: RunOutcome) -> AuditEvent:
        """The run's audit record. It keeps rules and lines, not the rendered problems (they quote argument values),
        nor the error text of a failed run (it can quote the code and the values it handled)."""
        if isinstance(outcome, Refused):
            kind: Outcome = "refused"
            detail = "; ".join(f"line {p.line}: {p.rule}" for p in outcome.problems) or outcome.rule or outcome.kind
        else:
            kind, detail = ("ok" if outcome.ok else "error"), outcome.error_kind or ""
        return AuditEvent(
            "run", self.principal.name, kind, outcome.duration_ms, self._digest(), detail, len(self.code),
            len(outcome.output),
        )  # fmt: skip

    def _digest(self) -> str:
        return hashlib.sha256(self.code.encode(errors="replace")).hexdigest()[:16]
