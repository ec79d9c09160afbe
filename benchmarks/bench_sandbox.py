"""Sandbox speed, measured end to end: what `execute_code` and a tool call from inside it cost.

Everything is measured in one run on this machine, and every figure is set next to its baseline from the same
run:

- `execute_code` of a trivial snippet (`1`) through a real MCP stdio client (`python -m portal_mcp serve`,
  `Client(StdioServerParameters(...), mode="legacy")`), interleaved sample by sample with a bare
  `python -I -S -c pass` process start (posix_spawn + waitpid, the tightest way to start one). The ratio is
  taken against the faster of two baselines: those interleaved starts, and a block of starts while the portal
  is idle (so the sandbox preparing its next worker in the background cannot slow the baseline down). Both
  backends: `fork` (the default: a warm fork server with confined spare workers) and `spawn` (an interpreter
  per run). The MCP floor is `execute_code` refused before any sandbox work (`code` not a string), interleaved
  the same way: what the round trip costs without running anything;
- a tool call made from inside the sandbox (timed by the agent code itself over 50 sequential
  `await demo.echo(...)`) against a direct MCP client calling the same stdio server (50 sequential calls,
  timed by the client), in 30 alternating rounds. The ratio is the median of the per-round ratios (each
  round's two halves ran back to back, so a drift in the machine's load cancels out); the ratio of the two
  medians is reported next to it;
- fan-out: `asyncio.gather` of 100 calls to a tool that sleeps 50 ms, timed inside the code and as the whole
  `execute_code` seen by the client.

Targets (issue 5): execute_code p50 <= 0.6x the bare start; in-sandbox call <= 1.5x direct; fan-out well
under 1 s. `python benchmarks/bench_sandbox.py` prints the table and writes `results/sandbox.json`.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from common import run_alone
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters

from portal_mcp.config import SandboxConfig
from portal_mcp.sandbox.host import SandboxHost

NAME = "sandbox"
ROOT = Path(__file__).resolve().parents[1]
DEMO_SERVER = ROOT / "tests" / "servers" / "demo_server.py"

WARM_UP = 15
START_ROUNDS = 80  # execute_code / bare start pairs, fork backend
SPAWN_ROUNDS = 20
CALL_ROUNDS = 30
CALLS_PER_ROUND = 50
FANOUT_CALLS = 100
FANOUT_WAIT = 0.05
FANOUT_ROUNDS = 5

TARGET_START_RATIO = 0.6
TARGET_CALL_RATIO = 1.5
TARGET_FANOUT_S = 1.0

_IN_SANDBOX_CALLS = f"""
import time
started = time.perf_counter()
for i in range({CALLS_PER_ROUND}):
    await demo.echo(text='x')
print((time.perf_counter() - started) / {CALLS_PER_ROUND})
"""
_FANOUT = f"""
import asyncio, time
started = time.perf_counter()
await asyncio.gather(*[demo.slow(seconds={FANOUT_WAIT}) for i in range({FANOUT_CALLS})])
print(time.perf_counter() - started)
"""


def _bare_start() -> float:
    """Seconds to start and reap `python -I -S -c pass`."""
    started = time.perf_counter()
    pid = os.posix_spawn(sys.executable, [sys.executable, "-I", "-S", "-c", "pass"], {})
    os.waitpid(pid, 0)
    return time.perf_counter() - started


def _portal(folder: Path, backend: str) -> StdioServerParameters:
    config = folder / f"portal-{backend}.yaml"
    config.write_text(
        "servers:\n"
        f"  demo:\n    command: {json.dumps(sys.executable)}\n    args: [{json.dumps(str(DEMO_SERVER))}]\n"
        f"sandbox:\n  backend: {backend}\n",
        encoding="utf-8",
    )
    return StdioServerParameters(
        command=sys.executable, args=["-m", "portal_mcp", "serve", "--config", str(config)], cwd=str(ROOT)
    )


def _text(result: Any) -> str:
    text = "\n".join(block.text for block in result.content)
    if result.is_error:
        raise RuntimeError(f"execute_code failed in the benchmark: {text}")
    return text


async def _execute(client: Client, code: str) -> tuple[float, str]:
    started = time.perf_counter()
    result = await client.call_tool("execute_code", {"code": code})
    return time.perf_counter() - started, _text(result)


async def _startup_pairs(client: Client, rounds: int) -> tuple[list[float], list[float]]:
    for _ in range(WARM_UP):
        await _execute(client, "1")
        _bare_start()
    executes, bares = [], []
    for _ in range(rounds):
        executes.append((await _execute(client, "1"))[0])
        bares.append(_bare_start())
    return executes, bares


async def _quiet_starts(rounds: int) -> list[float]:
    """Bare starts in a block, once the portal has had time to finish any background work."""
    await anyio.sleep(0.5)
    return [_bare_start() for _ in range(rounds)]


async def _floor(client: Client, rounds: int) -> list[float]:
    """The MCP round trip of an execute_code the portal refuses before the sandbox (`code` is not a string)."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        result = await client.call_tool("execute_code", {"code": 1})
        times.append(time.perf_counter() - started)
        assert result.is_error
        _bare_start()
    return times


