"""`portal-mcp agents-md`: a section for a repository's AGENTS.md telling coding agents how to use the portal."""

from __future__ import annotations

from portal_mcp.catalog.model import Catalog
from portal_mcp.naming import plural
from portal_mcp.portal import Portal


def render_agents_md(portal: Portal, catalog: Catalog | None = None) -> str:
    """Markdown: the two-tool workflow, then the catalog (server, tools, owner, what it is), from the live config;
    `catalog` narrows it (one user's view)."""
    catalog = portal.catalog if catalog is None else catalog
    lines = [
        "## Tools through portal-mcp",
        "",
        f"This project's MCP tools ({plural(len(catalog), 'tool')} on {plural(len(catalog.servers()), 'server')}) are behind one MCP "
        "server, portal-mcp, which shows two tools:",
        "",
        "1. `search_api(query=...)`: describe what you need in words (narrow with `server:NAME`, `owner:NAME`, "
        "`tag:NAME`); it returns typed Python stubs named `server.tool`.",
        "2. `execute_code(code=...)`: Python that calls them with keyword arguments and `await`, e.g. "
        "`r = await server.tool(arg=1)`; use `asyncio.gather` for many calls, filter in code and print only what "
        'you need. A failed tool raises `ToolError`. Code can search too: `await portal.search("query")` lists '
        "`{name, signature, description}` of the tools that fit, `portal.tool(name)` is one of them.",
        "",
        "| server | tools | owner | about |",
        "|---|---|---|---|",
    ]
    for name in catalog.servers():
        config = portal.config.servers.get(name)
        owner = config.owner if config is not None and config.owner else ""
        about = config.description if config is not None and config.description else ""
        if config is not None and config.docs:
            about = f"{about} ([docs]({config.docs}))".strip()
        lines.append(f"| `{name}` | {len(catalog.by_server(name))} | {owner} | {about} |")
    lines += ["", "Regenerate this section with `portal-mcp agents-md --config <portal.yaml>`.", ""]
    return "\n".join(lines)
