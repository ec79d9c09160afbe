"""Resources and prompts of downstream servers, for agent code and for the portal's clients, under the same policy,
budgets and audit as tool calls.

Agent code calls `await server.resources()`, `await server.resource_templates()` and `await server.read_resource(uri)`
(the bridge hands them here); the portal's MCP surface reads resources, gets prompts and completes their arguments
through `request`. A listing answers from what the server listed last (no downstream request); anything else goes
downstream through the link's request path (`Link.request`: resent once if it never left). For agent code a read's
contents are dicts: `uri`, `mime_type` and either `text` or `blob` (base64; the worker turns it into `data`: bytes).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from mcp.client import Client
from mcp_types import BlobResourceContents, ReadResourceResult

from portal_mcp.control.audit import AuditEvent, AuditSink
from portal_mcp.control.budgets import Budgets
from portal_mcp.control.credentials import Redactor
from portal_mcp.control.principal import Principal
from portal_mcp.downstream import DownstreamPool
from portal_mcp.errors import ArgumentError, LimitError, PortalError, ToolCallError, ToolFailedError
from portal_mcp.naming import RESOURCE_METHODS

T = TypeVar("T")


class ResourceCalls:
    """Serves resource reads, prompts and completions of downstream servers through a pool, audited."""

    def __init__(self, pool: DownstreamPool, audit: AuditSink, redactor: Redactor, budgets: Budgets) -> None:
        self.pool = pool
        self._audit = audit
        self._redactor = redactor
        self._budgets = budgets

    async def call(self, server: str, method: str, arguments: dict[str, Any], user: Principal) -> Any:
        """`method` (one of `RESOURCE_METHODS`) of `server` for agent code run by `user`; raises a `PortalError`."""
        if method != "read_resource":
            return await self.request(server, method, user, None, lambda: listing(self.pool, server, method))
        uri = arguments.get("uri")
        if type(uri) is not str or set(arguments) != {"uri"}:
            raise ArgumentError(f"{server}.{method}", "uri", "read_resource takes one argument: the resource's URI")
        result = await self.request(
            server, method, user, lambda client: client.read_resource(uri), what=f"resources/read of {uri!r}"
        )
        return self._redactor.value(contents(result))

    async def request(
        self,
        server: str,
        method: str,
        user: Principal,
        send: Callable[[Client], Awaitable[T]] | None,
        local: Callable[[], T] | None = None,
        *,
        what: str = "",
    ) -> T:
        """`send` to `server` for `user` (or answer with `local()`), after the policy's word on the server; audited as
        a call of `server.method`, never with the URI, arguments or contents (they are values)."""
        qualified = f"{server}.{method}"
        started = time.perf_counter()
        try:
            refusal = user.rules.server_refusal(server)
            if refusal is not None:
                raise refusal
            if send is None:
                assert local is not None
                value = local()
            else:
                await self.pool.ready(server)
                value = await self.pool.request(
                    server, method, lambda link: link.request(what or method, send), user=user.name
                )
            size_out = len(str(value))
            self._budgets.result(size_out)
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
