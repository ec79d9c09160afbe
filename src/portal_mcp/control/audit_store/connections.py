"""Users' connected accounts: one sealed record of OAuth tokens per (user, server), kept beside the audit log.

```
store = connections_beside(sink, config, os.environ)       # the audit database, else a SQLite file
store.put("ana", "linear", {"tokens": {...}})               # sealed (AES-GCM) before it is written
store.get("ana", "linear")                                  # opened again; None when not connected
```
With `audit: {postgres: DSN}` the records are the `portal_oauth_connections` table of that database, so every
replica sees every user's connection; with `audit: {sqlite: PATH}` the `oauth_connections` table of that file;
otherwise `connections.sqlite` (default: in the state folder). Connections come from the audit store's own
machinery (its DSN, timeouts, WAL settings).

A record is JSON sealed with AES-256-GCM under a key derived (HKDF-SHA256) from `connections.key` of the secrets
file, with the user and server as associated data: the stored row holds no token, a row copied to another user or
server does not open, and a wrong key is an error that says so, never a silent disconnect.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from portal_mcp.config import PortalConfig
from portal_mcp.control.audit import AuditSink
from portal_mcp.control.audit_store.postgres import PostgresAuditSink
from portal_mcp.control.audit_store.sqlite import SqliteAuditSink, open_file
from portal_mcp.errors import AuditStoreError

_SQLITE_TABLE = "oauth_connections"
_PG_TABLE = "portal_oauth_connections"
_PG_LOCK_CLASS = 0x706F7274  # pg_advisory_lock(class, key): the refresh locks of connections ("port")
_SEAL_VERSION = "v1"
_NONCE_BYTES = 12

Record = dict[str, Any]
"""What a connection holds (tokens, client registration, discovered metadata): JSON, only ever stored sealed."""


class Sealer:
    """AES-256-GCM with a key derived from `connections.key`; the (user, server) pair is the associated data."""

    def __init__(self, secret: str) -> None:
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"portal-mcp", info=b"oauth connections v1")
        self._aead = AESGCM(hkdf.derive(secret.encode()))

    def seal(self, user: str, server: str, record: Record) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, json.dumps(record).encode(), _associated(user, server))
        return f"{_SEAL_VERSION}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def open(self, user: str, server: str, text: str) -> Record:
        version, _, body = text.partition(".")
        try:
            raw = base64.urlsafe_b64decode(body)
            plain = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _associated(user, server))
        except (InvalidTag, ValueError):
            raise ValueError("sealed with another `connections.key`, or damaged") from None
        if version != _SEAL_VERSION:
            raise ValueError(f"sealed in format {version!r}, which this portal-mcp does not read")
        record = json.loads(plain)
        if not isinstance(record, dict):
            raise ValueError("not a connection record")
        return record


def _associated(user: str, server: str) -> bytes:
    return json.dumps([user, server]).encode()


class ConnectionStore(ABC):
    """Sealed records by (user, server) in a database table. Thread-safe; every method does I/O (call it off the
    event loop)."""

    dialect: str
    """`sqlite` or `postgres`: the tables kept beside it are named after it."""

    def __init__(self, name: str, sealer: Sealer) -> None:
        self.name = name
        self.sealer = sealer
        self._lock = threading.Lock()
        self._refreshing: dict[tuple[str, str], threading.Lock] = {}

    def get(self, user: str, server: str) -> Record | None:
        with self._lock:
            row = self._get(user, server)
        if row is None:
            return None
        try:
            return self.sealer.open(user, server, row)
        except ValueError as exc:
            raise AuditStoreError(
                self.name,
                f"the stored connection of user {user!r} to {server!r} cannot be opened: {exc}; restore the key, or "
                f"connect again (`portal-mcp login {server} --user {user}`)",
            ) from None

    def put(self, user: str, server: str, record: Record) -> None:
        sealed = self.sealer.seal(user, server, record)
        with self._lock:
            self._put(user, server, sealed, time.time())

    def delete(self, user: str, server: str) -> bool:
        """Forget a connection; True when there was one."""
        with self._lock:
            return self._delete(user, server)

    def listing(self, user: str | None = None) -> list[tuple[str, str, float]]:
        """(user, server, when stored) of every connection (of `user`), sorted; nothing is opened."""
        with self._lock:
            return sorted(self._list(user))

    def lock(self, user: str, server: str) -> Callable[[], None]:
        """Hold the lock on one connection while its tokens are refreshed (returns its release): a refresh token
        used twice may end the whole grant, so replicas refresh one at a time and the later one reads the result."""
        with self._lock:
            held = self._refreshing.setdefault((user, server), threading.Lock())
        held.acquire()
        return held.release

    def query(self, sql: str, params: tuple[Any, ...]) -> tuple[list[tuple[Any, ...]], int]:
        """Run one statement (written with `?` placeholders) on this store's database: (rows, rows changed). For
        the tables kept beside the connections (`pending.PendingFlows`)."""
        with self._lock:
            return self._query(sql, params)

    def raw(self, user: str, server: str) -> str | None:
        """The row as stored (sealed): what a reader of the database sees."""
        with self._lock:
            return self._get(user, server)

    @abstractmethod
    def _query(self, sql: str, params: tuple[Any, ...]) -> tuple[list[tuple[Any, ...]], int]: ...

    @abstractmethod
    def _get(self, user: str, server: str) -> str | None: ...

    @abstractmethod
    def _put(self, user: str, server: str, sealed: str, at: float) -> None: ...

    @abstractmethod
    def _delete(self, user: str, server: str) -> bool: ...

    @abstractmethod
    def _list(self, user: str | None) -> list[tuple[str, str, float]]: ...

    @abstractmethod
    def close(self) -> None: ...


class SqliteConnectionStore(ConnectionStore):
    dialect = "sqlite"

    def __init__(self, connect: Callable[[], sqlite3.Connection], name: str, sealer: Sealer) -> None:
        super().__init__(name, sealer)
        self._db = connect()
        try:
            self._db.execute(
                f"CREATE TABLE IF NOT EXISTS {_SQLITE_TABLE} (user TEXT NOT NULL, server TEXT NOT NULL, "
                "sealed TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (user, server))"
            )
        except sqlite3.Error as exc:
            self._db.close()
            raise AuditStoreError(name, f"cannot keep connections there ({exc})") from None

    def _run(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        """One statement; a database that cannot serve it (locked past the busy timeout, disk full, unreadable) is
        an `AuditStoreError`, as on PostgreSQL."""
        try:
            return self._db.execute(sql, params)
        except sqlite3.Error as exc:
            raise AuditStoreError(self.name, f"connections: {exc}") from None

    def _query(self, sql: str, params: tuple[Any, ...]) -> tuple[list[tuple[Any, ...]], int]:
        cursor = self._run(sql, params)
        return cursor.fetchall(), cursor.rowcount

    def _get(self, user: str, server: str) -> str | None:
        row = self._run(f"SELECT sealed FROM {_SQLITE_TABLE} WHERE user = ? AND server = ?", (user, server))
        found = row.fetchone()
        return None if found is None else str(found[0])

    def _put(self, user: str, server: str, sealed: str, at: float) -> None:
        self._run(
            f"INSERT OR REPLACE INTO {_SQLITE_TABLE} (user, server, sealed, at) VALUES (?, ?, ?, ?)",
            (user, server, sealed, at),
        )

    def _delete(self, user: str, server: str) -> bool:
        cursor = self._run(f"DELETE FROM {_SQLITE_TABLE} WHERE user = ? AND server = ?", (user, server))
        return cursor.rowcount > 0

    def _list(self, user: str | None) -> list[tuple[str, str, float]]:
        where, params = (" WHERE user = ?", (user,)) if user is not None else ("", ())
        rows = self._run(f"SELECT user, server, at FROM {_SQLITE_TABLE}{where}", params).fetchall()
        return [(str(u), str(s), float(at)) for u, s, at in rows]

    def close(self) -> None:
        self._db.close()


class PostgresConnectionStore(ConnectionStore):
    """The `portal_oauth_connections` table of the audit database: shared by every replica."""

    dialect = "postgres"

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], name: str, sealer: Sealer) -> None:
        super().__init__(name, sealer)
        self._connect = connect
        self._conn: psycopg.Connection[Any] | None = None
        self._run(
            f'CREATE TABLE IF NOT EXISTS {_PG_TABLE} ("user" text NOT NULL, server text NOT NULL, '
            'sealed text NOT NULL, at double precision NOT NULL, PRIMARY KEY ("user", server))',
            (),
        )

    def _run(self, sql: str, params: tuple[Any, ...]) -> psycopg.Cursor[Any]:
        for attempt in (1, 2):  # a connection lost since the last statement: once more on a new one
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                return self._conn.execute(sql, params)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                if attempt == 2:
                    raise AuditStoreError(self.name, f"connections: {type(exc).__name__}") from None
            except psycopg.Error as exc:
                raise AuditStoreError(self.name, f"connections: {type(exc).__name__}") from None
        raise AssertionError("unreachable")

    def lock(self, user: str, server: str) -> Callable[[], None]:
        """A PostgreSQL advisory lock on its own connection: held across every replica of the database."""
        release = super().lock(user, server)
        key = json.dumps([user, server])
        try:
            conn = self._connect()
            conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (_PG_LOCK_CLASS, key))
        except psycopg.Error as exc:
            release()
            raise AuditStoreError(self.name, f"connections: cannot lock ({type(exc).__name__})") from None

        def unlock() -> None:
            try:
                conn.close()  # ends the session, and with it the lock
            finally:
                release()

        return unlock

    def _query(self, sql: str, params: tuple[Any, ...]) -> tuple[list[tuple[Any, ...]], int]:
        cursor = self._run(sql.replace("?", "%s"), params)
        return (cursor.fetchall() if cursor.description is not None else []), cursor.rowcount

    def _get(self, user: str, server: str) -> str | None:
        found = self._run(f'SELECT sealed FROM {_PG_TABLE} WHERE "user" = %s AND server = %s', (user, server))
        row = found.fetchone()
        return None if row is None else str(row[0])

    def _put(self, user: str, server: str, sealed: str, at: float) -> None:
        self._run(
            f'INSERT INTO {_PG_TABLE} ("user", server, sealed, at) VALUES (%s, %s, %s, %s) '
            'ON CONFLICT ("user", server) DO UPDATE SET sealed = EXCLUDED.sealed, at = EXCLUDED.at',
            (user, server, sealed, at),
        )

    def _delete(self, user: str, server: str) -> bool:
        cursor = self._run(f'DELETE FROM {_PG_TABLE} WHERE "user" = %s AND server = %s', (user, server))
        return cursor.rowcount > 0

    def _list(self, user: str | None) -> list[tuple[str, str, float]]:
        where, params = (' WHERE "user" = %s', (user,)) if user is not None else ("", ())
        rows = self._run(f'SELECT "user", server, at FROM {_PG_TABLE}{where}', params).fetchall()
        return [(str(u), str(s), float(at)) for u, s, at in rows]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None


def connections_beside(sink: AuditSink, config: PortalConfig, environ: Mapping[str, str]) -> ConnectionStore | None:
    """The connection store in the same database as a durable audit sink, else in `connections.sqlite` (default:
    the state folder); None when no server has `oauth:` (nothing to keep)."""
    if not config.oauth_servers() or config.connections.key is None:
        return None
    sealer = Sealer(config.connections.key.get_secret_value())
    if isinstance(sink, PostgresAuditSink):
        return PostgresConnectionStore(sink.connect, sink.name, sealer)
    if isinstance(sink, SqliteAuditSink):
        return SqliteConnectionStore(sink.connect, sink.name, sealer)
    path = config.connections.sqlite or config.state_folder(environ) / "connections.sqlite"
    # Its connections only, with the same file settings (WAL, busy timeout) as the audit log.
    return SqliteConnectionStore(partial(open_file, path), str(path), sealer)


@asynccontextmanager
async def open_connections(
    sink: AuditSink, config: PortalConfig, environ: Mapping[str, str], *, skip: bool = False
) -> AsyncIterator[ConnectionStore | None]:
    """`connections_beside`, opened and closed off the event loop (None with `skip`: commands that only read the
    catalog)."""
    store = None if skip else await anyio.to_thread.run_sync(connections_beside, sink, config, environ)
    try:
        yield store
    finally:
        if store is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(store.close)
