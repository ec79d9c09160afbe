"""The shared audit store: `PostgresAuditSink` records `AuditEvent`s in PostgreSQL, for several portal replicas.

```
with PostgresAuditSink(os.environ["PORTAL_AUDIT_DSN"]) as store:   # connects, creates or checks the tables
    async with Portal.open(config, audit=store) as portal: ...
    print(as_json(store.summary("tool", since=time.time() - 3600)))
```
Opening connects and creates the tables on first use (`portal_audit_events`, `portal_audit_version`, in the
connection's default schema), under an advisory lock so replicas starting together do not race; a database with a
newer schema version is refused. An unreachable server at open is an `AuditStoreError`: a wrong DSN should stop the
portal, not lose its log quietly.

`record` never touches the network: it gives the event a UUID and appends it to a bounded queue (`BatchWriter`);
one background thread inserts what queued up (giving a batch 5 ms to fill) in one statement per batch of up to
`batch_size`, `ON CONFLICT (event_id) DO NOTHING`. So
when a connection drops mid-insert, the retried batch cannot duplicate the rows that did commit, and replicas
writing to one database never collide. While the server is unreachable the writer logs once, keeps the events
queued and retries with backoff; they are written when it comes back.

Every text value is cleaned before it is sent (`query.storable`: NUL and unpaired surrogates become U+FFFD, the
same as in the SQLite store), so an agent's search query cannot make the server refuse a batch. Should the server
still reject a batch for good (not a connection or lock error: e.g. a character the database's encoding cannot
hold), its events are inserted one by one and only those rejected on their own are lost (`writer.lost`, logged by
count and error class, never content).

Both connections run with `statement_timeout` (30 s) and `lock_timeout` (5 s) set for their session, so a statement
waiting on a lock (`LOCK TABLE`, `VACUUM FULL`, a migration) fails and is retried with backoff instead of hanging
the writer; a reader's query fails with an `AuditStoreError`.

What can be lost: on a clean `close` nothing (it writes the queue first, waiting up to `close_timeout` if the server
is down or the table locked; at the deadline it cancels the statement in flight, counts what is left in
`writer.lost` and logs it, and returns within about a second more, the writer thread ended: only that thread ever
uses or closes its connection); on a crash of the portal process, the events not yet committed: at most
`capacity` (10,000 by default), in practice the last few milliseconds' worth while the server is up; while
`capacity` events are pending (the server down for long under load), new events are dropped and counted
(`writer.dropped`), with an error log; an event the server rejects on its own (see above).

Queries (`recent`, `summary`) first wait for this sink's queue to drain, so they include every event it recorded
before them; percentiles are computed by PostgreSQL (`percentile_disc`, the same nearest-rank as SQLite's).
A DSN is only ever shown with its password removed (`redact_dsn`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from portal_mcp.control.audit import AuditEvent
from portal_mcp.control.audit_store.query import (
    COLUMNS,
    SCHEMA_VERSION,
    SummaryKey,
    SummaryRow,
    event_row,
)
from portal_mcp.control.audit_store.queued import QueuedStore
from portal_mcp.errors import AuditStoreError

_TABLE = "portal_audit_events"
_VERSION_TABLE = "portal_audit_version"
_SCHEMA = f"""
CREATE TABLE {_VERSION_TABLE} (version integer NOT NULL);
CREATE TABLE {_TABLE} (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id uuid NOT NULL UNIQUE,
    at double precision NOT NULL,
    kind text NOT NULL CHECK (kind IN ('search', 'run', 'call')),
    "user" text NOT NULL,
    outcome text NOT NULL,
    duration_ms double precision NOT NULL,
    subject text NOT NULL,
    detail text NOT NULL,
    size_in bigint NOT NULL,
    size_out bigint NOT NULL
);
CREATE INDEX {_TABLE}_kind_at ON {_TABLE} (kind, at);
CREATE INDEX {_TABLE}_user_at ON {_TABLE} ("user", at);
"""
_INSERT = f"""
INSERT INTO {_TABLE} (event_id, {COLUMNS})
SELECT * FROM unnest(
    %s::uuid[], %s::text[], %s::text[], %s::text[], %s::float8[], %s::text[], %s::text[], %s::int8[], %s::int8[],
    %s::float8[]
)
ON CONFLICT (event_id) DO NOTHING
"""
_COLUMN_TYPES: tuple[Callable[[Any], Any], ...] = (str, str, str, str, float, str, str, int, int, float)
"""Python type of each `_INSERT` array: event_id, then `COLUMNS`."""
_MIGRATION_LOCK = 0x706F7274616C  # pg_advisory_xact_lock key ("portal"): one replica creates the tables
_CONNECT_DEFAULTS = {
    "connect_timeout": "5",
    "application_name": "portal-mcp audit",
    # Notice a dead server or network within ~30 s instead of waiting on a half-open TCP connection.
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",
}
_SECRET_KEYS = ("password", "sslpassword")
"""DSN parameters never shown: the server password and the client key's."""
_RETRYABLE = (psycopg.OperationalError, psycopg.InterfaceError)
"""Connection loss, server shutdown, a failed connect, a lock or statement timeout, a cancel, a deadlock: the batch
is retried on a new connection (the query is retried once)."""
_REJECTED = (psycopg.errors.ProgramLimitExceeded,)
"""`OperationalError`s that retrying cannot cure (class 54: e.g. an index entry too big): the batch is rejected."""
_TIMED_OUT = (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable)
"""`statement_timeout` or `lock_timeout` expired (or a cancel): a query is not repeated, the error is reported."""
_CANCEL_TIMEOUT_S = 1.0
"""How long `close` waits for the server to take a cancel request for the writer's blocked statement."""


