"""The audit stores, SQLite and PostgreSQL, behave alike: events survive, queries summarise them, writers share it.

Tests taking `open_store` run against both (PostgreSQL: the real server of tests/pg.py, skipped when absent);
the rest are about the SQLite file. PostgreSQL specifics (queueing, outages, replicas) are in test_audit_pg.py.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from portal_mcp.control.audit import AuditEvent, AuditSink
from portal_mcp.control.audit_store import (
    SCHEMA_VERSION,
    AuditStore,
    AuditStoreError,
    PostgresAuditSink,
    SqliteAuditSink,
    SummaryRow,
    as_json,
    percentile,
)

OpenStore = Callable[[], AuditStore]


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> OpenStore:
    """Opens a store on this test's own file or database: a second call opens the same one again."""
    if request.param == "sqlite":
        path = tmp_path / "audit.sqlite"
        return lambda: SqliteAuditSink(path)
    dsn: str = request.getfixturevalue("pg_dsn")
    return lambda: PostgresAuditSink(dsn)


def call(subject: str, duration_ms: float, *, user: str = "ada", outcome: str = "ok", at: float = 1000.0) -> AuditEvent:
    return AuditEvent("call", user, outcome, duration_ms, subject, size_in=10, size_out=20, at=at)  # type: ignore[arg-type]


def test_the_store_is_an_audit_sink(open_store: OpenStore) -> None:
    with open_store() as store:
        sink: AuditSink = store
        assert callable(sink.record)


def test_events_round_trip_with_every_field(open_store: OpenStore) -> None:
    events = [
        AuditEvent("search", "ada", "ok", 1.5, "current time", size_out=300, at=1000.0),
        AuditEvent("run", "ada", "error", 42.0, "ab" * 32, "NameError: x", size_in=18, size_out=0, at=1001.0),
        AuditEvent("call", "bob", "refused", 0.25, "time.get_time", "unknown argument 'tz'", 12, 0, at=1002.0),
    ]
    with open_store() as store:
        for event in events:
            store.record(event)
        assert store.recent(10) == events[::-1]


def test_text_no_store_can_hold_as_it_is_is_stored_cleaned_and_the_same_in_both(open_store: OpenStore) -> None:
    # A NUL (PostgreSQL refuses it), a lone surrogate (no UTF-8 encoding) and a pair split in two code points.
    odd = AuditEvent("search", "ev\x00e", "ok", 1.0, "find\x00tools \ud800 \ud83d\ude00", "why\udfff", at=1000.0)
    with open_store() as store:
        store.record(odd)
        store.record(call("time.now", 2.0, user="ev\x00e"))
        assert store.recent(1, kind="search") == [
            AuditEvent("search", "ev\ufffde", "ok", 1.0, "find\ufffdtools \ufffd \U0001f600", "why\ufffd", at=1000.0)
        ]
        assert store.summary("user") == [SummaryRow("ev\ufffde", 1, 0, 2.0, 2.0)]
        assert len(store.recent(10, user="ev\x00e")) == 2  # a filter is cleaned the same way


def test_recent_filters_by_kind_and_user_and_keeps_the_newest(open_store: OpenStore) -> None:
    with open_store() as store:
        for i in range(10):
            store.record(call("time.now", i, user="ada" if i % 2 else "bob", at=1000.0 + i))
        store.record(AuditEvent("run", "ada", "ok", 5.0, "digest", at=2000.0))
        assert [e.at for e in store.recent(3)] == [2000.0, 1009.0, 1008.0]
        assert [e.at for e in store.recent(3, kind="call", user="ada")] == [1009.0, 1007.0, 1005.0]
        assert [e.kind for e in store.recent(10, kind="run")] == ["run"]
        assert store.recent(10, user="nobody") == []


