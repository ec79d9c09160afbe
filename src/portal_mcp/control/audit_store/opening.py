"""Which audit sink a portal records to: the one passed in, the configured store, or memory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from portal_mcp.config import PortalConfig
from portal_mcp.control.audit import AuditSink, MemoryAuditSink
from portal_mcp.control.audit_store.postgres import PostgresAuditSink
from portal_mcp.control.audit_store.sqlite import SqliteAuditSink


@asynccontextmanager
async def open_audit_sink(config: PortalConfig, given: AuditSink | None) -> AsyncIterator[AuditSink]:
    """The sink passed in (its caller closes it), else the configured store (closed here), else memory.

    A store opens its file or connects when opened, and writes its queue when closed: both happen on a worker
    thread, off the event loop.
    """
    if given is not None:
        yield given
    elif config.audit.sqlite is not None:
        path = config.audit.sqlite
        store = await anyio.to_thread.run_sync(lambda: SqliteAuditSink(path))
        try:
            yield store
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(store.close)
    elif config.audit.postgres is not None:
        dsn = config.audit.postgres.get_secret_value()
        pg = await anyio.to_thread.run_sync(lambda: PostgresAuditSink(dsn))
        try:
            yield pg
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(pg.close)
    else:
        yield MemoryAuditSink()
