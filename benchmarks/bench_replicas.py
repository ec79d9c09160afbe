"""Replicas: two `portal-mcp serve --transport http --stateless` processes behind a per-request round robin.

The harness is `tests/replicas.py` (also behind `tests/test_replicas.py`, at a smaller size): real portal
processes on one config (the demo server over stdio, one bearer token per client, one shared audit store), the
round-robin proxy as its own process, and the official MCP client over streamable HTTP. Measured:

- the load: 20 concurrent clients x 50 `execute_code` runs, each run one `demo.echo` call; half the clients speak
  2025-11-25 (initialize, then no session), half 2026-07-28 (every request stands alone). Throughput, latency per
  run as the client sees it (through the proxy), the split of tool calls between the replicas, and the audit store
  matched record by record against what was sent (runs and calls: none lost, none duplicated);
- the same load on one replica behind the same proxy (what the second replica adds on this machine);
- per-run latency without load (1 client, 2025 protocol, no proxy) on one replica, stateful vs stateless.

`python benchmarks/bench_replicas.py` prints the results and writes `results/replicas.json`.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the harness lives in tests/

from common import run_alone  # noqa: E402
from tests.pg import start_server  # noqa: E402
from tests.replicas import (  # noqa: E402
    AuditStore,
    ClientMode,
    check_audit,
    drive_load,
    make_users,
    percentile,
    plan,
    postgres_store,
    proxy_stats,
    replica_config,
    running_proxy,
    running_replicas,
    sqlite_store,
)

NAME = "replicas"
CLIENTS = 20
RUNS = 50
LATENCY_RUNS = 100


@contextlib.contextmanager
def audit_stores() -> Iterator[Callable[[Path], AuditStore]]:
    """Makes the store each load shares: a fresh database on a throwaway PostgreSQL server (tests/pg.py), or,
    where no PostgreSQL server can be started, one SQLite file (the report names the store used)."""
    try:
        server = start_server()
    except (RuntimeError, OSError) as exc:
        print(f"no PostgreSQL server ({exc}); the replicas share a SQLite file instead", file=sys.stderr)
        yield lambda folder: sqlite_store(folder / "audit.sqlite")
        return
    try:
        yield lambda folder: postgres_store(server.create_database("bench_" + folder.name))
    finally:
        server.stop("immediate")
        shutil.rmtree(server.root, ignore_errors=True)


def _ms(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(values, 50) * 1000, 1),
        "p95": round(percentile(values, 95) * 1000, 1),
        "max": round(max(values) * 1000, 1),
        "mean": round(statistics.fmean(values) * 1000, 1),
    }


async def _load(folder: Path, replicas: int, store: AuditStore) -> dict[str, Any]:
    await anyio.Path(folder).mkdir()
    users = make_users(CLIENTS)
    runs = plan(list(users), RUNS)
    config = replica_config(folder, store, users)
    async with (
        running_replicas(config, replicas) as backends,
        running_proxy(backends, folder / "proxy.log") as proxy,
    ):
        with anyio.fail_after(600):
            load = await drive_load(proxy + "/mcp", users, runs)
        served = await proxy_stats(proxy)
    audit = check_audit(store.events(), runs)
    names = {backend: f"replica {index + 1}" for index, backend in enumerate(served)}
    return {
        "replicas": replicas,
        "clients": CLIENTS,
        "runs_per_client": RUNS,
        "audit_store": store.name,
        "runs_done": load.done,
        "wrong_answers": len(load.wrong),
        "wrong_examples": load.wrong[:5],
        "seconds": round(load.seconds, 2),
        "runs_per_second": round(load.done / load.seconds, 1),
        "latency_ms": _ms(load.latencies),
        "per_replica": {
            names[backend]: {"tool_calls": counts.get("tool_calls", 0), "http_requests": counts.get("requests", 0)}
            for backend, counts in served.items()
        },
        "audit": {
            "run_records": audit.runs,
            "call_records": audit.calls,
            "other_records": audit.other,
            "lost": len(audit.lost),
            "duplicated": len(audit.duplicated),
            "unexpected": len(audit.unexpected),
            "not_ok": len(audit.not_ok),
            "exact": audit.exact,
        },
    }


async def _latency(folder: Path, stateless: bool, mode: ClientMode) -> dict[str, Any]:
    await anyio.Path(folder).mkdir()
    store = sqlite_store(folder / "audit.sqlite")
    users = make_users(1)
    runs = plan(list(users), LATENCY_RUNS)
    config = replica_config(folder, store, users)
    async with running_replicas(config, 1, stateless=stateless) as [backend]:
        with anyio.fail_after(300):
            load = await drive_load(backend + "/mcp", users, runs, modes=(mode,))
    return {
        "stateless": stateless,
        "protocol": "2025-11-25" if mode == "legacy" else "2026-07-28",
        "runs": load.done,
        "wrong_answers": len(load.wrong),
        "latency_ms": _ms(load.latencies[5:]),  # the first runs warm the fork server up
    }


async def measure() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, audit_stores() as store:
        folder = Path(tmp)
        two = await _load(folder / "two", 2, store(folder / "two"))
        one = await _load(folder / "one", 1, store(folder / "one"))
        latency = [
            await _latency(folder / "stateful", stateless=False, mode="legacy"),
            await _latency(folder / "stateless", stateless=True, mode="legacy"),
            await _latency(folder / "modern", stateless=True, mode="auto"),
        ]
    return {
        "machine": {
            "kernel": platform.release(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "two_replicas": two,
        "one_replica": one,
        "latency_one_client": latency,
    }


def run() -> dict[str, Any]:
    return anyio.run(measure)


def markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    two, one = results["two_replicas"], results["one_replica"]

    def split(load: dict[str, Any]) -> str:
        return " / ".join(str(counts["tool_calls"]) for counts in load["per_replica"].values())

    def row(label: str, load: dict[str, Any]) -> str:
        audit, latency = load["audit"], load["latency_ms"]
        right = load["runs_done"] - load["wrong_answers"]
        return (
            f"| {label} | {load['runs_done']:,} | {right:,} | {load['runs_per_second']} | {latency['p50']} | "
            f"{latency['p95']} | {latency['max']} | {split(load)} | {audit['run_records']:,} / {audit['call_records']:,} "
            f"| {audit['lost']} / {audit['duplicated']} | {'yes' if audit['exact'] else '**no**'} |"
        )

    lines = [
        "## Replicas: stateless portals behind a round robin",
        "",
        f"Linux {machine['kernel']}, Python {machine['python']}, {machine['cpus']} CPUs (shared by the replicas, "
        f"their demo servers and sandboxes, the proxy and the clients). {two['clients']} concurrent MCP clients x "
        f"{two['runs_per_client']} `execute_code` runs, each run one downstream call, through a per-request "
        "round-robin proxy (`tests/replicas.py`) to `portal-mcp serve --transport http --stateless` processes that "
        f"share one {two['audit_store']} audit store; half the clients speak 2025-11-25 (no session after initialize), "
        "half 2026-07-28. Latency per run as the client sees it, in ms. The audit is matched record by record "
        "against the runs sent.",
        "",
        "| setup | runs | right answers | runs/s | p50 | p95 | max | tool calls per replica | run / call records "
        "| lost / duplicated | exact |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|---|---|",
        row("2 replicas", two),
        row("1 replica (same proxy)", one),
        "",
        "Per-run latency without load (1 client, 100 runs, no proxy, one replica), ms:",
        "",
        "| mode | protocol | p50 | p95 | mean |",
        "|---|---|---:|---:|---:|",
    ]
    for entry in results["latency_one_client"]:
        latency = entry["latency_ms"]
        mode = "stateless" if entry["stateless"] else "stateful"
        lines.append(f"| {mode} | {entry['protocol']} | {latency['p50']} | {latency['p95']} | {latency['mean']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    run_alone(NAME, run, markdown)