async def _calls(portal: Client, direct: Client) -> tuple[list[float], list[float]]:
    for _ in range(WARM_UP):
        await direct.call_tool("echo", {"text": "x"})
    await _execute(portal, _IN_SANDBOX_CALLS)
    direct_calls, sandbox_calls = [], []
    for _ in range(CALL_ROUNDS):
        started = time.perf_counter()
        for _ in range(CALLS_PER_ROUND):
            await direct.call_tool("echo", {"text": "x"})
        direct_calls.append((time.perf_counter() - started) / CALLS_PER_ROUND)
        sandbox_calls.append(float((await _execute(portal, _IN_SANDBOX_CALLS))[1].splitlines()[0]))
    return direct_calls, sandbox_calls


async def _fanout(portal: Client) -> tuple[list[float], list[float]]:
    inside, total = [], []
    for _ in range(FANOUT_ROUNDS):
        elapsed, text = await _execute(portal, _FANOUT)
        inside.append(float(text.splitlines()[0]))
        total.append(elapsed)
    return inside, total


async def _layers() -> dict[str, list[str]]:
    async with SandboxHost(SandboxConfig()) as host:
        return {layer: list(mechanisms) for layer, mechanisms in host.layers.items()}


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered) * 1000, 3),
        "p90": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 3),
        "n": len(ordered),
    }


