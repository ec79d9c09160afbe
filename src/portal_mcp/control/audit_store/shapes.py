"""Observed result shapes kept beside the audit log: a table of one merged shape per tool, in the same database.

```
async with open_shapes(audit_sink, skip=config.unobserved) as book:   # a ShapeBook, loaded from the store
    book.observe(entry, value)                                         # queued; merged into the table off-loop
```
With `audit: {sqlite: PATH}` the shapes are the `tool_shapes` table of that file; with `audit: {postgres: DSN}`
the `portal_tool_shapes` table of that database (shared by replicas); with neither they live in memory and are
gone at restart. A shape holds kinds and keys, never values (`catalog/shapes.py`).

Every call's shape (a delta) is queued on a `BatchWriter`; its thread merges a batch's deltas per tool and, in one
transaction, reads each stored shape, merges the delta in and writes it back (PostgreSQL: under an advisory lock,
so replicas writing together do not lose each other's deltas). The event loop only appends to a queue. A batch
retried after a connection loss that had in fact committed counts its calls twice: shapes stay right, only the
"observed over N calls" count is high. A replica reads the table when it starts; shapes other replicas learn later
reach it at its next start.
"""

from __future__ import annotations

import json
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import psycopg

from portal_mcp.catalog.shapes import Shape, ShapeBook, bounded, is_shape, merge
from portal_mcp.control.audit import AuditSink
from portal_mcp.control.audit_store.postgres import PostgresAuditSink, _retryable
from portal_mcp.control.audit_store.sqlite import SqliteAuditSink
from portal_mcp.control.audit_store.writer import BatchWriter
from portal_mcp.errors import AuditStoreError

_SQLITE_TABLE = "tool_shapes"
_PG_TABLE = "portal_tool_shapes"
_PG_LOCK = 0x706F7274616D  # pg_advisory_xact_lock key for shape writes (next to the audit migration's)
_CLOSE_TIMEOUT_S = 10.0


class ShapeStore(ABC):
    """One merged shape per tool in a database table; `add` queues a delta, a background thread merges it in."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._writer: BatchWriter[tuple[str, Shape]] = BatchWriter(
            self._write, describe=f"shapes {name}", retryable=self._retryable, capacity=2_000, batch_size=200
        )

    def add(self, tool: str, delta: Shape) -> None:
        """Queue the shape of one call of `tool` (never blocks; dropped and counted when 2,000 are pending)."""
        self._writer.put((tool, delta))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every delta added so far is merged into the table; False on timeout."""
        return self._writer.flush(timeout)

    def close(self) -> None:
        self._writer.close(_CLOSE_TIMEOUT_S)
        self._close()

    def load(self) -> dict[str, Shape]:
        """Every stored shape, by qualified tool name (a damaged row is skipped)."""
        return _parsed(self._load_rows())

    def _write(self, batch: list[tuple[str, Shape]]) -> None:
        deltas: dict[str, Shape] = {}
        for tool, delta in batch:
            deltas[tool] = merge(deltas.get(tool), delta) or delta
        self._merge_in(deltas)

    @staticmethod
    def merged_rows(stored: Sequence[tuple[str, str]], deltas: Mapping[str, Shape]) -> list[tuple[str, str, float]]:
        """(tool, shape JSON, time) rows to upsert: each delta merged into the stored shape of its tool."""
        old = _parsed(stored)
        now = time.time()
        return [
            (tool, json.dumps(bounded(merge(old.get(tool), delta) or delta), separators=(",", ":")), now)
            for tool, delta in deltas.items()
        ]

    @abstractmethod
    def _load_rows(self) -> list[tuple[str, str]]: ...

    @abstractmethod
    def _merge_in(self, deltas: Mapping[str, Shape]) -> None: ...

    @abstractmethod
    def _retryable(self, exc: Exception) -> bool: ...

    def _close(self) -> None:
        return None


