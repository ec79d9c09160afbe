"""A tool call from agent code: look it up, validate the arguments, call downstream, shape the result, audit.

Everything arriving here came out of the sandbox, so nothing is trusted: the name must be an exact `str` naming a
catalog entry, the arguments an exact `dict` that satisfies the tool's inputSchema. Only then does the call leave
the portal.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
from mcp_types import CallToolResult, TextContent

from portal_mcp.catalog.model import Catalog, ToolEntry
from portal_mcp.catalog.schemas import Validators, drop_omitted
from portal_mcp.control.access import Decision, UserRules
from portal_mcp.control.audit import AuditEvent, AuditSink, Outcome, Verdict
from portal_mcp.control.budgets import Budgets
from portal_mcp.control.credentials import Redactor
from portal_mcp.control.principal import Principal
from portal_mcp.control.searches import Searches
from portal_mcp.downstream import CallContext
from portal_mcp.errors import (
    ArgumentError,
    LimitError,
    PolicyDeniedError,
    PortalError,
    ToolCallError,
    ToolFailedError,
    UnknownToolError,
)
from portal_mcp.runs.approval_text import arguments_digest, escape, render_arguments
from portal_mcp.runs.code_search import NAME, search_arguments, search_hits
from portal_mcp.runs.resources import ResourceCalls, is_resource_call
from portal_mcp.sandbox.protocol import SEARCH_ACTION

logger = logging.getLogger(__name__)

_REFUSALS: dict[Verdict, str] = {
    "declined": "the user declined it when asked for approval",
    "cancelled": "the user dismissed the approval request without approving it",
    "unsupported": (
        "it needs the user's approval, and this client cannot ask for it (no MCP elicitation support); "
        "the user can make the call themselves, or an operator can change `approve` in the portal's policy"
    ),
    "no_session": (
        "it needs the user's approval, and the user cannot be asked on this connection: a 2025-era client over "
        "stateless HTTP has no session to carry the question; use a client of the 2026-07-28 protocol, or a "
        "stateful portal (without `http.stateless`)"
    ),
    "timeout": "the user did not answer the approval request within {timeout:g} s",
    "failed": "the approval request to the user's client failed",
}
_CHANGED = "its arguments changed after the user approved it; make the call again to ask again"


@dataclass(frozen=True)
class ApprovalRequest:
    """A call waiting for the user's yes: what is shown to them (through MCP elicitation)."""

    user: str
    tool: str
    """The qualified name (`server.tool`)."""
    title: str
    arguments: Mapping[str, Any]
    reason: str
    """Why it needs approval, e.g. "it may change or delete data (annotated destructive)"."""

    digest: str = ""
    """SHA-256 of the full arguments (`approval_text.arguments_digest`): the approved call must still match it."""

    def message(self) -> str:
        """Every argument on its own line, each cut and escaped on its own (approval_text.py)."""
        return (
            f"Code running for {escape(self.user)} wants to call {self.tool} ({escape(self.title)}): {self.reason}."
            f"\nArguments:\n{render_arguments(self.arguments)}\nFingerprint: {self.digest[:16]}\nAllow this call?"
        )


Approver = Callable[[ApprovalRequest], Awaitable[Verdict]]
Searcher = Callable[[str, int, Principal, str | None], Sequence[ToolEntry]]
"""(query, limit, the caller, one server or None) -> the tools the caller may call that fit, best first."""


@dataclass
class Caller:
    """Whom a call runs for, within which run: how to ask them for approval, and what the run has used."""

    principal: Principal
    approve: Approver | None = None
    """Asks the user about one call (None: this client cannot be asked)."""
    pause: Callable[[], AbstractContextManager[None]] = field(default=nullcontext)
    """Stops the run's wall clock while a person decides."""
    calls: int = 0
    context: CallContext | None = None
    """The run behind each call, for the downstream link: its questions and progress reach this run's user."""


class ToolTransport(Protocol):
    """What the bridge needs from the downstream layer."""

    async def call_tool(
        self, server: str, tool: str, arguments: dict[str, Any], *, user: str, context: CallContext | None = None
    ) -> CallToolResult:
        """Call as `user`: a server whose headers/env say `${user.KEY}` is reached with that user's secrets;
        `context` routes what the server asks or reports during the call to the run that made it."""
        ...

    async def ready(self, server: str) -> None:
        """Return once `server` is past its first connection attempt (at once for any other server)."""
        ...


