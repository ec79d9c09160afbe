"""Commands that start the whole portal (downstream servers, the sandbox, the audit store): `check`, `exec`,
`bench`, and `demo`, which starts `portal-mcp serve` itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from portal_mcp.cli.common import CONFIG_OPTION, USER_OPTION, as_user, load, open_portal, out, progress_bar, run
from portal_mcp.control.audit import MemoryAuditSink
from portal_mcp.downstream import probe_exchange


@click.command()
@CONFIG_OPTION
def check(config_path: Path | None) -> None:
    """Validate the config, connect to every server and show a status table (exit 1 if any server failed, or a
    policy pattern, annotation override or search curation names no tool of its server)."""
    config = load(config_path)

    async def checking() -> int:
        async with open_portal(config, table=True) as portal:
            statuses = portal.statuses()
            layers = dict(portal.sandbox.layers)
            unmatched = portal.unmatched()
            exchangers = portal.pool.accounts.exchanges.exchangers
            exchanges = {name: await probe_exchange(exchanger) for name, exchanger in exchangers.items()}
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
            kind = "search" if ".search." in problem else "policy"
            out.print(f"[yellow]{kind}:[/yellow] {problem} (a typo? it has no effect)", highlight=False)
        for name, answer in exchanges.items():
            colour = "green" if answer.startswith("ready") else "red"
            out.print(f"[{colour}]token exchange[/{colour}] {name}: {answer}", highlight=False)
        exchange_failed = any(not answer.startswith("ready") for answer in exchanges.values())
        failed = any(s.state in ("failed", "down") and s.name not in exchanges for s in statuses)
        return 1 if unmatched or failed or exchange_failed else 0

    run(checking)


@click.command(name="exec")
@CONFIG_OPTION
@click.argument("file", type=click.File("r"))
@USER_OPTION
def exec_(config_path: Path | None, file: Any, user: str | None) -> None:
    """Run FILE (agent code; '-' for stdin) through the same sandbox execute_code uses, as USER."""
    config = as_user(load(config_path), user)
    code = file.read()

    async def executing() -> int:
        async with open_portal(config) as portal:
            result = await portal.execute_code(code, portal.local)
        click.echo(result.render())
        return 0 if result.ok else 1

    run(executing)


@click.command()
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

    config = load(config_path)

    async def measuring() -> None:
        # Its made-up searches are no one's: they stay out of the configured audit store.
        async with open_portal(config, audit=MemoryAuditSink()) as portal:
            catalog = portal.catalog
            with progress_bar() as progress:
                searching = progress.add_task("search_api replies", total=len(TYPICAL_QUERIES))
                replies = []
                for query in TYPICAL_QUERIES:
                    progress.update(searching, description=f"search_api({query!r})")
                    replies.append(portal.search_api(query, portal.local))
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

    run(measuring)


@click.command()
def demo() -> None:
    """A scripted session: start `portal-mcp serve` on the bundled catalog, drive it with a real MCP client."""
    from portal_mcp.cli.demo import run_demo

    run(lambda: run_demo(out))
