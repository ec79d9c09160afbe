"""Helpers shared by the bench modules: the bundled catalog as snapshots, and a real Portal over it.

The bundled catalog (`src/portal_mcp/default.yaml`) serves `time` and `memory` live and everything else from
`schemas/`. Benchmarks use the snapshots of all of them instead (same tools, same descriptions), so they run
without starting any server.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import yaml
from mcp_types import Tool

from portal_mcp.catalog.snapshot import dump_snapshot, load_snapshot
from portal_mcp.config import PortalConfig, bundled_schemas_dir, parse_config
from portal_mcp.portal import Portal

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SCHEMAS = bundled_schemas_dir()
DEFAULT_YAML = Path(__file__).resolve().parents[1] / "src" / "portal_mcp" / "default.yaml"


def bundled_listings() -> dict[str, list[Tool]]:
    """Every snapshot in schemas/, keyed by server name, in name order."""
    return {path.stem: load_snapshot(path) for path in sorted(SCHEMAS.glob("*.json"))}


def descriptions() -> dict[str, str]:
    """Server descriptions from the bundled default.yaml (what the search overview shows)."""
    data = yaml.safe_load(DEFAULT_YAML.read_text(encoding="utf-8"))
    return {name: str(server.get("description", "")) for name, server in data["servers"].items()}


def snapshot_config(paths: Mapping[str, Path], about: Mapping[str, str] | None = None) -> PortalConfig:
    """A portal config serving each snapshot file under its server name."""
    about = about or {}
    servers: dict[str, Any] = {}
    for name, path in paths.items():
        servers[name] = {"snapshot": str(path)}
        if about.get(name):
            servers[name]["description"] = about[name]
    text = yaml.safe_dump({"servers": servers}, sort_keys=False)
    return parse_config(text, source="<benchmark>", base_dir=SCHEMAS, environ={})


def bundled_config(exclude: Sequence[str] = ()) -> PortalConfig:
    """The bundled catalog served entirely from snapshots (optionally without some servers)."""
    paths = {path.stem: path for path in sorted(SCHEMAS.glob("*.json")) if path.stem not in exclude}
    return snapshot_config(paths, descriptions())


def write_snapshots(listings: Mapping[str, Sequence[Tool]], folder: Path) -> dict[str, Path]:
    """Write one snapshot file per server (for a portal over a grown catalog)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, tools in listings.items():
        path = folder / f"{name}.json"
        path.write_text(dump_snapshot(name, "benchmark replica", tools), encoding="utf-8")
        paths[name] = path
    return paths


@asynccontextmanager
async def open_portal(config: PortalConfig, local: Mapping[str, Any] | None = None) -> AsyncIterator[Portal]:
    async with Portal.open(config.model_copy(update={"user": "benchmark"}), local=local) as portal:
        yield portal


def fmt(n: float) -> str:
    return f"{n:,.0f}"


def pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def run_alone(name: str, run: Callable[[], dict[str, Any]], markdown: Callable[[dict[str, Any]], str]) -> None:
    """A bench module started by itself: measure, record `results/NAME.json` (as `run.py` would), print its section."""
    outcome = run()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(outcome, indent=2) + "\n", encoding="utf-8")
    print(markdown(outcome))
