"""`portal-mcp install CLIENT`: add the portal to another client's MCP servers (config/install.py does the work)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import click

from portal_mcp.cli.common import config_failed, err
from portal_mcp.errors import ConfigError
from portal_mcp.naming import plural


@click.command()
@click.argument("client")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), help="portal.yaml to serve")
@click.option("--name", default="portal", show_default=True, help="the portal's entry name in the client's file")
@click.option("--force", is_flag=True, help="replace an entry (or portal.yaml servers) of the same name")
@click.option("--import", "move", is_flag=True, help="move the client's other servers into --config (portal.yaml)")
@click.option("--print", "print_only", is_flag=True, help="only print the entry to paste (any other client)")
@click.option("--file", type=click.Path(dir_okay=False, path_type=Path), help="the client's file, if not the usual one")
def install(
    client: str, config_path: Path | None, name: str, force: bool, move: bool, print_only: bool, file: Path | None
) -> None:
    """Add the portal to CLIENT's MCP servers: claude-desktop, claude-code, cursor or vscode (any other: --print)."""
    from portal_mcp.config.install import CLIENTS, entry_json
    from portal_mcp.config.install import install as install_into

    beside = Path(sys.executable).parent / "portal-mcp"  # the portal installed with the Python running this
    command = str(beside) if beside.is_file() else shutil.which("portal-mcp") or str(Path(sys.argv[0]).resolve())
    config = config_path.resolve() if config_path is not None else None
    if print_only or client not in CLIENTS:
        if not print_only:
            raise click.UsageError(f"unknown client {client!r}: use one of {', '.join(CLIENTS)}, or --print")
        click.echo(entry_json(name, command, config))
        return
    try:
        done = install_into(
            client,
            home=Path.home(),
            command=command,
            config=config,
            name=name,
            force=force,
            move_servers=move,
            file=file,
        )
    except ConfigError as exc:
        config_failed(exc)
    if done.imported:
        err.print(f"moved {plural(len(done.imported), 'server')} into {done.portal_yaml}: {', '.join(done.imported)}")
    if done.changed:
        backup = f" (backup: {done.backup})" if done.backup else ""
        err.print(f"added {name!r} to {done.file}{backup}; restart {client} to use it", highlight=False)
    else:
        err.print(f"{done.file} already has {name!r} as this portal; nothing changed", highlight=False)
