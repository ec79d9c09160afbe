"""`KnownTools`: each server's last `tools/list`, kept on disk so search and stubs work while it is down or starting.

One snapshot file per server in `<state folder>/catalog/`, named after the server and a digest of what starts it
(command, args and cwd, or url), so an edited config never serves another server's tools. Written after every
successful listing that differs from the saved one (atomically: a temporary file, then a rename); read once, when
the pool opens. A file that cannot be read or parsed is ignored (and logged): it is a cache, not configuration.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from mcp_types import Tool

from portal_mcp.catalog.snapshot import dump_snapshot, load_snapshot
from portal_mcp.config import RemoteServerConfig, ServerConfig, StdioServerConfig
from portal_mcp.errors import ConfigError

logger = logging.getLogger("portal_mcp.downstream")


class KnownTools:
    """The last known tool list of every live (stdio or remote) server of one pool; `folder=None` keeps none."""

    def __init__(self, folder: Path | None, servers: Mapping[str, ServerConfig]) -> None:
        self._files: dict[str, Path] = {}
        self._tools: dict[str, list[Tool]] = {}
        if folder is None:
            return
        for name, server in servers.items():
            if isinstance(server, StdioServerConfig | RemoteServerConfig) and not server.disabled:
                source = _source(server)
                digest = hashlib.sha256(source.encode()).hexdigest()[:12]
                self._files[name] = folder / "catalog" / f"{name}-{digest}.json"
        for name, path in self._files.items():
            seed = getattr(servers[name], "known_tools", None)
            for candidate in (path, seed):  # the last list seen, else the config's `known_tools:` snapshot
                if candidate is not None and Path(candidate).is_file():
                    try:
                        self._tools[name] = load_snapshot(candidate)
                        break
                    except ConfigError as exc:
                        logger.warning("ignoring the known tools of %r: %s", name, exc, extra={"server": name})

    def get(self, server: str) -> list[Tool] | None:
        """The last tools `server` listed (in this run or an earlier one), or None if it never listed any."""
        tools = self._tools.get(server)
        return list(tools) if tools is not None else None

    def save(self, server: str, tools: list[Tool]) -> None:
        """Remember `tools` as `server`'s list, on disk when it differs from the saved one. Never raises."""
        path = self._files.get(server)
        previous = self._tools.get(server) if path is not None and path.is_file() else None
        self._tools[server] = list(tools)
        if path is None or (previous is not None and _same(previous, tools)):
            return
        text = dump_snapshot(server, f"the last tools/list of {server!r}, kept by portal-mcp", tools)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, delete=False) as handle:
                handle.write(text)
            os.replace(handle.name, path)
        except OSError as exc:
            logger.warning(
                "cannot keep the last known tools of %r in %s: %s", server, path, exc, extra={"server": server}
            )


def _source(server: StdioServerConfig | RemoteServerConfig) -> str:
    """What starts or reaches the server (only its digest is written: args and urls can hold secrets)."""
    if isinstance(server, StdioServerConfig):
        return json.dumps([server.command, *server.args, str(server.cwd or "")])
    return server.url


def _same(a: list[Tool], b: list[Tool]) -> bool:
    return [t.model_dump(mode="json", exclude_none=True) for t in a] == [
        t.model_dump(mode="json", exclude_none=True) for t in b
    ]
