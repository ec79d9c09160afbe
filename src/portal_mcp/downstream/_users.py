"""Helpers of the pool's per-user links (`${user.KEY}` servers) and of its embedder callbacks."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

import anyio
from mcp_types import Tool

from portal_mcp.catalog.status import ServerStatus
from portal_mcp.config import RemoteServerConfig, ServerConfig, StdioServerConfig
from portal_mcp.config.user_refs import expand_user_refs, first_user_with, missing_keys
from portal_mcp.downstream._events import DownstreamEvent
from portal_mcp.downstream._link import Link
from portal_mcp.downstream._stderr import StderrPump

logger = logging.getLogger("portal_mcp.downstream")

_CALLBACK_TIMEOUT = 10.0
_PUMP_EOF_TIMEOUT = 3.0


async def close_idle_links(links: dict[tuple[str, str], Link], timeouts: Mapping[str, float], most: float) -> None:
    """Close the (server, user) links that have had no call for their server's timeout; check at least every
    `most` seconds. Runs until cancelled."""
    interval = min(most, *(timeout / 4 for timeout in timeouts.values()))
    while True:
        await anyio.sleep(interval)
        now = anyio.current_time()
        for (server, user), link in list(links.items()):
            if link.in_flight == 0 and now - link.last_used >= timeouts[server] and not link.closing:
                del links[(server, user)]
                logger.info("server %r: closing user %r's idle connection", server, user)
                link.close()


async def run_with_pump(link: Link, pump: StderrPump | None) -> None:
    """Run one user's link and its stderr pump until the link is closed; then the pump reads to end of file."""
    try:
        async with anyio.create_task_group() as task_group:
            if pump is not None and pump.available:
                pump_done = anyio.Event()

                async def forward(pump: StderrPump = pump) -> None:
                    try:
                        await pump.run()
                    finally:
                        pump_done.set()

                task_group.start_soon(forward)
            await link.run()
            if pump is not None and pump.available:
                pump.writer.close()  # with the process gone, the pipe reaches end of file
                with anyio.move_on_after(_PUMP_EOF_TIMEOUT):
                    await pump_done.wait()
            task_group.cancel_scope.cancel()
    finally:
        if pump is not None:
            pump.drain()
            pump.close()


def for_user(config: StdioServerConfig | RemoteServerConfig, secrets: Mapping[str, str]) -> Any:
    """The config with `${user.KEY}` in its env/headers replaced by the user's secrets (and `$${user.KEY}` by a
    literal); the result lives only in this process, handed to the transport."""
    if isinstance(config, StdioServerConfig):
        return config.model_copy(update={"env": {k: expand_user_refs(v, secrets) for k, v in config.env.items()}})
    return config.model_copy(update={"headers": {k: expand_user_refs(v, secrets) for k, v in config.headers.items()}})


def listing_user(
    config: StdioServerConfig | RemoteServerConfig, needed: frozenset[str], users: Mapping[str, Mapping[str, str]]
) -> tuple[str | None, str | None]:
    """Whose connection lists a `${user.KEY}` server's tools (`list_as`, else the first user with every needed
    secret), or why nobody's can."""
    listing = config.list_as or first_user_with(needed, users)
    if listing is None or missing_keys(needed, users.get(listing, {})):
        return None, (
            f"no user has every secret it needs ({', '.join(sorted(needed))}), so no connection can list its tools; "
            "add them to one user's `http.users.NAME.secrets`"
        )
    return listing, None


def idle_timeout(config: ServerConfig) -> float:
    return config.user_idle_timeout if isinstance(config, StdioServerConfig | RemoteServerConfig) else 900.0


async def ignore_tools(server: str, tools: list[Tool]) -> None:
    """A per-user link's listing does not change the catalog: the listing user's does."""


def ignore_status(status: ServerStatus) -> None:
    """`on_status` is startup progress of the servers, not of per-user links."""


async def guarded(call: Awaitable[None], what: str) -> None:
    """Run an embedder's callback without letting it break (or hang) a connection."""
    with anyio.move_on_after(_CALLBACK_TIMEOUT) as scope:
        try:
            await call
        except Exception:
            logger.exception("%s callback raised", what)
    if scope.cancelled_caught:
        logger.warning("%s callback took longer than %gs and was cancelled", what, _CALLBACK_TIMEOUT)


Emit = Callable[[DownstreamEvent], Awaitable[None]]


def emitter(emit: Emit, user: str) -> Emit:
    """`emit` for events about `user`'s own link: marked with the user, so they reach that user's sessions only."""

    async def user_emit(event: DownstreamEvent) -> None:
        await emit(replace(event, message=f"(as user {user!r}) {event.message}", user=user))

    return user_emit
