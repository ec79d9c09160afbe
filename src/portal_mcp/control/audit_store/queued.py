"""`QueuedStore`: what both durable audit stores share. `record` only appends to a `BatchWriter`'s queue, whose
thread writes batches on a connection of its own; queries and `close` write the queue first.

A store subclasses it with its item type, calls `super().__init__` last in its own (once its reader connection is
open and it can write: the writer thread starts there), and provides
`_write(batch)` (one transaction, on the writer thread, through `_conn_writer`), `_interrupt_write()` (`close` past
its deadline, from another thread) and `_close_reader()`.
"""

from __future__ import annotations

import threading
from abc import abstractmethod
from collections.abc import Callable
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from portal_mcp.control.audit import AuditBacklog
from portal_mcp.control.audit_store.query import AuditQueries
from portal_mcp.control.audit_store.writer import BatchWriter

T = TypeVar("T")


class QueuedStore(AuditQueries, Generic[T]):
    """An audit store whose writes go through a `BatchWriter`; thread-safe, a context manager that closes it."""

    def __init__(
        self,
        *,
        describe: str,
        retryable: Callable[[Exception], bool],
        capacity: int,
        batch_size: int,
        close_timeout: float,
    ) -> None:
        self._close_timeout = close_timeout
        self._lock = threading.Lock()
        """Held by queries and `close` (the reader connection)."""
        self._closed = False
        self._conn_writer: Any = None
        """The writer thread's connection (opened by `_write` when needed, closed as the thread ends)."""
        self._writer: BatchWriter[T] = BatchWriter(
            self._write,
            describe=describe,
            retryable=retryable,
            capacity=capacity,
            batch_size=batch_size,
            interrupt=self._interrupt_write,
            finish=self._close_writer_connection,
        )

    @property
    def writer(self) -> BatchWriter[T]:
        """The queue and its counters (`pending`, `written`, `dropped`, `lost`) and thread (`running`)."""
        return self._writer

    def backlog(self) -> AuditBacklog:
        """What waits in the queue, and what was given up on so far (`/metrics` reads it at every scrape)."""
        return AuditBacklog(self.writer.pending, self.writer.dropped, self.writer.lost)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event recorded so far is committed (or given up on); False on timeout."""
        return self.writer.flush(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Write what is queued (waiting at most `close_timeout`), then close; later calls raise. Idempotent.

        At the deadline the write in flight is interrupted and what is left is counted in `writer.lost` (and
        logged); it returns within about `close_timeout` + 1 s. The writer thread closes its own connection.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.writer.close(self._close_timeout)
        with self._lock:
            self._close_reader()

    def _queue(self, item: T) -> None:
        """Queue one item, or say the store is closed."""
        if self._closed:
            raise self._closed_error()
        self.writer.put(item)

    def _drain(self) -> None:
        """Before a query: wait (at most `close_timeout`) for what was recorded so far to be written."""
        self.writer.flush(self._close_timeout)

    def _close_writer_connection(self) -> None:
        """Close the writer's connection; on the writer thread as it ends, so never while a write uses it."""
        conn, self._conn_writer = self._conn_writer, None
        if conn is not None:
            conn.close()

    @abstractmethod
    def _write(self, batch: list[T]) -> None: ...

    @abstractmethod
    def _interrupt_write(self) -> None: ...

    @abstractmethod
    def _close_reader(self) -> None: ...

    @abstractmethod
    def _closed_error(self) -> Exception: ...
