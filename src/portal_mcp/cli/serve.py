"""`portal-mcp serve`: the portal as an MCP server over stdio or streamable HTTP, until the client or a signal
stops it."""

from __future__ import annotations

import contextlib
import errno
import gc
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import click

from portal_mcp.cli.common import CONFIG_OPTION, fail, load, logger, run
from portal_mcp.control.credentials import Redactor
from portal_mcp.errors import PortalError
from portal_mcp.logs import LogFormat
from portal_mcp.logs import configure as configure_logging
from portal_mcp.naming import plural
from portal_mcp.portal import Portal


@click.command()
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
    output = configure_logging(log_format)
    as_log = log_format == "json"
    config = load(config_path, as_log=as_log)
    # Every record on the portal's log output, the SDK's and httpx's too, with the config's secrets taken out.
    output.handler.addFilter(Redactor(config.secret_values()).filter())
    http = config.http if stateless is None else config.http.model_copy(update={"stateless": stateless})
    if replica_id:  # replicas share one config: each gets its own id on the command line (checked below)
        http = http.model_copy(update={"replica": http.replica.model_copy(update={"id": replica_id})})

    async def serving() -> None:
        if transport == "http":
            PortalServer.check_bind(host, http, config.source, auth=config.auth)
            PortalServer.check_replica(http, config.source)
            check_port(host, port, as_log=as_log)
        # Servers that fail to start are logged by the pool (`portal_mcp.downstream`), so no warnings are printed here.
        # Servers connect in the background (the pool logs progress and failures): clients get answers at once.
        async with Portal.open(config, errlog=output.errlog, background=True) as portal:
            server = PortalServer(portal)
            # What start-up built (modules, the catalog, the search index, the model) lives as long as the process:
            # out of the collector's sight, a collection during a run no longer walks it (-5% on a trivial run).
            gc.freeze()
            where = "stdio" if transport == "stdio" else f"http://{host}:{port}/mcp" + (" (stateless)" if http.stateless else "")  # fmt: skip
            logger.info(
                "serving %s on %s while servers connect",
                plural(len(portal.catalog), "known tool"),
                where,
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

    run(serving, as_log=as_log)


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


def check_port(host: str, port: int, *, as_log: bool) -> None:
    """Exit 2 with one line when the port is taken, before any downstream server is started."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as exc:
            reason = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc.strerror})"
            message = (
                f"port {port} on {host} {reason}; stop what listens there (`ss -ltnp 'sport = :{port}'` shows it) "
                "or serve on another port with `--port`"
            )
            fail("error", PortalError(message), 2, as_log=as_log)
