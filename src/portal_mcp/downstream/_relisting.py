"""How a link keeps its server's lists fresh: the change announcements it follows (`tools/list_changed` and the
resources/prompts ones as notifications, or a 2026-07-28 `subscriptions/listen` stream), the re-listing they cause
(also every `relist_every` seconds, for servers that never announce), and the listing itself. Only a real change
(by digest) reaches the pool, which rebuilds the catalog, search index and stubs in one assignment."""

from __future__ import annotations

from typing import Literal

import anyio
import anyio.abc
import mcp_types as types
from mcp.client import Client, IncomingMessage
from mcp.shared.exceptions import MCPError
from mcp_types import Tool
from pydantic import ValidationError

from portal_mcp.downstream._asking import Asking
from portal_mcp.downstream._events import EventKind, Hooks
from portal_mcp.downstream._listing import Extras, differ, list_extras, list_tools, lists

_LIST_CHANGED = (
    types.ToolListChangedNotification,
    types.ResourceListChangedNotification,
    types.PromptListChangedNotification,
)


class Relisting:
    """The listing half of `Link` (the link task owns the attributes; these methods run in it)."""

    name: str
    connect_timeout: float
    tools: list[Tool]
    extras: Extras
    _hooks: Hooks
    _relist: bool
    _wake: anyio.Event
    _stream_error: str | None
    asking: Asking

    async def _event(self, kind: EventKind, level: Literal["info", "warning", "error"], message: str) -> None:
        raise NotImplementedError

    async def _listen(self, client: Client, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """2026 servers announce list changes on a `subscriptions/listen` stream instead of a notification."""
        started = False
        try:
            async with client.listen(
                tools_list_changed=True, resources_list_changed=True, prompts_list_changed=True
            ) as subscription:
                task_status.started()
                started = True
                async for _ in subscription:
                    self._relist = True
                    self._wake.set()
        except Exception as exc:
            if not started:
                task_status.started()
            await self._event("warning", "warning", f"cannot follow tool list changes: {exc}")

    async def _on_message(self, message: IncomingMessage) -> None:
        """The link's handler of the server's notifications (its client's `message_handler`)."""
        if isinstance(message, types.ElicitCompleteNotification):
            await self.asking.on_complete(message.params.elicitation_id)
        elif isinstance(message, _LIST_CHANGED):
            self._relist = True
            self._wake.set()
        elif isinstance(message, Exception):
            # A stdout line that is not JSON-RPC, or a broken HTTP stream: worth naming if the connection ends.
            self._stream_error = f"{type(message).__name__}: {message}"[:200]

    async def _refresh(self, client: Client) -> None:
        """List again; only a real change (by digest) updates anything: the catalog, search index and stubs."""
        try:
            with anyio.fail_after(self.connect_timeout):
                tools, extras = await self._list(client)
        except (MCPError, TimeoutError, ValidationError) as exc:
            await self._event("warning", "warning", f"re-listing failed ({exc}); keeping the old lists")
            return
        tools_changed, extras_changed = differ(self.tools, tools), extras.digest != self.extras.digest
        self.tools, self.extras = tools, extras
        if extras_changed:
            await self._event("listing_changed", "info", f"resources or prompts changed; it now {lists(0, extras)}")
        if tools_changed:
            await self._event("tools_changed", "info", f"tool list changed; it now {lists(len(tools))}")
            if self._hooks.listed is not None:
                await self._hooks.listed(self.name, list(tools), False)
        if tools_changed or extras_changed:
            await self._hooks.tools_changed(self.name, list(tools))

    async def _list(self, client: Client) -> tuple[list[Tool], Extras]:
        """Tools (a failure fails the connection), then resources, templates and prompts (a failure is a warning)."""
        tools = await list_tools(client, self._hooks.redactor, self._warn)
        try:
            return tools, await list_extras(client, self._hooks.redactor, self._warn)
        except (MCPError, ValidationError) as exc:
            await self._warn(f"listing resources or prompts failed ({exc}); it offers tools only for now")
            return tools, Extras()

    async def _warn(self, message: str) -> None:
        await self._event("warning", "warning", message)