class Bridge:
    """Validates and forwards tool calls. `catalog` is a callable so a refreshed catalog is seen at once.

    Everything that goes back to the agent (the value, or the error message) passes `redactor` first, so a
    downstream that echoes a credential (a 401 body quoting the token, a tool printing its environment) cannot
    hand it to the model.
    """

    def __init__(
        self,
        catalog: Callable[[], Catalog],
        transport: ToolTransport,
        audit: AuditSink,
        redactor: Redactor,
        validators: Validators,
        *,
        approval_timeout: float,
        budgets: Budgets,
        observe: Callable[[ToolEntry, Any], None] | None = None,
        search: Searcher | None = None,
        resources: ResourceCalls | None = None,
    ) -> None:
        """`observe(entry, value)` learns from each successful result (the shapes of results, `ShapeBook`);
        `search(query, limit, principal)` finds the tools the principal may call (`portal.search` in agent code)."""
        self._observe = observe
        self._search = search
        self.resources = resources
        self._catalog = catalog
        self._budgets = budgets
        self._transport = transport
        self._audit = audit
        self._redactor = redactor
        self._approval_timeout = approval_timeout
        self._validators = validators
        self._searches = Searches(budgets, audit, redactor)  # admitted, offloaded and recorded as search_api is

    async def call(self, qualified: str, arguments: dict[str, Any], *, caller: Caller) -> Any:
        """Run one tool call for `caller` under their policy; returns the agent-facing value or raises a
        `PortalError` with a message for the agent."""
        if qualified == SEARCH_ACTION:
            return await self.search(arguments, caller=caller)
        server, _, method = qualified.partition(".") if type(qualified) is str else ("", "", "")
        if self.resources is not None and is_resource_call(method) and self._catalog().get(qualified) is None:
            return await self.resources.call(server, method, arguments, caller.principal)  # runs/resources.py
        rules = caller.principal.rules
        who = caller.principal.name
        started = time.perf_counter()
        size_in = 0
        detail = ""
        try:
            entry = self._lookup(qualified)
            decision = self._admit(entry, rules, caller)
            if type(arguments) is not dict or any(type(key) is not str for key in arguments):
                raise ArgumentError(qualified, "", "arguments must be keyword arguments")
            arguments = drop_omitted(entry.input_schema, arguments)
            size_in = len(json.dumps(arguments, default=str))
            # Budgets (control/budgets.py): sizes and bytes in flight checked first; big work off the event loop.
            with self._budgets.call(who, caller, size_in) as held:
                await self._budgets.offload(
                    self._validators.check, qualified, entry.input_schema, arguments, size=size_in, user=who
                )
                if decision is Decision.APPROVE:
                    await self._approve(entry, arguments, rules, caller)
                    detail = "approved"
                with caller.pause():
                    # A server still starting (the portal serves before its servers are up) does not use up the run.
                    await self._transport.ready(entry.server)
                result = await self._transport.call_tool(
                    entry.server, entry.name, arguments, user=who, context=caller.context
                )
                size_out = result_size(result)
                self._budgets.result(size_out)
                held.add(size_out)
                value = await self._budgets.offload(self._shape, qualified, result, size=size_out, user=who)
                if self._observe is not None:
                    self._observe(entry, value)
        except PortalError as exc:
            refused = isinstance(exc, ToolCallError | LimitError) and not isinstance(exc, ToolFailedError)
            outcome = "refused" if refused else "error"
            self._record(who, qualified, outcome, started, size_in, 0, audit_detail(exc, approved=bool(detail)))
            if isinstance(exc, PolicyDeniedError):
                extra = {"user": who, "event": "policy_refused", "server": qualified.split(".", 1)[0]}
                logger.info("policy refused %s for %r (rule %s)", qualified, who, exc.rule, extra=extra)
            raise self._redactor.error(exc) from None
        except BaseException as exc:  # cancelled (wait_for, the run's time limit), RecursionError, a portal bug
            self._record(who, qualified, "error", started, size_in, 0, unfinished(exc, approved=bool(detail)))
            raise
        self._record(who, qualified, "ok", started, size_in, size_out, detail)
        return value

    async def search(self, arguments: Any, *, caller: Caller) -> list[dict[str, str]]:
        """`portal.search` from agent code: the tools the caller may call that fit the query, audited like a
        `search_api` search (the query redacted; detail `code`) and under the same per-user search budget.

        The search is CPU work over the whole catalog (and builds its index after a change): it runs in a thread of
        `budgets.offload`, one at a time per user, so code searching in a loop never holds the event loop that
        serves every other user."""
        who = caller.principal.name
        started = time.perf_counter()
        query = str(arguments.get("query")) if type(arguments) is dict and type(arguments.get("query")) is str else ""
        try:
            if self._search is None:
                raise UnknownToolError(NAME)
            query, limit, server = search_arguments(arguments)
            self._searches.admit(who, query)  # the rate and the length first, on the loop: a refusal costs nothing
            hits = await self._searches.offload(_found, self._search, query, limit, caller.principal, server, user=who)
        except PortalError as exc:
            outcome: Outcome = "refused" if isinstance(exc, LimitError | ArgumentError) else "error"
            self._searches.record(who, outcome, started, query, f"code {audit_detail(exc)}")
            raise self._redactor.error(exc) from None
        self._searches.record(who, "ok", started, query, "code", len(json.dumps(hits)))
        return hits

    def _shape(self, qualified: str, result: CallToolResult) -> Any:
        return self._redactor.value(result_value(qualified, result))

    def _admit(self, entry: ToolEntry, rules: UserRules, caller: Caller) -> Decision:
        """The policy's answer for this call, counting it against the run's `calls_per_run`."""
        if rules.calls_per_run is not None:
            caller.calls += 1
            if caller.calls > rules.calls_per_run:
                raise PolicyDeniedError(
                    entry.qualified_name,
                    "calls_per_run",
                    f"{rules.user!r} may make {rules.calls_per_run} tool calls per run; do the rest in a new run",
                )
        return Decision.ALLOW if rules.unrestricted else rules.decide(entry)

    async def _approve(self, entry: ToolEntry, arguments: dict[str, Any], rules: UserRules, caller: Caller) -> None:
        """Ask the user about this call; anything but a yes raises `PolicyDeniedError`."""
        timeout = self._approval_timeout
        verdict: Verdict = "unsupported"
        digest = arguments_digest(arguments)
        if caller.approve is not None:
            if rules.approve == "always":
                reason = "the portal's policy asks before every call"
            elif rules.hints(entry).get("destructiveHint") is True:
                reason = "it may change or delete data (annotated destructive)"
            else:
                reason = "it may change or delete data (not annotated read-only)"
            request = ApprovalRequest(
                rules.user, entry.qualified_name, entry.title or entry.name, arguments, reason, digest
            )
            with caller.pause():
                verdict = "timeout"
                with anyio.move_on_after(timeout):
                    verdict = await caller.approve(request)
        if verdict != "approved":
            raise PolicyDeniedError(
                entry.qualified_name, f"approval:{verdict}", _REFUSALS[verdict].format(timeout=timeout)
            )
        if arguments_digest(arguments) != digest:  # the call sent must be the one the person saw
            raise PolicyDeniedError(entry.qualified_name, "approval:changed", _CHANGED)

    def _lookup(self, qualified: object) -> ToolEntry:
        if type(qualified) is not str:
            raise UnknownToolError(repr(qualified))
        catalog = self._catalog()
        entry = catalog.get(qualified)
        if entry is None:
            raise UnknownToolError(qualified, catalog.close_matches(qualified))
        return entry

    def _record(
        self, user: str, subject: str, outcome: Any, started: float, size_in: int, size_out: int, detail: str
    ) -> None:
        duration = (time.perf_counter() - started) * 1000
        event = AuditEvent("call", user, outcome, duration, subject, detail, size_in, size_out)
        self._audit.record(event)