def _retryable(exc: Exception) -> bool:
    return isinstance(exc, _RETRYABLE) and not isinstance(exc, _REJECTED)


class PostgresAuditSink(QueuedStore[tuple[uuid.UUID, AuditEvent]]):
    """An `AuditSink` backed by a PostgreSQL database, shared by any number of portal processes.

    Thread-safe. Opening connects (network I/O: the portal opens it off the event loop); `record` only queues.
    `create=False` (the CLI) refuses a database without the tables instead of creating them.
    """

    _table = _TABLE
    _param = "%s"

    def __init__(
        self,
        dsn: str,
        *,
        create: bool = True,
        capacity: int = 10_000,
        batch_size: int = 500,
        close_timeout: float = 10.0,
        statement_timeout: float = 30.0,
        lock_timeout: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self._name = redact_dsn(dsn)
        self._timeouts = (f"{round(statement_timeout * 1000)}ms", f"{round(lock_timeout * 1000)}ms")
        self._reader: psycopg.Connection[Any] | None = None
        try:
            self._params = {**_CONNECT_DEFAULTS, **conninfo_to_dict(dsn)}
        except psycopg.Error as exc:
            raise AuditStoreError(self._name, f"not a PostgreSQL DSN ({self._scrub(str(exc))})") from None
        try:
            self._reader = self._connect()
        except psycopg.Error as exc:
            raise AuditStoreError(
                self._name,
                f"cannot connect ({self._scrub(str(exc))}); check `audit.postgres` in the config and that the "
                "server is running and accepts this user",
            ) from None
        try:
            self._migrate(self._reader, create)
        except BaseException:
            self._reader.close()
            raise
        super().__init__(
            describe=self._name,
            retryable=_retryable,
            capacity=capacity,
            batch_size=batch_size,
            close_timeout=close_timeout,
        )

    @property
    def name(self) -> str:
        return self._name

    def record(self, event: AuditEvent) -> None:
        """Queue one event (never blocks on the network); it is written within milliseconds while the server is up."""
        self._queue((uuid.uuid4(), event))

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self._reader = None

    def _closed_error(self) -> AuditStoreError:
        return AuditStoreError(self._name, "the store is closed; open a new PostgresAuditSink")

    def _write(self, batch: list[tuple[uuid.UUID, AuditEvent]]) -> None:
        """Insert one batch in one transaction (on the writer thread); raises `_RETRYABLE` when the link is gone."""
        conn = self._conn_writer
        if conn is None or conn.closed:
            conn = self._conn_writer = self._connect()
        # One array per column, each of one Python type (an int duration would make a mixed list psycopg refuses).
        rows = [(event_id, *event_row(event)) for event_id, event in batch]
        columns = [
            [cast(value) for value in values]
            for cast, values in zip(_COLUMN_TYPES, zip(*rows, strict=True), strict=True)
        ]
        try:
            with conn.transaction():
                conn.execute(_INSERT, columns)
        except _RETRYABLE:
            conn.close()
            self._conn_writer = None
            raise

    def _interrupt_write(self) -> None:
        """Cancel the writer's statement in flight, if any (`close` past its deadline, on a thread of its own)."""
        conn = self._conn_writer
        if conn is not None:
            conn.cancel_safe(timeout=_CANCEL_TIMEOUT_S)

    def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        self._drain()
        with self._lock:
            if self._closed:
                raise self._closed_error()
            try:
                return self._query(sql, params)
            except psycopg.Error as exc:
                if not _retryable(exc) or isinstance(exc, _TIMED_OUT):
                    raise AuditStoreError(self._name, f"query failed: {self._scrub(str(exc))}") from None
            # A restarted server: one more try on a new connection (reads are safe to repeat).
            if self._reader is not None:
                self._reader.close()
            self._reader = None
            try:
                return self._query(sql, params)
            except psycopg.Error as exc:
                raise AuditStoreError(self._name, f"query failed: {self._scrub(str(exc))}") from None

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        if self._reader is None or self._reader.closed:
            self._reader = self._connect()
        return self._reader.execute(sql, params).fetchall()

    def _groups(self, by: SummaryKey, where: str, params: tuple[Any, ...]) -> list[SummaryRow]:
        key = {"user": '"user"', "tool": "subject", "server": "split_part(subject, '.', 1)"}[by]
        # percentile_disc(f) is the value at rank ceil(f * n): the nearest rank `query.percentile` computes.
        sql = (
            f"SELECT {key}, count(*), count(*) FILTER (WHERE outcome <> 'ok'),"
            " percentile_disc(%s) WITHIN GROUP (ORDER BY duration_ms),"
            " percentile_disc(%s) WITHIN GROUP (ORDER BY duration_ms)"
            f" FROM {_TABLE}{where} GROUP BY 1"
        )
        rows = self._fetch(sql, (50 / 100, 95 / 100, *params))
        return [
            SummaryRow(key, int(calls), int(errors), float(p50), float(p95)) for key, calls, errors, p50, p95 in rows
        ]

    def connect(self) -> psycopg.Connection[Any]:
        """A new connection with this store's settings (DSN, timeouts), for a table kept beside the log."""
        return self._connect()

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(make_conninfo("", **self._params), autocommit=True)
        try:
            # For the session (a DSN's `options` cannot be merged with ours): no statement waits forever on a lock.
            conn.execute(
                "SELECT set_config('statement_timeout', %s, false), set_config('lock_timeout', %s, false)",
                self._timeouts,
            )
        except BaseException:
            conn.close()
            raise
        return conn

    def _migrate(self, conn: psycopg.Connection[Any], create: bool) -> None:
        """Create the tables in a new database, or check that an existing schema is one this code reads."""
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                exists = conn.execute("SELECT to_regclass(%s)", (_VERSION_TABLE,)).fetchone()
                if exists is None or exists[0] is None:
                    if not create:
                        raise AuditStoreError(
                            self._name,
                            "this database holds no audit log yet; the portal creates it when it first starts "
                            "with `audit: {postgres: DSN}`",
                        )
                    conn.execute(_SCHEMA)
                    conn.execute(f"INSERT INTO {_VERSION_TABLE} (version) VALUES (%s)", (SCHEMA_VERSION,))
                    return
                row = conn.execute(f"SELECT max(version) FROM {_VERSION_TABLE}").fetchone()
                found = row[0] if row is not None else None
                if not isinstance(found, int) or found > SCHEMA_VERSION:
                    raise AuditStoreError(
                        self._name,
                        f"schema version {found!r} is newer than this portal-mcp reads ({SCHEMA_VERSION}); "
                        "upgrade portal-mcp, or point `audit.postgres` at another database",
                    )
        except psycopg.Error as exc:
            raise AuditStoreError(
                self._name, f"cannot set up the audit tables ({self._scrub(str(exc))}); check the user's privileges"
            ) from None

    def _scrub(self, message: str) -> str:
        """`message` on one line with the DSN's passwords (should a driver message quote them) replaced."""
        message = " ".join(message.split())
        secrets = _secrets_of(self._dsn)
        if secrets is None:
            return _redact_text(message)
        for secret in secrets:
            message = message.replace(secret, "***")
        return message


def redact_dsn(dsn: str) -> str:
    """The DSN without its password, as `key=value` pairs (host, port, dbname, user first): safe to show."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        return _redact_text(dsn)
    for secret in _SECRET_KEYS:
        params.pop(secret, None)
    first = [key for key in ("host", "port", "dbname", "user") if key in params]
    ordered = {key: params[key] for key in [*first, *sorted(set(params) - set(first))]}
    return make_conninfo("", **ordered)


def _secrets_of(dsn: str) -> list[str] | None:
    """The secret values in `dsn`, or None when it cannot be parsed."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        return None
    return [str(params[key]) for key in _SECRET_KEYS if params.get(key)]


def _redact_text(text: str) -> str:
    """Best effort for text that is not a parseable DSN: blank `(ssl)password=...` and the password of a URL."""
    text = re.sub(r"(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", text)
    return re.sub(r"(://[^:/?#@\s]*):[^@\s]*@", r"\1:***@", text)
