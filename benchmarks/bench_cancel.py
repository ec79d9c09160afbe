"""Cancellation: how soon a cancelled `execute_code` loses its sandbox worker and its downstream call.

The harness is `tests/test_follow.py`'s (also behind its cancellation tests): a real `portal-mcp serve --transport
http` process in front of `tests/servers/slow_server.py` (stdio), and the official MCP client of each protocol
generation. Each round starts a run blocked in a 30 s downstream call, waits until the server logged the call, then
cancels the request (2025-11-25: `notifications/cancelled`; 2026-07-28: the request's stream is closed). Measured
from the cancel: until the run's worker process is gone (polled in /proc every 1 ms), and until the downstream
server logged the call's cancellation (its wall clock). The baseline from the same portal: the round trip of a
trivial run (`print(1 + 1)`), so the cancel figures can be read against what one run costs on this machine.

`python benchmarks/bench_cancel.py` prints the results and writes `results/cancel.json`.
"""

from __future__ import annotations

import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the harness lives in tests/

from common import run_alone  # noqa: E402
from tests.everything import Generation, connect  # noqa: E402
from tests.test_follow import cancel_blocked_run, slow_portal  # noqa: E402

NAME = "cancel"
ROUNDS = 15
TARGET_MS = 100


def _stats(values: list[float]) -> dict[str, float]:
    ms = sorted(value * 1000 for value in values)
    return {
        "median": round(statistics.median(ms), 1),
        "p90": round(ms[int(0.9 * (len(ms) - 1))], 1),
        "max": round(ms[-1], 1),
    }


async def _measure(generation: Generation) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        async with slow_portal(Path(folder)) as (url, log, pid), connect(url, generation) as client:
            trivial = []
            for _ in range(ROUNDS):
                started = time.perf_counter()
                await client.call_tool("execute_code", {"code": "print(1 + 1)"})
                trivial.append(time.perf_counter() - started)
            worker, downstream = [], []
            for round_ in range(ROUNDS):
                gone, seen = await cancel_blocked_run(client, log, pid, f"round{round_}")
                worker.append(gone)
                downstream.append(seen)
            after = await client.call_tool("execute_code", {"code": "print(1 + 1)"})
    return {
        "generation": generation,
        "rounds": ROUNDS,
        "worker_gone_ms": _stats(worker),
        "downstream_cancelled_ms": _stats(downstream),
        "trivial_run_ms": _stats(trivial),
        "next_run_ok": not after.is_error,
    }


def run() -> dict[str, Any]:
    async def both() -> list[dict[str, Any]]:
        return [await _measure("legacy"), await _measure("modern")]

    return {
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "target_ms": TARGET_MS,
        "rows": anyio.run(both),
    }


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "## Cancellation",
        "",
        f"`benchmarks/bench_cancel.py`: a run blocked in a 30 s downstream call, cancelled by its client, "
        f"{results['rows'][0]['rounds']} rounds per protocol generation; ms from the cancel (target: "
        f"{results['target_ms']} ms). Baseline: a trivial run's round trip on the same portal.",
        "",
        "| client | worker gone: median / p90 / max | downstream cancelled: median / p90 / max "
        "| trivial run: median | next run ok |",
        "|---|---|---|---:|---|",
    ]
    for row in results["rows"]:
        worker, down, trivial = row["worker_gone_ms"], row["downstream_cancelled_ms"], row["trivial_run_ms"]
        lines.append(
            f"| {row['generation']} | {worker['median']} / {worker['p90']} / {worker['max']} "
            f"| {down['median']} / {down['p90']} / {down['max']} | {trivial['median']} | {row['next_run_ok']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    run_alone(NAME, run, markdown)
