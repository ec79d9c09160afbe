"""A tool call from agent code: look it up, validate the arguments, call downstream, shape the result, audit.

Everything arriving here came out of the sandbox, so nothing is trusted: the name must be an exact `str` naming a
catalog entry, the arguments an exact `dict` that satisfies the tool's inputSchema. Only then does the call leave
the portal.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import jsonschema
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.protocols import Validator
from mcp_types import CallToolResult, TextContent

from portal_mcp.catalog.model import Catalog, ToolEntry
from portal_mcp.control.access import AccessPolicy, Decision, UserRules
from portal_mcp.control.audit import AuditEvent, AuditSink, Verdict
from portal_mcp.control.credentials import Redactor
from portal_mcp.errors import (
    ArgumentError,
    PolicyDeniedError,
    PortalError,
    ToolCallError,
    ToolFailedError,
    UnknownToolError,
)

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
_MAX_PREVIEW = 600


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

    def message(self) -> str:
        preview = json.dumps(self.arguments, ensure_ascii=False, default=str)
        if len(preview) > _MAX_PREVIEW:
            preview = preview[: _MAX_PREVIEW - 3] + "..."
        return (
            f"Code running for {self.user} wants to call {self.tool} ({self.title}): {self.reason}.\n"
            f"Arguments: {preview}\nAllow this call?"
        )


Approver = Callable[[ApprovalRequest], Awaitable[Verdict]]


@dataclass
class Caller:
    """Whom a call runs for, within which run: how to ask them for approval, and what the run has used."""

    user: str
    approve: Approver | None = None
    """Asks the user about one call (None: this client cannot be asked)."""
    pause: Callable[[], AbstractContextManager[None]] = field(default=nullcontext)
    """Stops the run's wall clock while a person decides."""
    calls: int = 0


class ToolTransport(Protocol):
    """What the bridge needs from the downstream layer."""

    async def call_tool(
        self, server: str, tool: str, arguments: dict[str, Any], *, user: str | None = None
    ) -> CallToolResult:
        """Call as `user`: a server whose headers/env say `${user.KEY}` is reached with that user's secrets."""
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
        user: str,
        redactor: Redactor | None = None,
        policy: AccessPolicy | None = None,
    ) -> None:
        self._catalog = catalog
        self._transport = transport
        self._audit = audit
        self._user = user
        self._redactor = redactor or Redactor()
        self._policy = policy
        self._validators: dict[int, tuple[Mapping[str, Any], Validator]] = {}

    async def call(self, qualified: str, arguments: dict[str, Any], *, caller: Caller | None = None) -> Any:
        """Run one tool call for `caller` (default: the portal's user, who cannot be asked for approval); returns
        the agent-facing value or raises a `PortalError` with a message for the agent."""
        who = caller.user if caller is not None else self._user
        started = time.perf_counter()
        size_in = 0
        detail = ""
        try:
            entry = self._lookup(qualified)
            rules = self._policy.for_user(who) if self._policy is not None else None
            decision = self._admit(entry, rules, caller)
            if type(arguments) is not dict or any(type(key) is not str for key in arguments):
                raise ArgumentError(qualified, "", "arguments must be keyword arguments")
            arguments = drop_omitted(entry.input_schema, arguments)
            size_in = len(json.dumps(arguments, default=str))
            self._validate(entry, arguments)
            if decision is Decision.APPROVE and rules is not None:
                await self._approve(entry, arguments, rules, caller)
                detail = "approved"
            result = await self._transport.call_tool(entry.server, entry.name, arguments, user=who)
            value = self._redactor.value(result_value(qualified, result))
        except PortalError as exc:
            outcome = "refused" if isinstance(exc, ToolCallError) and not isinstance(exc, ToolFailedError) else "error"
            self._record(who, qualified, outcome, started, size_in, 0, audit_detail(exc, approved=bool(detail)))
            if isinstance(exc, PolicyDeniedError):
                extra = {"user": who, "event": "policy_refused", "server": qualified.split(".", 1)[0]}
                logger.info("policy refused %s for %r (rule %s)", qualified, who, exc.rule, extra=extra)
            raise self._redactor.error(exc) from None
        self._record(who, qualified, "ok", started, size_in, result_size(result), detail)
        return value

    def _admit(self, entry: ToolEntry, rules: UserRules | None, caller: Caller | None) -> Decision:
        """The policy's answer for this call, counting it against the run's `calls_per_run`."""
        if rules is None:
            return Decision.ALLOW
        if caller is not None and rules.calls_per_run is not None:
            caller.calls += 1
            if caller.calls > rules.calls_per_run:
                raise PolicyDeniedError(
                    entry.qualified_name,
                    "calls_per_run",
                    f"{rules.user!r} may make {rules.calls_per_run} tool calls per run; do the rest in a new run",
                )
        return Decision.ALLOW if rules.unrestricted else rules.decide(entry)

    async def _approve(
        self, entry: ToolEntry, arguments: dict[str, Any], rules: UserRules, caller: Caller | None
    ) -> None:
        """Ask the user about this call; anything but a yes raises `PolicyDeniedError`."""
        assert self._policy is not None  # `rules` come from it
        timeout = self._policy.approval_timeout
        verdict: Verdict = "unsupported"
        if caller is not None and caller.approve is not None:
            if rules.approve == "always":
                reason = "the portal's policy asks before every call"
            elif rules.hints(entry).get("destructiveHint") is True:
                reason = "it may change or delete data (annotated destructive)"
            else:
                reason = "it may change or delete data (not annotated read-only)"
            request = ApprovalRequest(rules.user, entry.qualified_name, entry.title or entry.name, arguments, reason)
            with caller.pause():
                verdict = "timeout"
                with anyio.move_on_after(timeout):
                    verdict = await caller.approve(request)
        if verdict != "approved":
            raise PolicyDeniedError(
                entry.qualified_name, f"approval:{verdict}", _REFUSALS[verdict].format(timeout=timeout)
            )

    def _lookup(self, qualified: object) -> ToolEntry:
        if type(qualified) is not str:
            raise UnknownToolError(repr(qualified))
        catalog = self._catalog()
        entry = catalog.get(qualified)
        if entry is None:
            raise UnknownToolError(qualified, catalog.close_matches(qualified))
        return entry

    def _validate(self, entry: ToolEntry, arguments: dict[str, Any]) -> None:
        validator = self._validator(entry.input_schema)
        error = best_match(validator.iter_errors(arguments))
        if error is not None:
            raise ArgumentError(entry.qualified_name, *describe_validation_error(error))

    def _validator(self, schema: Mapping[str, Any]) -> Validator:
        cached = self._validators.get(id(schema))
        if cached is not None and cached[0] is schema:
            return cached[1]
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        try:
            cls.check_schema(dict(schema))
            validator: Validator = cls(schema)
        except jsonschema.SchemaError:
            # A server with a broken schema should still be callable: check only that arguments form an object.
            validator = jsonschema.Draft202012Validator({"type": "object"})
        self._validators[id(schema)] = (schema, validator)
        return validator

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
    return type(exc).__name__ + field + rule + (" approved" if approved else "")


