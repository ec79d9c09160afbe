"""The embedded audit store: `SqliteAuditSink` records `AuditEvent`s in a SQLite file and answers queries about them.

```
with SqliteAuditSink(Path("~/.local/state/portal-mcp/audit.sqlite").expanduser()) as store:
    async with Portal.open(config, audit=store) as portal: ...
    print(as_json(store.summary("tool", since=time.time() - 3600)))
```
The file and its folders are created when the store is opened, so a path the portal cannot use stops it at start
(not at its first event). It runs in WAL mode with `synchronous=NORMAL`. Readers (`portal-mcp audit`) never block
the writer.

`record` never touches the file: it appends the event to a bounded queue (`BatchWriter`), and one background thread
inserts what queued up in one transaction per batch. The event loop therefore never waits on the file: another
process holding the write lock (a second portal, a backup, `sqlite3` left in a transaction), a full disk or a slow
one delays only the writer, which keeps the events queued, logs once, and retries with backoff until it can write
them. A run or call being recorded is never failed by its audit event. What can be lost is what the PostgreSQL
store can lose (its docstring): on a clean `close` nothing, unless the file stays unwritable for `close_timeout`
(what is left is counted in `writer.lost` and logged); on a crash, the events not yet committed (the last few
milliseconds' worth while the file is writable); while `capacity` events are pending, new ones (counted in
`writer.dropped`, logged). Queries (`recent`, `summary`) first wait for this sink's queue to drain, so they include
every event it recorded before them.

Only what `AuditEvent` holds is stored: sizes, subjects and failure reasons, never argument or result values. Text
is cleaned as in the PostgreSQL store (`query.storable`: NUL and unpaired surrogates become U+FFFD): SQLite could
keep a NUL but not a lone surrogate, and the same events should read back and summarise the same from either store.
"""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from portal_mcp.control.audit import AuditEvent
from portal_mcp.control.audit_store.query import (
    COLUMNS,
    SCHEMA_VERSION,
    SummaryKey,
    SummaryRow,
    event_row,
    percentile,
)
from portal_mcp.control.audit_store.queued import QueuedStore
from portal_mcp.errors import AuditStoreError

_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('search', 'run', 'call')),
    user TEXT NOT NULL,
    outcome TEXT NOT NULL,
    duration_ms REAL NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL,
    size_in INTEGER NOT NULL,
    size_out INTEGER NOT NULL
);
CREATE INDEX events_kind_at ON events (kind, at);
CREATE INDEX events_user_at ON events (user, at);
"""
_BUSY_TIMEOUT_S = 5.0
"""How long a write waits for another process holding the write lock (e.g. a second portal on the same file) before
the writer backs off and retries."""


def _retryable(exc: Exception) -> bool:
    """A busy or locked file, a full disk, an I/O error, a file that cannot be opened (now): retried with backoff.
    `AuditStoreError` is the writer reopening the file (`open_file`): the file may be fixed or freed meanwhile."""
    return isinstance(exc, (sqlite3.OperationalError, AuditStoreError))


def _advice(exc: sqlite3.Error) -> str:
    """What to do about a SQLite error, when there is something to say."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return f"; another process held the file's write lock for over {_BUSY_TIMEOUT_S:g} s"
    if isinstance(exc, sqlite3.OperationalError):
        return "; check the file's permissions and free disk space"
    return ""


