"""`portal-mcp`: serve | check | search | exec | stubs | snapshot | import | install | bench | agents-md | audit |
login | connections | demo.

One module per concern: common.py (options, config loading, exits, opening the portal), serve.py, catalog.py (the
commands that only read the catalog: no sandbox, no audit store), live.py (the commands that start the whole
portal), audit.py (querying the audit store), install.py (adding the portal to other clients), connections.py (`login`, `connections`: users' OAuth accounts); agents_md.py and demo.py hold what two commands print.
Every command that takes `--config` falls back to the bundled default catalog.
"""

from __future__ import annotations

import click

from portal_mcp.cli.audit import audit
from portal_mcp.cli.catalog import agents_md, import_, search, snapshot, stubs
from portal_mcp.cli.connections import connections, login_
from portal_mcp.cli.install import install
from portal_mcp.cli.live import bench, check, demo, exec_
from portal_mcp.cli.serve import serve

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="portal-mcp")
def main() -> None:
    """One MCP server in front of many: search_api + execute_code over a namespaced catalog."""


for command in (
    serve,
    check,
    search,
    exec_,
    import_,
    install,
    snapshot,
    stubs,
    bench,
    agents_md,
    audit,
    login_,
    connections,
    demo,
):
    main.add_command(command)
