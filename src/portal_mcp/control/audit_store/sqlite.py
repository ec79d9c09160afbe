"""The embedded audit store: `SqliteAuditSink` records `AuditEvent`s in a SQLite file and answers queries about them.

```
with SqliteAuditSink(Path("~/.local/state/portal-mcp/audit.sqlite").expanduser()) as store:
    async with Portal.open(config, audit=store) as portal: ...
    print(as_json(store.summary("tool", since=time.time() - 3600)))
```
The file and its folders are created on first use. It runs in WAL mode with `synchronous=NORMAL`: one insert per
event costs a page write and no fsync, so `record` is cheap enough to call on the event loop, and a committed
event survives a crash of the portal (not a power cut before the next checkpoint). Readers (`portal-mcp audit`)
never block the writer. Only what `AuditEvent` holds is stored: sizes, subjects and failure reasons, never
argument or result values. Text is cleaned as in the PostgreSQL store (`query.storable`: NUL and unpaired surrogates
become U+FFFD): SQLite could keep a NUL but not a lone surrogate (`record` raised UnicodeEncodeError), and the same
events should read back and summarise the same from either store.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from portal_mcp.control.audit import AuditEvent
from portal_mcp.control.audit_store.query import (
    COLUMNS,
    SCHEMA_VERSION,
    AuditQueries,
    SummaryKey,
    SummaryRow,
    event_row,
    percentile,
)
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
"""How long a write waits for another process holding the write lock (e.g. a second portal on the same file)."""


class SqliteAuditSink(AuditQueries):
    """An `AuditSink` backed by a SQLite file, safe to share between the threads of one process.

    Several processes may also write to one file (SQLite's locking serialises them); for several machines use the
    PostgreSQL store. Close it (or use it as a context manager) when done; every recorded event is already committed.
    """

    _table = "events"
    _param = "?"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._closed = False

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the file; later calls raise `AuditStoreError`. Closing twice is harmless."""
        with self._lock:
            self._closed = True
            if self._db is not None:
                self._db.close()
                self._db = None

    @property
    def name(self) -> str:
        return str(self.path)

    def flush(self, timeout: float | None = None) -> bool:
        """Nothing to wait for: `record` commits before it returns (the same API as `PostgresAuditSink.flush`)."""
        return True

    def record(self, event: AuditEvent) -> None:
        """Append one event; it is committed when this returns."""
        sql = f"INSERT INTO events ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        with self._lock:
            self._execute(sql, event_row(event))

    def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._execute(sql, params).fetchall()

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

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        """Run one statement on the (lazily opened) connection; the caller holds the lock."""
        try:
            return self._connection().execute(sql, params)
        except sqlite3.Error as exc:
            raise AuditStoreError(self.name, f"{exc}; check the file's permissions and free disk space") from exc

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise AuditStoreError(self.name, "the store is closed; open a new SqliteAuditSink")
        if self._db is None:
            self._db = self._open()
        return self._db

    def connect(self) -> sqlite3.Connection:
        """A new connection to the file, set up (WAL, the audit tables), for a table kept beside the log."""
        return self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AuditStoreError(self.name, f"cannot create its folder: {exc.strerror}") from None
        try:
            # Autocommit (isolation_level=None): each insert is its own transaction; the schema gets an explicit one.
            db = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise AuditStoreError(self.name, f"cannot open it ({exc}); check the path and its permissions") from None
        try:
            self._prepare(db)
        except sqlite3.DatabaseError as exc:
            db.close()
            raise AuditStoreError(
                self.name, f"not a usable SQLite audit store ({exc}); point the audit config at another file"
            ) from None
        except BaseException:
            db.close()
            raise
        return db

    def _prepare(self, db: sqlite3.Connection) -> None:
        """WAL mode and the schema. Switching a new file to WAL takes a lock that SQLite does not wait for (no busy
        handler), so a second store opening the same new file at that moment is retried until the busy timeout."""
        deadline = time.monotonic() + _BUSY_TIMEOUT_S
        while True:
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                self._migrate(db)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _migrate(self, db: sqlite3.Connection) -> None:
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
                        self.name,
                        f"schema version {found!r} is newer than this portal-mcp reads ({SCHEMA_VERSION}); "
                        "upgrade portal-mcp, or point the audit config at another file",
                    )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
