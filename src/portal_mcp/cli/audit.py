"""`portal-mcp audit recent|summary`: query the audit store of the config (SQLite or PostgreSQL), or --db / --dsn.
A query never creates a store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from portal_mcp.cli.common import CONFIG_OPTION, err, load, out
from portal_mcp.control.audit_store import AuditStore, PostgresAuditSink, SqliteAuditSink, as_json
from portal_mcp.errors import AuditStoreError


@click.group()
def audit() -> None:
    """Query the audit log: the store of `audit:` in the config (SQLite or PostgreSQL), or --db / --dsn."""


DB_OPTION = click.option(
    "--db", "db_path", type=click.Path(dir_okay=False, path_type=Path), default=None, help="the SQLite audit file"
)
DSN_OPTION = click.option(
    "--dsn",
    default=None,
    help="the PostgreSQL audit database (libpq DSN or postgresql:// URL); a password here shows in `ps`, "
    "prefer --config with `audit: {postgres: ${VAR}}`",
)
JSON_OPTION = click.option("--json", "as_json_", is_flag=True, help="print JSON instead of a table")
KIND = click.Choice(["search", "run", "call"])


@audit.command(name="recent")
@CONFIG_OPTION
@DB_OPTION
@DSN_OPTION
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--kind", type=KIND, default=None, help="only this kind of event")
@click.option("--user", default=None, help="only this user's events")
@JSON_OPTION
def audit_recent(
    config_path: Path | None,
    db_path: Path | None,
    dsn: str | None,
    limit: int,
    kind: Any,
    user: str | None,
    as_json_: bool,
) -> None:
    """The most recent searches, runs and tool calls, newest first."""
    with _audit_store(config_path, db_path, dsn) as store:
        events = store.recent(limit, kind=kind, user=user)
    if as_json_:
        out.print_json(as_json(events))
        return
    table = Table(title=store.name)
    for column in ("time", "kind", "user", "outcome", "ms", "subject", "in", "out", "detail"):
        table.add_column(column, overflow="fold")
    for e in events:
        colour = "green" if e.outcome == "ok" else "red"
        when = datetime.fromtimestamp(e.at).isoformat(sep=" ", timespec="seconds")
        outcome = f"[{colour}]{e.outcome}[/{colour}]"
        table.add_row(
            when, e.kind, e.user, outcome, f"{e.duration_ms:.1f}", e.subject, str(e.size_in), str(e.size_out), e.detail
        )
    out.print(table)


@audit.command(name="summary")
@CONFIG_OPTION
@DB_OPTION
@DSN_OPTION
@click.option("--by", type=click.Choice(["user", "server", "tool"]), default="tool", show_default=True)
@click.option("--since", default=None, help="only events this recent: 30m, 12h, 7d or seconds")
@click.option("--kind", type=KIND, default="call", show_default=True, help="with --by user: which events to count")
@JSON_OPTION
def audit_summary(
    config_path: Path | None,
    db_path: Path | None,
    dsn: str | None,
    by: Any,
    since: str | None,
    kind: Any,
    as_json_: bool,
) -> None:
    """Calls, errors and p50/p95 latency per user, server or tool, busiest first."""
    if by != "user" and kind != "call":
        raise click.BadParameter("only `call` events have a server and a tool; drop --kind or use --by user")
    start = time.time() - _seconds(since) if since is not None else None
    with _audit_store(config_path, db_path, dsn) as store:
        rows = store.summary(by, start, kind=kind)
    if as_json_:
        out.print_json(as_json(rows))
        return
    table = Table(title=f"{kind} events by {by}" + (f" in the last {since}" if since else ""))
    for column in (by, "calls", "errors", "p50 ms", "p95 ms"):
        table.add_column(column, overflow="fold", justify="left" if column == by else "right")
    for r in rows:
        errors = f"[red]{r.errors}[/red]" if r.errors else "0"
        table.add_row(r.key, str(r.calls), errors, f"{r.p50_ms:.1f}", f"{r.p95_ms:.1f}")
    out.print(table)


@contextmanager
def _audit_store(config_path: Path | None, db_path: Path | None, dsn: str | None) -> Iterator[AuditStore]:
    """The store to query: --db or --dsn, else the config's `audit:`; a store is never created by a query."""
    if db_path is not None and dsn is not None:
        raise click.UsageError("pass either --db (SQLite) or --dsn (PostgreSQL), not both")
    path = db_path
    if path is None and dsn is None:
        configured = load(config_path).audit
        path = configured.sqlite
        dsn = configured.postgres.get_secret_value() if configured.postgres is not None else None
    if path is None and dsn is None:
        err.print(
            "[red]error[/red] no audit store: set `audit: {sqlite: PATH}` in the config (or `audit: {postgres: DSN}`), "
            "or pass --db PATH / --dsn DSN"
        )
        raise SystemExit(2)
    if path is not None and not path.is_file():
        err.print(f"[red]error[/red] {str(path)!r} does not exist yet; the portal creates it at its first event")
        raise SystemExit(1)
    try:
        store: AuditStore = SqliteAuditSink(path) if path is not None else PostgresAuditSink(str(dsn), create=False)
        with store:
            yield store
    except AuditStoreError as exc:
        err.print(f"[red]error[/red] {exc}", highlight=False)
        raise SystemExit(1) from None


def _seconds(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        value = float(number)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a duration; write e.g. 30m, 12h, 7d or 3600") from None
    return value * units[unit]