def test_the_file_runs_in_wal_mode_with_the_schema_version_recorded(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    with SqliteAuditSink(path) as store:
        store.record(call("time.now", 1.0))
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    finally:
        db.close()


def test_a_file_with_a_newer_schema_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    with SqliteAuditSink(path) as store:
        store.record(call("time.now", 1.0))
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    db.close()
    with pytest.raises(AuditStoreError) as caught:
        SqliteAuditSink(path)  # refused when opened: a portal configured with it does not start
    assert caught.value.store == str(path)
    assert f"schema version {SCHEMA_VERSION + 1} is newer than this portal-mcp reads ({SCHEMA_VERSION})" in str(
        caught.value
    )
    assert "upgrade portal-mcp" in str(caught.value)


def test_a_file_that_is_not_sqlite_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    path.write_text("not a database, just some text that is long enough to have a header" * 10)
    with pytest.raises(AuditStoreError, match="not a usable SQLite audit store"):
        SqliteAuditSink(path)


def test_a_path_in_a_missing_folder_is_created_when_the_store_opens(tmp_path: Path) -> None:
    path = tmp_path / "state" / "portal-mcp" / "audit.sqlite"
    with SqliteAuditSink(path):
        assert path.is_file()


def test_a_path_the_store_cannot_create_is_refused_when_it_opens(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file where the folder should be")
    with pytest.raises(AuditStoreError, match="cannot create its folder"):
        SqliteAuditSink(tmp_path / "state" / "audit.sqlite")


def test_a_file_another_process_holds_locked_delays_the_writer_not_the_caller_and_loses_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.sqlite"
    with SqliteAuditSink(path) as store:
        holder = sqlite3.connect(path, isolation_level=None)  # a second process's connection, as far as SQLite knows
        holder.execute("BEGIN EXCLUSIVE")
        try:
            for i in range(100):
                store.record(call("time.now", i))  # returns at once: before, each waited 5 s and then raised
            assert not store.flush(timeout=0.5)  # the writer waits for the lock and retries
            assert store.writer.pending == 100
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert store.flush(timeout=30)
        assert len(store.recent(1000)) == 100
        assert (store.writer.dropped, store.writer.lost) == (0, 0)


def test_a_closed_and_reopened_store_keeps_every_event(open_store: OpenStore) -> None:
    with open_store() as store:
        for i in range(100):
            store.record(call("time.now", i, at=1000.0 + i))
    with open_store() as store:
        store.record(call("time.now", 100, at=1100.0))
        events = store.recent(1000)
    assert len(events) == 101
    assert [e.duration_ms for e in events] == [float(i) for i in range(100, -1, -1)]


def test_a_closed_store_refuses_further_use(open_store: OpenStore) -> None:
    store = open_store()
    store.close()
    store.close()
    with pytest.raises(AuditStoreError, match="the store is closed"):
        store.record(call("time.now", 1.0))


def test_two_threads_writing_at_once_lose_nothing(open_store: OpenStore) -> None:
    with open_store() as store:

        def write(user: str) -> None:
            for i in range(500):
                store.record(call("time.now", i, user=user))

        threads = [threading.Thread(target=write, args=(user,)) for user in ("ada", "bob")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)
        summary = {row.key: row.calls for row in store.summary("user")}
    assert summary == {"ada": 500, "bob": 500}


def test_two_stores_on_one_file_lose_nothing(open_store: OpenStore) -> None:
    with open_store() as first, open_store() as second:

        def write(store: AuditStore, user: str) -> None:
            for i in range(300):
                store.record(call("time.now", i, user=user))

        threads = [threading.Thread(target=write, args=pair) for pair in ((first, "ada"), (second, "bob"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert second.flush(timeout=30)  # PostgreSQL: the other sink's queue is written by its own thread
        assert {row.key: row.calls for row in first.summary("user")} == {"ada": 300, "bob": 300}


def test_summaries_by_user_server_and_tool_count_calls_errors_and_percentiles(open_store: OpenStore) -> None:
    with open_store() as store:
        for ms in range(1, 101):  # time.now takes 1..100 ms; every tenth call fails
            store.record(call("time.now", ms, outcome="error" if ms % 10 == 0 else "ok"))
        for ms in (5, 7, 9):
            store.record(call("time.convert", ms, user="bob"))
        store.record(call("git.log", 30, user="bob", outcome="refused"))
        store.record(AuditEvent("run", "ada", "error", 9999.0, "digest"))  # runs are not calls

        assert store.summary("tool") == [
            SummaryRow("time.now", 100, 10, 50.0, 95.0),
            SummaryRow("time.convert", 3, 0, 7.0, 9.0),
            SummaryRow("git.log", 1, 1, 30.0, 30.0),
        ]
        assert store.summary("server") == [SummaryRow("time", 103, 10, 49.0, 95.0), SummaryRow("git", 1, 1, 30.0, 30.0)]
        assert store.summary("user") == [SummaryRow("ada", 100, 10, 50.0, 95.0), SummaryRow("bob", 4, 1, 7.0, 30.0)]
        assert store.summary("user", kind="run") == [SummaryRow("ada", 1, 1, 9999.0, 9999.0)]


def test_a_summary_since_a_time_leaves_out_older_events(open_store: OpenStore) -> None:
    with open_store() as store:
        store.record(call("time.now", 1000.0, at=100.0))
        store.record(call("time.now", 2.0, at=200.0))
        store.record(call("time.now", 4.0, at=300.0))
        assert store.summary("tool", since=200.0) == [SummaryRow("time.now", 2, 0, 2.0, 4.0)]
        assert store.summary("tool", since=301.0) == []


def test_a_summary_by_server_or_tool_only_counts_calls(open_store: OpenStore) -> None:
    with open_store() as store, pytest.raises(ValueError, match="counts `call` events"):
        store.summary("tool", kind="run")


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [([], 50, 0.0), ([7.0], 95, 7.0), ([1.0, 2.0], 50, 1.0), ([1.0, 2.0], 95, 2.0), ([1.0, 2.0, 3.0], 0, 1.0)],
)
def test_percentiles_are_nearest_rank(values: list[float], p: float, expected: float) -> None:
    assert percentile(values, p) == expected


def test_events_and_summaries_render_as_json(open_store: OpenStore) -> None:
    with open_store() as store:
        store.record(call("time.now", 3.0, at=1234.5))
        events = json.loads(as_json(store.recent()))
        rows = json.loads(as_json(store.summary("tool")))
    assert events == [
        {
            "kind": "call",
            "user": "ada",
            "outcome": "ok",
            "duration_ms": 3.0,
            "subject": "time.now",
            "detail": "",
            "size_in": 10,
            "size_out": 20,
            "at": 1234.5,
        }
    ]
    assert rows == [{"key": "time.now", "calls": 1, "errors": 0, "p50_ms": 3.0, "p95_ms": 3.0}]