def drop_omitted(schema: Mapping[str, Any], arguments: dict[str, Any]) -> dict[str, Any]:
    """Drop optional arguments passed as None when the schema does not accept null.

    Stubs show optional parameters as `= None` meaning "omit it", so `tool(x=None)` must mean the same as `tool()`.
    """
    properties = schema.get("properties")
    if not isinstance(properties, Mapping) or None not in arguments.values():
        return arguments
    required = schema.get("required") or ()
    return {
        key: value
        for key, value in arguments.items()
        if value is not None or key in required or _accepts_null(properties.get(key))
    }


def _accepts_null(schema: Any) -> bool:
    if not isinstance(schema, Mapping):
        return True  # unknown shape: pass the None through and let validation speak
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind) or schema.get("nullable") is True:
        return True
    if kind is None and not any(key in schema for key in ("anyOf", "oneOf", "enum", "const", "$ref", "allOf")):
        return True
    return any(_accepts_null(option) for key in ("anyOf", "oneOf") for option in schema.get(key) or ())


def describe_validation_error(error: ValidationError) -> tuple[str, str]:
    """(field path, problem) for a jsonschema error, worded for someone fixing a call."""
    path = ".".join(str(part) for part in error.absolute_path)
    expected: Any = error.validator_value
    schema: Any = error.schema
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [name for name in expected if name not in error.instance]
        field = ".".join(filter(None, [path, missing[0] if missing else ""]))
        return field, "is required but was not passed"
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(schema.get("properties", {})) if isinstance(schema, dict) else []
        extra = sorted(set(error.instance) - set(allowed))
        field = ".".join(filter(None, [path, extra[0] if extra else ""]))
        return field, f"is not a parameter of this tool (parameters: {', '.join(allowed) or 'none'})"
    value = json.dumps(error.instance, default=str)
    if len(value) > 60:
        value = value[:57] + "..."
    if error.validator == "type":
        return path, f"expected {expected}, got {value}"
    if error.validator == "enum":
        choices = ", ".join(json.dumps(choice) for choice in expected)
        return path, f"must be one of {choices}, got {value}"
    return path, error.message


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