async def _run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        direct_params = StdioServerParameters(command=sys.executable, args=[str(DEMO_SERVER)])
        async with (
            Client(_portal(Path(folder), "fork"), mode="legacy") as portal,
            Client(direct_params, mode="legacy") as direct,
        ):
            fork_runs, bare_runs = await _startup_pairs(portal, START_ROUNDS)
            quiet_runs = await _quiet_starts(START_ROUNDS // 2)
            floor_runs = await _floor(portal, START_ROUNDS // 2)
            direct_calls, sandbox_calls = await _calls(portal, direct)
            fanout_inside, fanout_total = await _fanout(portal)
        async with Client(_portal(Path(folder), "spawn"), mode="legacy") as portal:
            spawn_runs, spawn_bare_runs = await _startup_pairs(portal, SPAWN_ROUNDS)
    interleaved, quiet = _ms(bare_runs), _ms(quiet_runs)
    bare = min(interleaved, quiet, key=lambda figures: figures["p50"])
    fork = _ms(fork_runs)
    spawn = _ms(spawn_runs)
    direct = _ms(direct_calls)
    in_sandbox = _ms(sandbox_calls)
    start_ratio = round(fork["p50"] / bare["p50"], 3)
    call_ratio = round(statistics.median(s / d for s, d in zip(sandbox_calls, direct_calls, strict=True)), 3)
    fanout = {
        "calls": FANOUT_CALLS,
        "tool_wait_ms": FANOUT_WAIT * 1000,
        "inside_ms": _ms(fanout_inside),
        "execute_code_ms": _ms(fanout_total),
    }
    return {
        "machine": {
            "kernel": platform.release(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "root": os.geteuid() == 0,
        },
        "bare_python_start_ms": bare,
        "bare_python_start_interleaved_ms": interleaved,
        "bare_python_start_quiet_ms": quiet,
        "execute_code_ms": {"fork": fork, "spawn": spawn, "spawn_round_bare_start": _ms(spawn_bare_runs)},
        "mcp_floor_ms": _ms(floor_runs),
        "execute_code_vs_bare_start": {"fork": start_ratio, "spawn": round(spawn["p50"] / bare["p50"], 3)},
        "direct_call_ms": direct,
        "in_sandbox_call_ms": in_sandbox,
        "in_sandbox_vs_direct_call": call_ratio,
        "in_sandbox_vs_direct_call_of_medians": round(in_sandbox["p50"] / direct["p50"], 3),
        "fanout": fanout,
        "layers": await _layers(),
        "targets": {
            "execute_code_vs_bare_start": TARGET_START_RATIO,
            "in_sandbox_vs_direct_call": TARGET_CALL_RATIO,
            "fanout_s": TARGET_FANOUT_S,
        },
        "met": {
            "execute_code_vs_bare_start": start_ratio <= TARGET_START_RATIO,
            "in_sandbox_vs_direct_call": call_ratio <= TARGET_CALL_RATIO,
            "fanout": fanout["execute_code_ms"]["p50"] < TARGET_FANOUT_S * 1000,
        },
    }


def run() -> dict[str, Any]:
    """Measure everything in one run; JSON-able medians, p90s and ratios."""
    return anyio.run(_run)


def markdown(results: dict[str, Any]) -> str:
    """The section of RESULTS.md: one table of medians with their baselines and ratios, then the layers."""
    machine = results["machine"]
    bare = results["bare_python_start_ms"]
    runs = results["execute_code_ms"]
    ratios = results["execute_code_vs_bare_start"]
    direct, inside = results["direct_call_ms"], results["in_sandbox_call_ms"]
    fanout = results["fanout"]
    floor = results["mcp_floor_ms"]
    targets, met = results["targets"], results["met"]

    def mark(ok: bool) -> str:
        return "yes" if ok else "**no**"

    lines = [
        "## Sandbox: execute_code and tool-call cost",
        "",
        f"Linux {machine['kernel']}, Python {machine['python']}, {machine['cpus']} CPUs, "
        f"{'root' if machine['root'] else 'not root'}. Medians (p90) in ms, measured in one run through a real MCP "
        "stdio client; every figure next to its baseline from the same run.",
        "",
        "| measure | value | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|",
        f"| execute_code `1`, fork backend | {runs['fork']['p50']} ({runs['fork']['p90']}) | bare `python -I -S -c pass` "
        f"{bare['p50']} ({bare['p90']}; interleaved {results['bare_python_start_interleaved_ms']['p50']}, quiet "
        f"{results['bare_python_start_quiet_ms']['p50']}) | {ratios['fork']}x | "
        f"<= {targets['execute_code_vs_bare_start']}x | {mark(met['execute_code_vs_bare_start'])} |",
        f"| execute_code `1`, spawn backend | {runs['spawn']['p50']} ({runs['spawn']['p90']}) | same | "
        f"{ratios['spawn']}x | (for comparison) | |",
        f"| MCP floor: execute_code refused before the sandbox | {floor['p50']} ({floor['p90']}) | | | | |",
        f"| tool call from inside the sandbox | {inside['p50']} ({inside['p90']}) | direct MCP client call "
        f"{direct['p50']} ({direct['p90']}) | {results['in_sandbox_vs_direct_call']}x (of medians "
        f"{results['in_sandbox_vs_direct_call_of_medians']}x) | "
        f"<= {targets['in_sandbox_vs_direct_call']}x | {mark(met['in_sandbox_vs_direct_call'])} |",
        f"| `asyncio.gather` of {fanout['calls']} calls waiting {fanout['tool_wait_ms']:g} ms | "
        f"{fanout['execute_code_ms']['p50']} whole execute_code ({fanout['inside_ms']['p50']} inside) | "
        f"{fanout['tool_wait_ms']:g} (one call's wait) | | < {targets['fanout_s'] * 1000:g} | {mark(met['fanout'])} |",
        "",
        "Layers in force in each worker here (mechanisms per layer; empty = not enforced on this kernel):",
        "",
        "| layer | mechanisms |",
        "|---|---|",
    ]
    lines += [f"| {layer} | {', '.join(mechanisms) or '(none)'} |" for layer, mechanisms in results["layers"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    run_alone(NAME, run, markdown)