class SqliteAuditSink(QueuedStore[AuditEvent]):
    """An `AuditSink` backed by a SQLite file, safe to share between the threads of one process.

    Opening creates or checks the file (an `AuditStoreError` says why it cannot be used); `record` only queues.
    Several processes may also write to one file (SQLite's locking serialises them); for several machines use the
    PostgreSQL store. Close it (or use it as a context manager) when done: that writes what is queued.
    """

    _table = "events"
    _param = "?"

    def __init__(
        self, path: str | Path, *, capacity: int = 10_000, batch_size: int = 500, close_timeout: float = 10.0
    ) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = open_file(self.path)
        """The readers' connection (queries hold `_lock`); the writer thread has its own."""
        super().__init__(
            describe=self.name,
            retryable=_retryable,
            capacity=capacity,
            batch_size=batch_size,
            close_timeout=close_timeout,
        )

    @property
    def name(self) -> str:
        return str(self.path)

    def record(self, event: AuditEvent) -> None:
        """Queue one event (never waits on the file); it is committed within milliseconds while the file is writable."""
        self._queue(event)

    def _write(self, batch: list[AuditEvent]) -> None:
        """Insert one batch in one transaction (on the writer thread). Any SQLite error drops the connection (the
        next attempt opens a new one), so a failed batch never leaves a transaction open behind it."""
        sql = f"INSERT INTO events ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        conn = self._conn_writer
        if conn is None:
            conn = self._conn_writer = open_file(self.path)
        try:
            conn.execute("BEGIN IMMEDIATE")  # the write lock first: a busy file fails here, before any insert
            conn.executemany(sql, [event_row(event) for event in batch])
            conn.execute("COMMIT")
        except sqlite3.Error:
            self._close_writer_connection()
            raise

    def _interrupt_write(self) -> None:
        """Abort the writer's statement in flight (`close` past its deadline, on a thread of its own)."""
        conn = self._conn_writer
        if conn is not None:
            conn.interrupt()

    def _close_reader(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _closed_error(self) -> AuditStoreError:
        return AuditStoreError(self.name, "the store is closed; open a new SqliteAuditSink")

    def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        self._drain()
        with self._lock:
            if self._db is None:
                raise self._closed_error()
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise AuditStoreError(self.name, f"query failed ({exc}){_advice(exc)}") from exc

    def _groups(self, by: SummaryKey, where: str, params: tuple[Any, ...]) -> list[SummaryRow]:
        # SQLite has no percentile aggregate: group here, with the one nearest-rank definition.
        column = '"user"' if by == "user" else "subject"
        rows = self._fetch(f"SELECT {column}, outcome, duration_ms FROM events{where}", params)
        groups: defaultdict[str, list[tuple[str, float]]] = defaultdict(list)
        for value, outcome, duration in rows:
            key = value.partition(".")[0] if by == "server" else value
            groups[key].append((outcome, duration))
        summary = []
        for key, calls in groups.items():
            durations = sorted(duration for _, duration in calls)
            errors = sum(1 for outcome, _ in calls if outcome != "ok")
            summary.append(SummaryRow(key, len(calls), errors, percentile(durations, 50), percentile(durations, 95)))
        return summary

    def connect(self) -> sqlite3.Connection:
        """A new connection to the file, set up (WAL, the audit tables), for a table kept beside the log."""
        return open_file(self.path)


def open_file(path: Path) -> sqlite3.Connection:
    """A connection to the audit file at `path` (folders and file created, WAL, the schema created or checked), or
    an `AuditStoreError` saying why it cannot be used. The connection starts no transaction on its own."""
    name = str(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AuditStoreError(name, f"cannot create its folder: {exc.strerror}") from None
    try:
        # Autocommit (isolation_level=None): every transaction is explicit (a batch of inserts, the schema).
        db = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise AuditStoreError(name, f"cannot open it ({exc}); check the path and its permissions") from None
    try:
        _prepare(db, name)
    except sqlite3.OperationalError as exc:  # locked, busy, read-only, I/O: the file may be fine
        db.close()
        raise AuditStoreError(name, f"cannot set it up ({exc}){_advice(exc)}") from None
    except sqlite3.DatabaseError as exc:
        db.close()
        raise AuditStoreError(
            name, f"not a usable SQLite audit store ({exc}); point the audit config at another file"
        ) from None
    except BaseException:
        db.close()
        raise
    return db


def _prepare(db: sqlite3.Connection, name: str) -> None:
    """WAL mode and the schema. Switching a new file to WAL takes a lock that SQLite does not wait for (no busy
    handler), so a second store opening the same new file at that moment is retried until the busy timeout."""
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            _migrate(db, name)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _migrate(db: sqlite3.Connection, name: str) -> None:
    """Create the tables in a new file, or check that an existing file's schema is one this code reads."""
    # IMMEDIATE takes the write lock first, so two processes creating the same file cannot both create tables.
    db.execute("BEGIN IMMEDIATE")
    try:
        exists = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'")
        if exists.fetchone() is None:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        else:
            found = db.execute("SELECT max(version) FROM schema_version").fetchone()[0]
            if not isinstance(found, int) or found > SCHEMA_VERSION:
                raise AuditStoreError(
                    name,
                    f"schema version {found!r} is newer than this portal-mcp reads ({SCHEMA_VERSION}); "
                    "upgrade portal-mcp, or point the audit config at another file",
                )
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
