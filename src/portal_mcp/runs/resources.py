"""Resources from agent code: `await server.resources()`, `await server.resource_templates()` and
`await server.read_resource(uri)`, served for the bridge (the sandbox's only way out) under the same policy, budgets
and audit as tool calls.

A listing answers from what the server listed last (no downstream request); a read goes downstream through the
link's request path (`Link.request`: resent once if it never left). Contents come back as dicts: `uri`,
`mime_type` and either `text` or `blob` (base64; the worker turns it into `data`: bytes).
"""

from __future__ import annotations

import time
from typing import Any

from mcp_types import BlobResourceContents, ReadResourceResult

from portal_mcp.control.audit import AuditEvent, AuditSink
from portal_mcp.control.budgets import Budgets
from portal_mcp.control.credentials import Redactor
from portal_mcp.control.principal import Principal
from portal_mcp.downstream import DownstreamPool
from portal_mcp.errors import ArgumentError, LimitError, PortalError, ToolCallError, ToolFailedError
from portal_mcp.naming import RESOURCE_METHODS


class ResourceCalls:
    """Serves the resource methods of agent code (`RESOURCE_METHODS`) through a pool."""

    def __init__(self, pool: DownstreamPool, audit: AuditSink, redactor: Redactor, budgets: Budgets) -> None:
        self._pool = pool
        self._audit = audit
        self._redactor = redactor
        self._budgets = budgets

    async def call(self, server: str, method: str, arguments: dict[str, Any], user: Principal) -> Any:
        """`method` of `server` for `user` (a `Principal`); raises a `PortalError` the agent reads."""
        qualified = f"{server}.{method}"
        started = time.perf_counter()
        size_out = 0
        try:
            refusal = user.rules.server_refusal(server)
            if refusal is not None:
                raise refusal
            if method == "read_resource":
                uri = arguments.get("uri")
                if type(uri) is not str or set(arguments) != {"uri"}:
                    raise ArgumentError(qualified, "uri", "read_resource takes one argument: the resource's URI")
                await self._pool.ready(server)
                result = await self._pool.request(
                    server,
                    "read_resource",
                    lambda link: link.request(f"resources/read of {uri!r}", lambda client: client.read_resource(uri)),
                    user=user.name,
                )
                value = contents(result)
            else:
                value = listing(self._pool, server, method)
            size_out = sum(len(str(item)) for item in value)
            self._budgets.result(size_out)
            value = self._redactor.value(value)
        except PortalError as exc:
            refused = isinstance(exc, ToolCallError | LimitError) and not isinstance(exc, ToolFailedError)
            self._record(user.name, qualified, "refused" if refused else "error", started, 0, type(exc).__name__)
            raise self._redactor.error(exc) from None
        self._record(user.name, qualified, "ok", started, size_out, "")
        return value

    def _record(self, user: str, subject: str, outcome: Any, started: float, size_out: int, detail: str) -> None:
        duration = (time.perf_counter() - started) * 1000
        self._audit.record(AuditEvent("call", user, outcome, duration, subject, detail, 0, size_out))


def is_resource_call(method: str) -> bool:
    return method in RESOURCE_METHODS


def listing(pool: DownstreamPool, server: str, method: str) -> list[dict[str, Any]]:
    """The server's resources or resource templates as it listed them last (empty when it offers none)."""
    extras = pool.extras().get(server)
    if extras is None:
        return []
    items = extras.resources if method == "resources" else extras.templates
    return [item.model_dump(mode="json", exclude_none=True) for item in items]


def contents(result: ReadResourceResult) -> list[dict[str, Any]]:
    """Each content of a read: `uri`, `mime_type` and `text`, or `blob` (base64) for binary content."""
    found = []
    for content in result.contents:
        item: dict[str, Any] = {"uri": content.uri, "mime_type": content.mime_type}
        if isinstance(content, BlobResourceContents):
            item["blob"] = content.blob
        else:
            item["text"] = content.text
        found.append(item)
    return found
