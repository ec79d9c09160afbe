"""Commands that only read the catalog: `search`, `stubs`, `snapshot`, `agents-md` (and `import`, which reads a
file). They connect the downstream servers but never start the sandbox or open the audit store
(`open_portal(..., catalog_only=True)`), so CI's stub check starts no fork server and a PostgreSQL audit store
configured for `serve` is not needed to print stubs."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import click

from portal_mcp.catalog.shapes import ShapeBook
from portal_mcp.cli.common import CONFIG_OPTION, USER_OPTION, as_user, config_failed, load, open_portal, run, write
from portal_mcp.config import PortalConfig, RemoteServerConfig, StdioServerConfig
from portal_mcp.control.audit_store import SqliteAuditSink
from portal_mcp.control.audit_store.shapes import store_beside
from portal_mcp.errors import ConfigError
from portal_mcp.portal import Portal


@click.command()
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
    config = as_user(load(config_path), user)

    async def searching() -> None:
        async with open_portal(config, catalog_only=True) as portal:
            click.echo(portal.search_api(query, portal.local, server=server, limit=limit, detail=detail))

    run(searching)


@click.command(name="import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_(file: Path) -> None:
    """Print another client's config file (Claude Desktop, Claude Code, Cursor, VS Code, Windsurf, Zed) as
    portal.yaml (variables kept as written)."""
    from portal_mcp.config import import_as_yaml

    try:
        click.echo(import_as_yaml(file), nl=False)
    except ConfigError as exc:
        config_failed(exc)


@click.command()
@CONFIG_OPTION
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
def snapshot(config_path: Path | None, out_dir: Path) -> None:
    """Write one tools/list snapshot file per connected server into --out."""
    from portal_mcp.catalog.snapshot import dump_snapshot

    def files(config: PortalConfig, portal: Portal) -> Iterator[tuple[str, str, int]]:
        for name, tools in portal.pool.listings().items():
            yield f"{name}.json", dump_snapshot(name, _source(config.servers.get(name)), tools), len(tools)

    _write_per_server(config_path, out_dir, files, strict=True)


@click.command()
@CONFIG_OPTION
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
def stubs(config_path: Path | None, out_dir: Path) -> None:
    """Write one typed stub file (.pyi) per server into --out (with the return types observed in earlier runs, when
    the audit store is a SQLite file that has some)."""
    from portal_mcp.catalog.stubs.render import render_module

    def files(config: PortalConfig, portal: Portal) -> Iterator[tuple[str, str, int]]:
        observed = _recorded_shapes(config).observed(portal.catalog)
        for name in portal.catalog.servers():
            entries = portal.catalog.by_server(name)
            yield f"{name}.pyi", render_module(name, entries, observed), len(entries)

    _write_per_server(config_path, out_dir, files, strict=False)


def _recorded_shapes(config: PortalConfig) -> ShapeBook:
    """The result shapes earlier runs recorded in a SQLite audit store that exists. A catalog-only command opens no
    PostgreSQL connection (the database may be out of reach from where stubs are generated): none are read there."""
    path = config.audit.sqlite
    if path is None or not path.is_file():
        return ShapeBook(skip=config.unobserved)
    with SqliteAuditSink(path) as sink:
        store = store_beside(sink)
        if store is None:
            return ShapeBook(skip=config.unobserved)
        try:
            return ShapeBook(store.load(), skip=config.unobserved)
        finally:
            store.close()


def _write_per_server(
    config_path: Path | None,
    out_dir: Path,
    files: Callable[[PortalConfig, Portal], Iterable[tuple[str, str, int]]],
    *,
    strict: bool,
) -> None:
    """Write the (file name, text, tool count) of `files` into `out_dir`; with `strict`, exit 1 if a server failed."""
    config = load(config_path)

    async def writing() -> int:
        out_dir.mkdir(parents=True, exist_ok=True)
        async with open_portal(config, catalog_only=True) as portal:
            rendered = list(files(config, portal))
            failed = any(s.state in ("failed", "down") for s in portal.statuses())
        for name, text, tools in rendered:
            write(out_dir / name, text, tools)
        return 1 if strict and failed else 0

    run(writing)


@click.command(name="agents-md")
@CONFIG_OPTION
def agents_md(config_path: Path | None) -> None:
    """Print a section for a repository's AGENTS.md: how to use the portal and what its catalog holds."""
    from portal_mcp.surface.agents_md import render_agents_md

    config = load(config_path)

    async def printing() -> None:
        async with open_portal(config, catalog_only=True) as portal:
            click.echo(render_agents_md(portal), nl=False)

    run(printing)


def _source(server: Any) -> str:
    if isinstance(server, StdioServerConfig):
        return shlex.join([server.command, *server.args])
    if isinstance(server, RemoteServerConfig):
        return server.url
    return "snapshot" if server is not None else "in-process"
