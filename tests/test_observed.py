"""Observed return types through the portal: learned from real calls, stored beside the audit log (SQLite, PostgreSQL
or memory), shown in search replies, never holding a value, and off per server with `observe_results: false`."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import sys
import textwrap
from pathlib import Path

import anyio
import psycopg

from portal_mcp.config import PortalConfig, load_config
from portal_mcp.portal import Portal

DEMO_SERVER = Path(__file__).parent / "servers" / "demo_server.py"
MARKER = "MARKER-5d41402abc-value"
FIRST = {"items": [{"number": 1, "title": MARKER, "labels": [MARKER]}], "total": 1, "owner": {f"{MARKER}@x.org": 1}}
SECOND = {"items": [], "total": 0, "next": MARKER}
OBSERVED_TYPES = """\
class Item(TypedDict):
    number: int
    title: str
    labels: list[str]

class EchoResult(TypedDict):
    items: list[Item]
    total: int
    owner: NotRequired[dict[str, int]]
    next: NotRequired[str]

# demo.echo
async def echo(*, text: str) -> EchoResult:  # return type observed over 2 calls
"""


def config(tmp_path: Path, audit: str = "", server: str = "", dsn: str = "") -> PortalConfig:
    """The demo server as a stdio subprocess: its `echo` returns the text it gets, JSON text here."""
    path = tmp_path / "portal.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            servers:
              demo:
                command: {sys.executable}
                args: [{DEMO_SERVER}]
                timeout: 20
            """
        )
        + textwrap.indent(textwrap.dedent(server), "    ")
        + audit
    )
    return load_config(path, environ={"PORTAL_AUDIT_DSN": dsn})


async def call_echo(portal: Portal, *values: object) -> None:
    for value in values:
        text = json.dumps(value)
        result = await portal.execute_code(f"result = await demo.echo(text={text!r})\nprint(len(result))", portal.local)
        assert result.ok, result.render()


async def test_a_call_teaches_the_return_type_and_a_second_call_merges_into_it(tmp_path: Path) -> None:
    with anyio.fail_after(60):
        async with Portal.open(config(tmp_path)) as portal:
            assert "async def echo(*, text: str) -> Any:" in portal.search_api("echo", portal.local)
            await call_echo(portal, FIRST)
            assert "async def echo(*, text: str) -> EchoResult:  # return type observed over 1 call" in (
                portal.search_api("echo", portal.local)
            )
            await call_echo(portal, SECOND)
            reply = portal.search_api("echo", portal.local)
    assert OBSERVED_TYPES in reply
    assert MARKER not in reply


async def test_shapes_live_in_the_sqlite_audit_file_survive_a_restart_and_hold_no_value(tmp_path: Path) -> None:
    audit = f"audit: {{sqlite: {tmp_path / 'audit.sqlite'}}}\n"
    with anyio.fail_after(60):
        async with Portal.open(config(tmp_path, audit)) as portal:
            await call_echo(portal, FIRST, SECOND)
        async with Portal.open(config(tmp_path, audit)) as portal:
            reply = portal.search_api("echo", portal.local)
            await call_echo(portal, SECOND)
            assert "# return type observed over 3 calls" in portal.search_api("echo", portal.local)
    assert OBSERVED_TYPES in reply
    stored = sqlite_bytes(tmp_path)
    assert b"tool_shapes" in stored and b"EchoResult" not in stored and b'"total"' in stored
    assert MARKER.encode() not in stored


async def test_a_damaged_stored_shape_is_skipped_and_replaced_by_what_calls_teach(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    audit = f"audit: {{sqlite: {path}}}\n"
    with anyio.fail_after(60):
        async with Portal.open(config(tmp_path, audit)):
            pass
        damage(path)
        async with Portal.open(config(tmp_path, audit)) as portal:
            assert "async def echo(*, text: str) -> Any:" in portal.search_api("echo", portal.local)
            await call_echo(portal, FIRST)
            assert "observed over 1 call" in portal.search_api("echo", portal.local)


def damage(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute('INSERT INTO tool_shapes VALUES (\'demo.echo\', \'{"object": {"n": "x"}}\', 0)')


async def test_without_an_audit_store_shapes_are_kept_in_memory_only(tmp_path: Path) -> None:
    with anyio.fail_after(60):
        async with Portal.open(config(tmp_path)) as portal:
            await call_echo(portal, FIRST)
            assert "observed over 1 call" in portal.search_api("echo", portal.local)
        async with Portal.open(config(tmp_path)) as portal:
            assert "async def echo(*, text: str) -> Any:" in portal.search_api("echo", portal.local)


async def test_observe_results_false_keeps_a_servers_results_unobserved(tmp_path: Path) -> None:
    audit = f"audit: {{sqlite: {tmp_path / 'audit.sqlite'}}}\n"
    with anyio.fail_after(60):
        async with Portal.open(config(tmp_path, audit, server="observe_results: false\n")) as portal:
            await call_echo(portal, FIRST)
            reply = portal.search_api("echo", portal.local)
    assert "async def echo(*, text: str) -> Any:" in reply and "observed" not in reply
    stored = sqlite_bytes(tmp_path)
    assert b'"total"' not in stored


async def test_shapes_in_postgresql_merge_across_replicas_survive_a_restart_and_hold_no_value(
    pg_dsn: str, tmp_path: Path
) -> None:
    audit = "audit: {postgres: '${PORTAL_AUDIT_DSN}'}\n"
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    with anyio.fail_after(90):
        async with (
            Portal.open(config(first, audit, dsn=pg_dsn)) as one,
            Portal.open(config(second, audit, dsn=pg_dsn)) as two,
        ):
            await call_echo(one, FIRST)
            await call_echo(two, SECOND)
        async with Portal.open(config(first, audit, dsn=pg_dsn)) as again:
            reply = again.search_api("echo", again.local)
    # Which replica's delta reached the table first decides the order of the keys, not the types.
    start = reply.index("class Item(")
    shown = reply[start : reply.index("\n", reply.index("async def echo", start)) + 1]
    assert sorted(shown.splitlines()) == sorted(OBSERVED_TYPES.splitlines())
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute("SELECT tool, shape FROM portal_tool_shapes").fetchall()
        dumped = conn.execute("SELECT string_agg(t::text, '') FROM portal_tool_shapes t").fetchone()
    assert [tool for tool, _ in rows] == ["demo.echo"]
    assert dumped is not None and MARKER not in dumped[0]


def sqlite_bytes(folder: Path) -> bytes:
    """Every byte of the SQLite audit file and its WAL: a value anywhere in them would show."""
    return b"".join(path.read_bytes() for path in folder.glob("audit.sqlite*"))