def audit_detail(exc: PortalError, *, approved: bool = False) -> str:
    """What the audit keeps of a failure: its kind, field or policy rule, never its message.

    Messages can quote argument values and downstream errors can echo them back, and audit records promise
    to hold no values. `approved`: the user had approved the call before it failed.
    """
    field = f" field={exc.field}" if isinstance(exc, ArgumentError) and exc.field else ""
    rule = f" rule={exc.rule}" if isinstance(exc, PolicyDeniedError) else ""
    limit = f" limit={exc.key}" if isinstance(exc, LimitError) else ""
    return type(exc).__name__ + field + rule + limit + (" approved" if approved else "")


def unfinished(exc: BaseException, *, approved: bool = False) -> str:
    """The audit detail of a call that ended without a result or a `PortalError`: `cancelled`, or the type."""
    kind = "cancelled" if isinstance(exc, anyio.get_cancelled_exc_class()) else type(exc).__name__
    return kind + (" approved" if approved else "")


def result_size(result: CallToolResult) -> int:
    """Bytes of text the downstream sent, for the audit.

    Read off the text blocks rather than re-encoding the value: the sandbox host encodes it once already, and
    results run to megabytes. Only a result with structured content and no text is encoded here.
    """
    texts = [block.text for block in result.content if isinstance(block, TextContent)]
    if texts or result.structured_content is None:
        return sum(len(text.encode()) for text in texts)
    return len(json.dumps(result.structured_content, default=str).encode())


def result_value(qualified: str, result: CallToolResult) -> Any:
    """The agent-facing value of a tool result, per the contract in ARCHITECTURE.md."""
    texts = [block.text for block in result.content if isinstance(block, TextContent)]
    if result.is_error:
        message = "\n".join(texts).strip() or "the tool reported an error without a message"
        raise ToolFailedError(qualified, message)
    if result.structured_content is not None:
        return result.structured_content
    others = [block.model_dump(by_alias=True, exclude_none=True) for block in result.content if block.type != "text"]
    if others:
        return [{"type": "text", "text": text} for text in texts] + others
    text = "\n".join(texts)
    try:
        return json.loads(text)
    except ValueError:
        return text


def _found(search: Searcher, query: str, limit: int, principal: Principal, server: str | None) -> list[dict[str, str]]:
    """A search from code and its hits as code gets them (in a worker thread: `Bridge.search`)."""
    return search_hits(search(query, limit, principal, server))