class SqliteShapeStore(ShapeStore):
    """The `tool_shapes` table in the audit store's SQLite file (its own connection, used by the writer thread)."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], name: str) -> None:
        self._db = connect()
        try:
            self._db.execute(
                f"CREATE TABLE IF NOT EXISTS {_SQLITE_TABLE} (tool TEXT PRIMARY KEY, shape TEXT NOT NULL, at REAL)"
            )
        except sqlite3.Error as exc:
            self._db.close()
            raise AuditStoreError(name, f"cannot keep result shapes there ({exc})") from None
        super().__init__(name)

    def _load_rows(self) -> list[tuple[str, str]]:
        return self._db.execute(f"SELECT tool, shape FROM {_SQLITE_TABLE}").fetchall()

    def _merge_in(self, deltas: Mapping[str, Shape]) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            marks = ", ".join("?" for _ in deltas)
            stored = self._db.execute(f"SELECT tool, shape FROM {_SQLITE_TABLE} WHERE tool IN ({marks})", list(deltas))
            rows = self.merged_rows(stored.fetchall(), deltas)
            self._db.executemany(f"INSERT OR REPLACE INTO {_SQLITE_TABLE} (tool, shape, at) VALUES (?, ?, ?)", rows)
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def _retryable(self, exc: Exception) -> bool:
        return isinstance(exc, sqlite3.OperationalError)  # the file is locked by another writer

    def _close(self) -> None:
        self._db.close()


class PostgresShapeStore(ShapeStore):
    """The `portal_tool_shapes` table in the audit database; connections come from the audit sink's settings."""

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], name: str) -> None:
        self._connect = connect
        self._conn: psycopg.Connection[Any] | None = None
        try:
            with connect() as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK,))
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {_PG_TABLE} "
                    "(tool text PRIMARY KEY, shape text NOT NULL, at double precision NOT NULL)"
                )
                self._loaded = conn.execute(f"SELECT tool, shape FROM {_PG_TABLE}").fetchall()
        except psycopg.Error as exc:
            raise AuditStoreError(name, f"cannot keep result shapes there ({type(exc).__name__})") from None
        super().__init__(name)

    def _load_rows(self) -> list[tuple[str, str]]:
        return [(str(tool), str(shape)) for tool, shape in self._loaded]  # read at open, in the same transaction

    def _merge_in(self, deltas: Mapping[str, Shape]) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        conn = self._conn
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK,))
                stored = conn.execute(f"SELECT tool, shape FROM {_PG_TABLE} WHERE tool = ANY(%s)", (list(deltas),))
                rows = self.merged_rows(stored.fetchall(), deltas)
                with conn.cursor() as cursor:
                    cursor.executemany(
                        f"INSERT INTO {_PG_TABLE} (tool, shape, at) VALUES (%s, %s, %s) "
                        "ON CONFLICT (tool) DO UPDATE SET shape = EXCLUDED.shape, at = EXCLUDED.at",
                        rows,
                    )
        except Exception:
            conn.close()
            self._conn = None
            raise

    def _retryable(self, exc: Exception) -> bool:
        return _retryable(exc)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def _parsed(rows: Sequence[tuple[str, str]]) -> dict[str, Shape]:
    shapes: dict[str, Shape] = {}
    for tool, text in rows:
        try:
            shape = json.loads(text)
        except ValueError:
            continue
        if is_shape(shape):
            shapes[tool] = shape
    return shapes


def store_beside(sink: AuditSink) -> ShapeStore | None:
    """The shape store in the same database as a durable audit sink (None for the in-memory sink)."""
    if isinstance(sink, SqliteAuditSink):
        return SqliteShapeStore(sink.connect, sink.name)
    if isinstance(sink, PostgresAuditSink):
        return PostgresShapeStore(sink.connect, sink.name)
    return None


@asynccontextmanager
async def open_shapes(sink: AuditSink, *, skip: Callable[[str], bool]) -> AsyncIterator[ShapeBook]:
    """A `ShapeBook` loaded from, and persisting to, the store beside `sink`; in memory when there is none.

    Opening, loading and closing touch the database: they run on a worker thread, off the event loop.
    """
    store = await anyio.to_thread.run_sync(store_beside, sink)
    if store is None:
        yield ShapeBook(skip=skip)
        return
    try:
        known = await anyio.to_thread.run_sync(store.load)
        yield ShapeBook(known, persist=store.add, skip=skip)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(store.close)
