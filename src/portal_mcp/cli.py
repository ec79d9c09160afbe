"""`portal-mcp`: serve | check | search | exec | stubs | snapshot | import | bench | audit | demo.

Every command that takes `--config` falls back to the bundled default catalog. A bad config prints one clear line
and exits with code 2; no traceback reaches the user.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shlex
import signal
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, NoReturn

import anyio
import click
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table

from portal_mcp.config import PortalConfig, RemoteServerConfig, StdioServerConfig, load_config
from portal_mcp.control.audit_store import AuditStore, PostgresAuditSink, SqliteAuditSink, as_json
from portal_mcp.downstream import ServerStatus
from portal_mcp.errors import AuditStoreError, ConfigError, PortalError
from portal_mcp.logs import LogFormat
from portal_mcp.logs import configure as configure_logging
from portal_mcp.portal import Portal

logger = logging.getLogger("portal_mcp")
err = Console(stderr=True, soft_wrap=True)
out = Console()

CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="portal.yaml or an mcpServers JSON file (default: the bundled catalog)",
)


def _fail(kind: str, exc: PortalError, code: int, *, as_log: bool) -> NoReturn:
    """One line on stderr and the exit code: a log record when logs are JSON (so a log pipeline keeps it)."""
    if as_log:
        logger.error("%s %s", kind, exc, extra={"event": "fatal"})
    else:
        err.print(f"[red]{kind}[/red] {exc}", highlight=False)
    raise SystemExit(code) from None


def _config_failed(exc: ConfigError, *, as_log: bool = False) -> NoReturn:
    """Exit code 2 and one line: what every command does with a bad config."""
    _fail("config error", exc, 2, as_log=as_log)


def _load(path: Path | None, *, as_log: bool = False) -> PortalConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        _config_failed(exc, as_log=as_log)


def _run(coro_fn: Callable[[], Coroutine[Any, Any, int | None]], *, as_log: bool = False) -> None:
    try:
        code = anyio.run(coro_fn)
    except ConfigError as exc:
        _config_failed(exc, as_log=as_log)
    except PortalError as exc:
        _fail("error", exc, 1, as_log=as_log)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    raise SystemExit(code or 0)


@asynccontextmanager
async def _open(config: PortalConfig, *, quiet: bool = False) -> AsyncIterator[Portal]:
    """Open the portal with a progress bar on stderr while servers connect."""
    servers = config.enabled_servers()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        console=err,
        transient=True,
        disable=quiet or not servers,
    ) as progress:
        task = progress.add_task("connecting to servers", total=len(servers))

        def on_status(status: ServerStatus) -> None:
            progress.update(
                task,
                advance=1,
                description=f"connected {status.name}" if status.error is None else f"failed {status.name}",
            )

        async with Portal.open(config, on_status=on_status) as portal:
            progress.stop()
            for status in portal.statuses():
                if status.state in ("failed", "down"):
                    err.print(
                        f"[yellow]warning[/yellow] server {status.name!r} unavailable: {status.error}", highlight=False
                    )
            yield portal


USER_OPTION = click.option(
    "--user",
    default=None,
    help="act as this user (their policy applies, and the audit log records them); default: the config's `user:` "
    "or the OS user",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="portal-mcp")
def main() -> None:
    """One MCP server in front of many: search_api + execute_code over a namespaced catalog."""


@main.command()
@CONFIG_OPTION
@click.option("--transport", type=click.Choice(["stdio", "http"]), default="stdio", show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="HTTP bind address")
@click.option("--port", default=8000, show_default=True, type=int, help="HTTP port")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="stderr logs: readable lines, or one JSON object per line (time, level, logger, message, server, event)",
)
@click.option(
    "--stateless/--stateful",
    default=None,
    help="HTTP without MCP sessions, so any replica can serve any request (overrides `http: {stateless: ...}`)",
)
@click.option(
    "--replica-id",
    envvar="PORTAL_REPLICA_ID",
    default=None,
    help="this replica's id among `http.replica.peers`, to forward approval answers (env: PORTAL_REPLICA_ID)",
)
def serve(
    config_path: Path | None,
    transport: str,
    host: str,
    port: int,
    log_format: LogFormat,
    stateless: bool | None,
    replica_id: str | None,
) -> None:
    """Serve search_api and execute_code over stdio (default) or streamable HTTP at /mcp (plus /metrics, /healthz)."""
    from portal_mcp.surface.server import PortalServer

    if transport == "stdio" and stateless is not None:
        raise click.UsageError("--stateless/--stateful applies to `--transport http`; stdio has one client")
    errlog = configure_logging(log_format)
    as_log = log_format == "json"
    config = _load(config_path, as_log=as_log)
    http = config.http if stateless is None else config.http.model_copy(update={"stateless": stateless})
    if replica_id:  # replicas share one config: each gets its own id on the command line (checked below)
        http = http.model_copy(update={"replica": http.replica.model_copy(update={"id": replica_id})})

    async def run() -> None:
        if transport == "http":
            PortalServer.check_bind(host, http, config.source)
            PortalServer.check_replica(http, config.source)
        # Servers that fail to start are logged by the pool (`portal_mcp.downstream`), so no warnings are printed here.
        async with Portal.open(config, errlog=errlog) as portal:
            server = PortalServer(portal)
            statuses = portal.statuses()
            down = [s.name for s in statuses if s.state in ("failed", "down")]
            where = "stdio" if transport == "stdio" else f"http://{host}:{port}/mcp" + (" (stateless)" if http.stateless else "")  # fmt: skip
            logger.info(
                "serving %d tools on %s: %d of %d servers up%s",
                len(portal.catalog),
                where,
                len(statuses) - len(down),
                len(statuses),
                f" (unavailable: {', '.join(down)})" if down else "",
                extra={"event": "serving"},
            )
            if transport == "stdio":
                # A client stops a stdio server by closing its stdin. (SIGTERM keeps its default: the blocking read
                # of stdin cannot be interrupted, so a graceful stop on a signal would hang until stdin closed.)
                await server.serve_stdio()
            else:
                with _signals_return():
                    await server.serve_http(host, port, http)
            # Leaving Portal.open closes the audit store (writing its queue), the downstream servers and the sandbox.
            logger.info("stopping: closing the audit store, the downstream servers and the sandbox", extra={"event": "stopping"})  # fmt: skip

    _run(run, as_log=as_log)


@contextlib.contextmanager
def _signals_return() -> Iterator[None]:
    """Over HTTP, uvicorn stops gracefully on SIGTERM or SIGINT, then raises the signal again with the handlers it
    found. With the defaults that would kill the process (or raise KeyboardInterrupt) before the portal closes its
    audit store, downstream servers and sandbox; with these, serving simply returns and the portal shuts down."""

    def noted(received: int, frame: object) -> None:
        logger.info("received %s", signal.Signals(received).name, extra={"event": "signal"})

    previous = {sig: signal.signal(sig, noted) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@main.command()
@CONFIG_OPTION
def check(config_path: Path | None) -> None:
    """Validate the config, connect to every server and show a status table (exit 1 if any server failed, or a
    policy pattern or annotation override names no tool of its server)."""
    config = _load(config_path)

    async def run() -> int:
        async with _open(config) as portal:
            statuses = portal.statuses()
            layers = dict(portal.sandbox.layers)
            unmatched = portal.policy.unmatched(portal.catalog)
        table = Table(title=f"{config.source}")
        for column in ("server", "transport", "status", "tools", "connect ms", "problem"):
            table.add_column(column, overflow="fold")
        for s in statuses:
            colour = {"connected": "green", "snapshot": "cyan", "disabled": "dim"}.get(s.state, "red")
            ms = f"{s.connect_ms:.0f}" if s.connect_ms is not None else "-"
            table.add_row(s.name, s.transport, f"[{colour}]{s.state}[/{colour}]", str(s.tool_count), ms, s.error or "")
        out.print(table)
        if layers:
            sandbox = Table(title="sandbox layers (what enforces each on this kernel)")
            sandbox.add_column("layer")
            sandbox.add_column("enforced by", overflow="fold")
            for layer, mechanisms in layers.items():
                sandbox.add_row(layer, ", ".join(mechanisms) if mechanisms else "[yellow]nothing[/yellow]")
            out.print(sandbox)
        for problem in unmatched:
            out.print(f"[yellow]policy:[/yellow] {problem} (a typo? it has no effect)", highlight=False)
        return 1 if unmatched or any(s.state in ("failed", "down") for s in statuses) else 0

    _run(run)


@main.command()
@CONFIG_OPTION
@click.argument("query", default="")
@click.option("--server", default=None, help="only this server")
@click.option("--limit", default=5, show_default=True, type=click.IntRange(1, 20))
@click.option(
    "--detail",
    type=click.Choice(["name", "signature", "full", "auto"]),
    default="auto",
    show_default=True,
    help="auto: full docs for the top 2 hits, signatures for the rest",
)
@USER_OPTION
def search(config_path: Path | None, query: str, server: str | None, limit: int, detail: Any, user: str | None) -> None:
    """Print what search_api returns for QUERY (empty: the server overview), as USER sees it under the policy."""
    config = _load(config_path)

    async def run() -> None:
        async with _open(config) as portal:
            click.echo(portal.search_api(query, server=server, limit=limit, detail=detail, user=user))

    _run(run)


@main.command(name="exec")
@CONFIG_OPTION
@click.argument("file", type=click.File("r"))
@USER_OPTION
def exec_(config_path: Path | None, file: Any, user: str | None) -> None:
    """Run FILE (agent code; '-' for stdin) through the same sandbox execute_code uses, as USER."""
    config = _load(config_path)
    code = file.read()

    async def run() -> int:
        async with _open(config) as portal:
            result = await portal.execute_code(code, user=user)
        click.echo(result.render())
        return 0 if result.ok else 1

    _run(run)


@main.command(name="import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_(file: Path) -> None:
    """Print a Claude Desktop / Cursor / Claude Code `mcpServers` JSON file as portal.yaml (variables kept as written)."""
    from portal_mcp.config import import_as_yaml

    try:
        click.echo(import_as_yaml(file), nl=False)
    except ConfigError as exc:
        _config_failed(exc)


@main.command()
@CONFIG_OPTION
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
def snapshot(config_path: Path | None, out_dir: Path) -> None:
    """Write one tools/list snapshot file per connected server into --out."""
    from portal_mcp.catalog.snapshot import dump_snapshot

    config = _load(config_path)

    async def run() -> int:
        out_dir.mkdir(parents=True, exist_ok=True)
        async with _open(config) as portal:
            listings = portal.pool.listings()
            failed = [s.name for s in portal.statuses() if s.state in ("failed", "down")]
        for name, tools in listings.items():
            _write(out_dir / f"{name}.json", dump_snapshot(name, _source(config.servers.get(name)), tools), len(tools))
        return 1 if failed else 0

    _run(run)


@main.command()
@CONFIG_OPTION
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
def stubs(config_path: Path | None, out_dir: Path) -> None:
    """Write one typed stub file (.pyi) per server into --out."""
    from portal_mcp.catalog.stubs.render import render_module

    config = _load(config_path)

    async def run() -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        async with _open(config) as portal:
            catalog = portal.catalog
        for name in catalog.servers():
            entries = catalog.by_server(name)
            _write(out_dir / f"{name}.pyi", render_module(name, entries), len(entries))

    _run(run)


@main.command()
@CONFIG_OPTION
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="also write the report as JSON",
)
def bench(config_path: Path | None, json_path: Path | None) -> None:
    """Print how many context tokens the portal saves against listing every tool inline (and write it as JSON)."""
    from portal_mcp.benchmark import TYPICAL_QUERIES, measure_tokens, report_table, with_queries
    from portal_mcp.catalog.tokens import portal_tools_json

    config = _load(config_path)

    async def run() -> None:
        async with _open(config) as portal:
            catalog = portal.catalog
            with Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                console=err,
                transient=True,
            ) as progress:
                searching = progress.add_task("search_api replies", total=len(TYPICAL_QUERIES))
                replies = []
                for query in TYPICAL_QUERIES:
                    progress.update(searching, description=f"search_api({query!r})")
                    replies.append(portal.search_api(query))
                    progress.advance(searching)
                counting = progress.add_task("counting tokens", total=len(catalog))
                report = measure_tokens(
                    catalog,
                    portal_tools_json(),
                    replies,
                    progress=lambda name: progress.update(counting, advance=1, description=f"counting {name}"),
                )
        report = with_queries(report, TYPICAL_QUERIES)
        out.print(report_table(report))
        if json_path is not None:
            json_path.write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
            out.print(f"wrote {json_path}", highlight=False)

    _run(run)


@main.command(name="agents-md")
@CONFIG_OPTION
def agents_md(config_path: Path | None) -> None:
    """Print a section for a repository's AGENTS.md: how to use the portal and what its catalog holds."""
    from portal_mcp.agents_md import render_agents_md

    config = _load(config_path)

    async def run() -> None:
        async with _open(config) as portal:
            click.echo(render_agents_md(portal), nl=False)

    _run(run)


@main.group()
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
    from datetime import datetime

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
    import time

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
        audit = _load(config_path).audit
        path = audit.sqlite
        dsn = audit.postgres.get_secret_value() if audit.postgres is not None else None
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


@main.command()
def demo() -> None:
    """A scripted session: start `portal-mcp serve` on the bundled catalog, drive it with a real MCP client."""
    from portal_mcp.demo import run_demo

    _run(lambda: run_demo(out))


def _write(path: Path, text: str, tools: int) -> None:
    path.write_text(text, encoding="utf-8")
    out.print(f"wrote {path} ({tools} tools)", highlight=False)


def _source(server: Any) -> str:
    if isinstance(server, StdioServerConfig):
        return shlex.join([server.command, *server.args])
    if isinstance(server, RemoteServerConfig):
        return server.url
    return "snapshot" if server is not None else "in-process"
