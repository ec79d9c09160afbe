"""The PostgreSQL audit store: shared by replicas, queued off the event loop, surviving outages, never showing a password.

Runs against the real throwaway server of tests/pg.py (each test its own database); the behaviour it shares with
SQLite is tested for both stores in test_audit_store.py.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from portal_mcp.catalog.model import Catalog
from portal_mcp.config import load_config
from portal_mcp.control.audit import AuditEvent
from portal_mcp.control.audit_store import SCHEMA_VERSION, AuditStoreError, PostgresAuditSink, redact_dsn
from portal_mcp.control.audit_store.writer import CLOSE_GRACE_S
from portal_mcp.control.metrics import Metrics
from portal_mcp.errors import ConfigError
from portal_mcp.portal import Portal
from tests.pg import PostgresServer
from tests.servers import crm_server

TABLE = "portal_audit_events"


def call(subject: str = "time.now", duration_ms: float = 1.0, *, user: str = "ada") -> AuditEvent:
    return AuditEvent("call", user, "ok", duration_ms, subject, size_in=10, size_out=20)


def password_of(dsn: str) -> str:
    password = conninfo_to_dict(dsn)["password"]
    assert isinstance(password, str) and password
    return password


def rows(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql).fetchall()


def count_and_distinct(dsn: str) -> tuple[int, int]:
    [(count, distinct)] = rows(dsn, f"SELECT count(*), count(DISTINCT event_id) FROM {TABLE}")
    return count, distinct


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def waiting_on_the_table(dsn: str) -> int:
    """How many sessions wait for a lock on the events table."""
    [(count,)] = rows(dsn, f"SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = '{TABLE}'::regclass")
    return int(count)


@contextlib.contextmanager
def table_locked(dsn: str) -> Iterator[None]:
    """The events table locked by another session (as a migration or VACUUM FULL would) until the block ends."""
    with psycopg.connect(dsn) as conn:
        conn.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.rollback()


@contextlib.contextmanager
def queued_as_one_batch(store: PostgresAuditSink, dsn: str) -> Iterator[None]:
    """Events recorded in the block reach the writer together, as one batch (as after an outage).

    The writer's first batch (one event) waits on a locked table while the block records the rest; the lock is
    released when the block ends, and the next batch holds everything recorded in it.
    """
    with table_locked(dsn):
        store.record(call(user="first"))
        wait_until(lambda: waiting_on_the_table(dsn) == 1)
        yield


@pytest.fixture
def latin1_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh database in LATIN1 (an existing database an operator may point the portal at): no CJK text fits."""
    name = "test_latin1_" + secrets.token_hex(6)
    with psycopg.connect(postgres_server.dsn(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} ENCODING 'LATIN1' LOCALE 'C' TEMPLATE template0").format(sql.Identifier(name))
        )
    try:
        yield postgres_server.dsn(name)
    finally:
        postgres_server.drop_database(name)


@pytest.fixture
def server_back_up(postgres_server: PostgresServer) -> Iterator[PostgresServer]:
    """The session server, for a test that stops it: started again afterwards whatever happens."""
    yield postgres_server
    postgres_server.ensure_running()


# --- opening: schema, versions, errors that name the store without its password ---


def test_the_tables_and_the_schema_version_are_created_on_first_use(pg_dsn: str) -> None:
    assert rows(pg_dsn, "SELECT to_regclass('portal_audit_events')") == [(None,)]
    with PostgresAuditSink(pg_dsn) as store:
        store.record(call())
    assert rows(pg_dsn, "SELECT version FROM portal_audit_version") == [(SCHEMA_VERSION,)]
    assert count_and_distinct(pg_dsn) == (1, 1)
    with PostgresAuditSink(pg_dsn):  # a second open finds the tables and creates nothing
        pass
    assert rows(pg_dsn, "SELECT count(*) FROM portal_audit_version") == [(1,)]


