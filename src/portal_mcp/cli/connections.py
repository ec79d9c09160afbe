"""`portal-mcp login SERVER` and `portal-mcp connections`: users' own accounts at `oauth:` servers.

`login` connects one user's account with a loopback redirect (it prints the URL to open and waits for the browser
to come back); `connections` lists the stored connections and, with `--revoke SERVER`, revokes one at the server's
authorization server (RFC 7009) and forgets it. Both work on the state database the portal uses (the audit store's
database, else `connections.sqlite`), so a connection made here is seen by every running replica at its next call.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

import anyio
import click
from rich.table import Table

from portal_mcp.cli.common import CONFIG_OPTION, err, load, out, run
from portal_mcp.config import PortalConfig, RemoteServerConfig
from portal_mcp.control.audit_store.connections import ConnectionStore, connections_beside
from portal_mcp.control.audit_store.opening import open_audit_sink
from portal_mcp.control.principal import local_user
from portal_mcp.downstream import disconnect, login
from portal_mcp.errors import ConfigError

USER = click.option("--user", default=None, help="whose account (default: the config's `user:`, else the OS user)")


@asynccontextmanager
async def opened(config: PortalConfig) -> AsyncIterator[ConnectionStore]:
    async with open_audit_sink(config, None) as sink:
        store = await anyio.to_thread.run_sync(connections_beside, sink, config, os.environ)
        if store is None:
            raise ConfigError("no server has `oauth:`, so there are no accounts to connect", source=config.source)
        try:
            yield store
        finally:
            await anyio.to_thread.run_sync(store.close)


def oauth_server(config: PortalConfig, name: str) -> RemoteServerConfig:
    server = config.servers.get(name)
    if not isinstance(server, RemoteServerConfig) or server.oauth is None or server.disabled:
        known = ", ".join(sorted(config.oauth_servers())) or "none"
        raise ConfigError(f"server {name!r} is not an enabled server with `oauth:` (those are: {known})")
    if server.oauth.token_exchange is not None:
        raise ConfigError(
            f"server {name!r} uses `oauth.token_exchange`: users reach it with their portal sign-in (exchanged for a "
            "token of the server), so there is no account to connect or revoke"
        )
    return server


@click.command(name="login")
@click.argument("server")
@CONFIG_OPTION
@USER
def login_(server: str, config_path: Path | None, user: str | None) -> None:
    """Connect your account at SERVER (an `oauth:` server): open the printed URL, sign in, and come back."""
    config = load(config_path)
    who = user or local_user(config)

    async def main() -> int:
        remote = oauth_server(config, server)
        async with opened(config) as store:
            await login(store, server, remote, who, lambda url: err.print(f"Open this URL to connect {who!r}'s "
                        f"account to {server!r}:\n{url}", highlight=False, soft_wrap=True),
                        wait=config.connections.connect_wait)  # fmt: skip
        out.print(f"Connected {who!r} to {server!r}.", highlight=False)
        return 0

    run(main)


@click.command()
@CONFIG_OPTION
@USER
@click.option("--revoke", "revoke", default=None, metavar="SERVER", help="revoke and forget the connection to SERVER")
@click.option("--new-key", is_flag=True, help="print a new random `connections.key` for the secrets file")
def connections(config_path: Path | None, user: str | None, revoke: str | None, new_key: bool) -> None:
    """List the connected accounts (each user's, or --user's), or revoke one with --revoke SERVER."""
    if new_key:
        out.print(secrets.token_urlsafe(48), highlight=False)
        return
    config = load(config_path)

    async def main() -> int:
        async with opened(config) as store:
            if revoke is not None:
                who = user or local_user(config)
                found = await disconnect(store, oauth_server(config, revoke), who, revoke)
                out.print(f"{'Revoked' if found else 'No connection of'} {who!r} to {revoke!r}.", highlight=False)
                return 0 if found else 1
            rows = await anyio.to_thread.run_sync(store.listing, user)
        table = Table("user", "server", "connected or refreshed")
        for who, server, at in rows:
            table.add_row(who, server, datetime.fromtimestamp(at).isoformat(timespec="seconds"))
        out.print(table if rows else "No connected accounts.")
        return 0

    run(main)