def test_replicas_opening_a_new_database_at_once_create_the_tables_once(pg_dsn: str) -> None:
    errors: list[BaseException] = []

    def open_and_close() -> None:
        try:
            PostgresAuditSink(pg_dsn).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_and_close) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert rows(pg_dsn, "SELECT version FROM portal_audit_version") == [(SCHEMA_VERSION,)]


def test_a_database_with_a_newer_schema_is_refused_with_a_clear_message(pg_dsn: str) -> None:
    PostgresAuditSink(pg_dsn).close()
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("UPDATE portal_audit_version SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(AuditStoreError) as caught:
        PostgresAuditSink(pg_dsn)
    message = str(caught.value)
    assert f"schema version {SCHEMA_VERSION + 1} is newer than this portal-mcp reads ({SCHEMA_VERSION})" in message
    assert "upgrade portal-mcp" in message
    assert caught.value.store == redact_dsn(pg_dsn)
    assert password_of(pg_dsn) not in message


def test_an_unreachable_server_is_a_clear_error_at_open_without_the_password(
    pg_dsn: str, postgres_server: PostgresServer
) -> None:
    wrong_port = pg_dsn.replace(f":{postgres_server.port}/", ":1/")
    with pytest.raises(AuditStoreError) as caught:
        PostgresAuditSink(wrong_port)
    message = str(caught.value)
    assert "cannot connect" in message and "port=1" in message and "dbname=" in message
    assert "check `audit.postgres`" in message
    assert password_of(pg_dsn) not in message
    assert caught.value.__suppress_context__  # the driver's exception is not chained into tracebacks


def test_a_wrong_password_and_a_malformed_dsn_are_refused_without_showing_it() -> None:
    with pytest.raises(AuditStoreError) as caught:
        PostgresAuditSink("host=127.0.0.1 port=1 password=hunter2secret junk")
    assert "not a PostgreSQL DSN" in str(caught.value)
    assert "hunter2secret" not in str(caught.value)


def test_a_wrong_password_is_refused_at_open(pg_dsn: str) -> None:
    wrong = pg_dsn.replace(password_of(pg_dsn), "not-the-password-42")
    with pytest.raises(AuditStoreError, match="password authentication failed") as caught:
        PostgresAuditSink(wrong)
    assert "not-the-password-42" not in str(caught.value)


def test_redacting_a_dsn_removes_the_password_in_both_forms() -> None:
    assert redact_dsn("postgresql://portal:s3cr3t@db.internal:5433/audit?sslmode=require") == (
        "host=db.internal port=5433 dbname=audit user=portal sslmode=require"
    )
    assert redact_dsn("host=db user=portal password='a b' dbname=audit") == "host=db dbname=audit user=portal"
    assert "s3cr3t" not in redact_dsn("postgresql://portal:s3cr3t@db:notaport/x?bad")
    assert "s3cr3t" not in redact_dsn("password=s3cr3t oops")
    assert redact_dsn("host=db sslpassword=s3cr3t sslkey=/k") == "host=db sslkey=/k"


def test_a_query_only_store_refuses_a_database_without_an_audit_log(pg_dsn: str) -> None:
    with pytest.raises(AuditStoreError, match="holds no audit log yet"):
        PostgresAuditSink(pg_dsn, create=False)
    assert rows(pg_dsn, "SELECT to_regclass('portal_audit_events')") == [(None,)]


# --- writing: queued, batched, idempotent, shared ---


def test_record_only_queues_and_close_writes_everything(pg_dsn: str) -> None:
    store = PostgresAuditSink(pg_dsn)
    for i in range(2000):
        store.record(call(duration_ms=i))
    store.close()  # no flush: a clean close writes the queue
    assert count_and_distinct(pg_dsn) == (2000, 2000)
    assert store.writer.written == 2000 and store.writer.dropped == store.writer.lost == 0


def test_a_batch_retried_after_its_commit_was_not_acknowledged_is_not_duplicated(pg_dsn: str) -> None:
    class AckLost(PostgresAuditSink):
        """The first batch commits, then the connection 'drops' before the portal hears back."""

        failed = False

        def _write(self, batch: list[Any]) -> None:
            super()._write(batch)
            if not self.failed:
                self.failed = True
                raise psycopg.OperationalError("server closed the connection unexpectedly")

    with AckLost(pg_dsn) as store:
        for i in range(50):
            store.record(call(duration_ms=i))
        assert store.flush(timeout=30)
        assert store.failed
    assert count_and_distinct(pg_dsn) == (50, 50)


def test_two_processes_writing_at_once_lose_and_duplicate_nothing(pg_dsn: str) -> None:
    script = textwrap.dedent(
        """
        import sys, threading
        from portal_mcp.control.audit import AuditEvent
        from portal_mcp.control.audit_store import PostgresAuditSink

        with PostgresAuditSink(sys.argv[1]) as store:
            def write(thread):
                for i in range(500):
                    store.record(AuditEvent("call", sys.argv[2], "ok", float(i), f"time.t{thread}"))
            threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
            for t in threads: t.start()
            for t in threads: t.join()
        """
    )
    replicas = [
        subprocess.Popen([sys.executable, "-c", script, pg_dsn, user], stderr=subprocess.PIPE, text=True)
        for user in ("replica-a", "replica-b")
    ]
    for replica in replicas:
        _, stderr = replica.communicate(timeout=120)
        assert replica.returncode == 0, stderr
        assert stderr == ""  # nothing dropped, nothing retried
    with PostgresAuditSink(pg_dsn, create=False) as store:
        assert {row.key: row.calls for row in store.summary("user")} == {"replica-a": 2000, "replica-b": 2000}
    assert count_and_distinct(pg_dsn) == (4000, 4000)


# --- outages: events queued while the server is away are written when it is back ---


def test_events_recorded_while_connections_are_cut_are_written_after_reconnecting(
    pg_dsn: str, postgres_server: PostgresServer
) -> None:
    dbname = str(conninfo_to_dict(pg_dsn)["dbname"])
    with PostgresAuditSink(pg_dsn) as store:
        for round_ in range(5):
            for i in range(200):
                store.record(call(duration_ms=i, user=f"round{round_}"))
            postgres_server.terminate_connections(dbname)  # the writer's and the reader's, mid-stream
        assert store.flush(timeout=60)
        assert len(store.recent(2000)) == 1000  # the reader reconnects too
    assert count_and_distinct(pg_dsn) == (1000, 1000)


def test_events_recorded_while_the_server_is_down_are_written_when_it_restarts(
    pg_dsn: str, server_back_up: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="portal_mcp.control.audit")
    with PostgresAuditSink(pg_dsn) as store:
        for i in range(100):
            store.record(call(duration_ms=i))
        assert store.flush(timeout=30)
        server_back_up.stop("immediate")
        for i in range(300):  # the event loop's side: never blocks, never raises
            store.record(call(duration_ms=i, user="during-outage"))
        assert not store.flush(timeout=0.5)
        assert store.writer.pending == 300
        metrics = Metrics(Catalog, list, backlog=store.backlog)  # what an operator sees on /metrics
        assert metrics.registry.get_sample_value("portal_audit_pending_events") == 300
        server_back_up.start()
        assert store.flush(timeout=60)
        assert store.writer.dropped == store.writer.lost == 0
        assert metrics.registry.get_sample_value("portal_audit_pending_events") == 0
    assert count_and_distinct(pg_dsn) == (400, 400)
    logged = caplog.text
    assert "cannot write" in logged and "retrying with backoff" in logged and "writing again after" in logged
    assert password_of(pg_dsn) not in logged


def test_a_long_outage_drops_what_does_not_fit_and_close_gives_up_at_its_deadline(
    pg_dsn: str, server_back_up: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    store = PostgresAuditSink(pg_dsn, capacity=100, close_timeout=1.0)
    server_back_up.stop("immediate")
    for i in range(150):
        store.record(call(duration_ms=i))
    assert store.writer.dropped == 50
    store.close()  # the server is still down: waits ~1 s, then gives up on the queue
    assert store.writer.lost == 100 and store.writer.written == 0
    metrics = Metrics(Catalog, list, backlog=store.backlog)
    assert metrics.registry.get_sample_value("portal_audit_dropped_events_total") == 50
    assert metrics.registry.get_sample_value("portal_audit_lost_events_total") == 100
    assert "the queue is full" in caplog.text and "100 events could not be written and are lost" in caplog.text
    assert password_of(pg_dsn) not in caplog.text


# --- events no store can take as they are: cleaned, or lost alone, never with their batch ---


def test_an_event_with_nul_and_lone_surrogates_is_stored_cleaned_and_its_batch_neighbours_too(
    pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    # An agent's search query is the event's subject: NUL made PostgreSQL reject the whole batch around it.
    with PostgresAuditSink(pg_dsn, lock_timeout=60) as store:
        with queued_as_one_batch(store, pg_dsn):
            for i in range(20):
                store.record(call("github.delete_repo", i, user="bob"))
            store.record(AuditEvent("search", "mal\x00lory\ud800", "ok", 1.0, "rows\x00 \udc00", "why\x00"))
            for i in range(20):
                store.record(call("github.delete_repo", i, user="carol"))
        assert store.flush(timeout=30)
        assert (store.writer.written, store.writer.lost) == (42, 0)
        assert {row.key: row.calls for row in store.summary("user")} == {"first": 1, "bob": 20, "carol": 20}
    assert rows(pg_dsn, f"SELECT \"user\", subject, detail FROM {TABLE} WHERE kind = 'search'") == [
        ("mal\ufffdlory\ufffd", "rows\ufffd \ufffd", "why\ufffd")
    ]
    assert "rejected" not in caplog.text and "lost" not in caplog.text


def test_an_event_the_server_rejects_on_its_own_is_lost_alone_not_with_its_batch(
    latin1_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A LATIN1 database cannot hold a search in Japanese: the row is refused (by psycopg, which speaks the database's
    # encoding; by the server with a UTF8 client encoding), and with it the batch it is in.
    with PostgresAuditSink(latin1_dsn, lock_timeout=60) as store:
        with queued_as_one_batch(store, latin1_dsn):
            for i in range(10):
                store.record(call("github.delete_repo", i, user="bob"))
            store.record(AuditEvent("search", "mallory", "ok", 1.0, "日本語のツール"))
            for i in range(10):
                store.record(call("café.open", i, user="carol"))
        assert store.flush(timeout=30)
        assert (store.writer.written, store.writer.lost) == (21, 1)
        assert {row.key: row.calls for row in store.summary("user")} == {"first": 1, "bob": 10, "carol": 10}
        assert store.recent(1)[0].subject == "café.open"
    assert "rejected 1 of a batch of 21 events (" in caplog.text
    assert "wrote the other 20 one by one; the rejected events are lost" in caplog.text
    assert "日本" not in caplog.text  # logged without its content


def test_a_value_too_big_for_an_index_is_rejected_not_retried_forever(
    pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Retrying cannot cure "index row size exceeds maximum" (an OperationalError): it would wedge the writer.
    with PostgresAuditSink(pg_dsn) as store:
        store.record(call(user=secrets.token_urlsafe(9000)))  # `user` is indexed; random text does not compress
        store.record(call(user="ada"))
        assert store.flush(timeout=30)
        assert (store.writer.written, store.writer.lost) == (1, 1)
        assert [event.user for event in store.recent()] == ["ada"]
    assert "ProgramLimitExceeded 54000" in caplog.text


# --- closing: never hangs, says what it gave up, the writer thread closes its own connection ---


def audit_backends(dsn: str) -> list[int]:
    """The server process ids of the store's sessions in this database, oldest first (the reader's, the writer's)."""
    found = rows(
        dsn,
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = 'portal-mcp audit' ORDER BY backend_start",
    )
    return [pid for (pid,) in found]


def test_a_statement_waiting_on_a_lock_is_retried_after_the_lock_timeout(
    pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="portal_mcp.control.audit")
    with PostgresAuditSink(pg_dsn, lock_timeout=0.2) as store:
        with table_locked(pg_dsn):
            for i in range(10):
                store.record(call(duration_ms=i))
            wait_until(lambda: "lock timeout" in caplog.text)
            assert not store.flush(timeout=0.3)
        assert store.flush(timeout=30)
        assert (store.writer.written, store.writer.lost) == (10, 0)
    assert "retrying with backoff" in caplog.text and "writing again after" in caplog.text


def test_close_with_a_statement_blocked_on_a_lock_returns_by_its_deadline_and_reports_what_it_gave_up(
    pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = PostgresAuditSink(pg_dsn, close_timeout=1.0, lock_timeout=600)  # only the cancel can end the wait
    store.record(call(user="before"))
    assert store.flush(timeout=30)
    with table_locked(pg_dsn):
        for i in range(5):
            store.record(call(duration_ms=i))
        wait_until(lambda: waiting_on_the_table(pg_dsn) == 1)
        for i in range(5):
            store.record(call(duration_ms=i, user="queued"))
        started = time.monotonic()
        store.close()
        took = time.monotonic() - started
        assert waiting_on_the_table(pg_dsn) == 0  # the blocked INSERT was cancelled
    assert took < 1.0 + CLOSE_GRACE_S + 2.0, took  # not the 600 s lock timeout
    assert not store.writer.running
    assert (store.writer.written, store.writer.lost, store.writer.pending) == (1, 10, 0)
    assert "could not be written and are lost" in caplog.text
    assert audit_backends(pg_dsn) == []  # both connections closed
    assert rows(pg_dsn, f'SELECT "user" FROM {TABLE}') == [("before",)]


def test_close_with_the_server_hung_mid_statement_gives_up_at_its_deadline_and_leaves_the_thread_to_end(
    pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = PostgresAuditSink(pg_dsn, close_timeout=0.5)
    store.record(call(user="before"))
    assert store.flush(timeout=30)
    [_, writer_pid] = audit_backends(pg_dsn)
    os.kill(writer_pid, signal.SIGSTOP)  # the writer's server process hangs (as a frozen host or network would)
    try:
        for i in range(3):
            store.record(call(duration_ms=i))
        started = time.monotonic()
        store.close()  # the cancel is sent, but nothing answers
        took = time.monotonic() - started
        assert took < 0.5 + CLOSE_GRACE_S + 2.0, took
        assert (store.writer.written, store.writer.lost, store.writer.pending) == (1, 3, 0)
        assert "still blocked" in caplog.text and "gave up on 3 events" in caplog.text
        assert store.writer.running  # stuck in the driver: not killed, not touched by another thread
    finally:
        os.kill(writer_pid, signal.SIGCONT)
    wait_until(lambda: not store.writer.running)  # it ends on its own, closing its connection
    assert (store.writer.written, store.writer.lost) == (1, 3)  # what it did after close is not counted again
    wait_until(lambda: audit_backends(pg_dsn) == [])


def test_a_closed_store_refuses_to_record(pg_dsn: str) -> None:
    store = PostgresAuditSink(pg_dsn)
    store.close()
    store.close()
    with pytest.raises(AuditStoreError, match="the store is closed"):
        store.record(call())
    with pytest.raises(AuditStoreError, match="the store is closed"):
        store.recent()


# --- the portal, the config and the CLI ---


def _write_config(tmp_path: Path, audit: str = "audit: {postgres: '${PORTAL_AUDIT_DSN}'}\n") -> Path:
    path = tmp_path / "portal.yaml"
    path.write_text("servers: {}\n" + audit)
    return path


async def test_a_portal_with_audit_postgres_records_searches_runs_and_calls(pg_dsn: str, tmp_path: Path) -> None:
    config = load_config(_write_config(tmp_path), environ={"PORTAL_AUDIT_DSN": pg_dsn})
    with anyio.fail_after(60):
        async with Portal.open(config, local={"crm": crm_server()}, user="ada") as portal:
            portal.search_api("find a customer")
            result = await portal.execute_code("print(await crm.find_customer(email='a@example.com'))")
    assert result.ok, result
    with PostgresAuditSink(pg_dsn, create=False) as store:
        events = store.recent(10)
    assert [(e.kind, e.user, e.outcome) for e in events] == [
        ("run", "ada", "ok"),
        ("call", "ada", "ok"),
        ("search", "ada", "ok"),
    ]
    assert events[1].subject == "crm.find_customer" and events[1].size_in > 0 and events[1].size_out > 0


async def test_a_portal_whose_audit_database_is_unreachable_does_not_start(
    pg_dsn: str, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    dsn = pg_dsn.replace(f":{postgres_server.port}/", ":1/")
    config = load_config(_write_config(tmp_path), environ={"PORTAL_AUDIT_DSN": dsn})
    with anyio.fail_after(60), pytest.raises(AuditStoreError, match="cannot connect") as caught:
        async with Portal.open(config):
            pass
    assert password_of(pg_dsn) not in str(caught.value)


def test_the_dsn_comes_from_the_environment_and_is_not_shown_in_the_config(tmp_path: Path) -> None:
    dsn = "postgresql://portal:pw-from-env@db.internal/audit"
    config = load_config(_write_config(tmp_path), environ={"PORTAL_AUDIT_DSN": dsn})
    assert config.audit.postgres is not None and config.audit.postgres.get_secret_value() == dsn
    assert config.audit.sqlite is None
    assert "pw-from-env" not in repr(config) and "pw-from-env" not in str(config.model_dump())


def test_sqlite_and_postgres_together_are_refused(tmp_path: Path) -> None:
    path = _write_config(tmp_path, "audit:\n  sqlite: audit.sqlite\n  postgres: postgresql://db/audit\n")
    with pytest.raises(ConfigError, match="`sqlite` and `postgres` are exclusive") as caught:
        load_config(path, environ={})
    assert caught.value.line == 2


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "portal_mcp", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "250", **(env or {})},
    )


def test_the_cli_summarises_and_lists_a_postgres_audit_log(pg_dsn: str, tmp_path: Path) -> None:
    with PostgresAuditSink(pg_dsn) as store:
        for ms in (1, 2, 3, 4):
            store.record(call("crm.find_customer", ms))
        store.record(AuditEvent("call", "bob", "error", 9.0, "crm.delete_customer", "ToolFailedError"))
    config = _write_config(tmp_path)
    env = {"PORTAL_AUDIT_DSN": pg_dsn}

    summary = run_cli("audit", "summary", "--config", str(config), "--by", "tool", "--json", env=env)
    assert summary.returncode == 0, summary.stderr
    assert json.loads(summary.stdout) == [
        {"key": "crm.find_customer", "calls": 4, "errors": 0, "p50_ms": 2.0, "p95_ms": 4.0},
        {"key": "crm.delete_customer", "calls": 1, "errors": 1, "p50_ms": 9.0, "p95_ms": 9.0},
    ]
    recent = run_cli("audit", "recent", "--dsn", pg_dsn, "--user", "bob")
    assert recent.returncode == 0, recent.stderr
    assert "crm.delete_customer" in recent.stdout and "dbname=" in recent.stdout
    assert password_of(pg_dsn) not in recent.stdout + recent.stderr


def test_the_cli_never_creates_an_audit_log_and_names_the_store_without_its_password(pg_dsn: str) -> None:
    result = run_cli("audit", "recent", "--dsn", pg_dsn)
    assert result.returncode == 1
    assert "holds no audit log yet" in result.stderr
    assert password_of(pg_dsn) not in result.stderr
    both = run_cli("audit", "recent", "--dsn", pg_dsn, "--db", "x.sqlite")
    assert both.returncode == 2 and "not both" in both.stderr
