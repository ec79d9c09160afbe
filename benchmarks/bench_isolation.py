"""Isolation under load and faults: 20 users on one real `portal-mcp serve --transport http`, some of them hostile.

Loopback only, bounded in count and time. The portal serves three stdio demo servers: `demo` (shared by everyone),
`fragile` (a hostile user crashes it over and over) and `sluggish` (a hostile user keeps it busy with slow calls).
Fourteen well-behaved users each search and run trivial code about once a second; six hostile users each run one of
the attacks of issue 13:

- `big_args`: calls with ~1-2 MB arguments (over `limits.max_argument_bytes`) and `**kw` padding, gathered;
- `big_code`: code with a ~980 kB literal (over `limits.max_code_bytes`), and code just under the cap that is
  costliest to parse (a literal of 4,900 dicts, under `limits.max_code_items`), as fast as the portal answers;
- `big_query`: 3.9 MB search queries, then a search flood (`limits.searches_per_minute`);
- `flood_calls`: 200 gathered slow calls with `[{}] * 30_000` of padding each (90 kB of JSON, ~2 MB decoded;
  `limits.*_bytes_in_flight`);
- `crasher`: crashes `fragile` and calls `sluggish` for seconds at a time (downstream crashes, slow servers);
- `loris`: 200 connections from 127.0.0.2 that never finish their headers, reopened as they are cut.

Phases: the good users alone (baseline), each attack alone, then every attack at once. Per phase: the good users'
search and run latency (p50/p95/max) and errors; the effect of each attack is its phase's p95 minus the baseline's.
Throughout: the portal's peak resident memory (VmHWM), whether it stayed up, and audit records lost (every search
and run answered to any user must be in the audit store, and every tool call a good run made).

`PORTAL_BENCH_SECONDS` sets a phase's length (default 6; e.g. 60 for a long run: the whole suite takes about
9 x that plus start-up). `python benchmarks/run.py isolation`.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import socket
import sqlite3
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the harness lives in tests/

from tests.portals import STARTUP_TIMEOUT, authorised_client, portal_command, started, wait_until_listening  # noqa: E402
from tests.replicas import percentile  # noqa: E402
from tests.servers import DEMO_SERVER, free_port  # noqa: E402

NAME = "isolation"
GOOD_USERS = 14
ATTACKS = ("big_args", "big_code", "big_query", "flood_calls", "crasher", "loris")
PHASE_SECONDS = float(os.environ.get("PORTAL_BENCH_SECONDS", "6"))
TARGETS = {"search_p95_ms": 250, "run_p95_ms": 500}
MEMORY_BUDGET_MB = {"base": 400, "per_run": 256}
"""The documented budget: base + 256 MB per concurrent run (runs in flight are capped per user)."""

TRIVIAL = "print(await demo.echo(text='hi'))"
ATTACK_CODE = {
    "big_args": (
        "import asyncio\n"
        "pad = 'x' * 1_500_000\n"
        "r = await asyncio.gather(*[demo.echo(text='a', **{'pad': pad}) for _ in range(20)], return_exceptions=True)\n"
        "print(len(r))"
    ),
    "big_code": "x = " + repr("y" * 980_000) + "\nprint(len(x))",
    "big_literal": "x = " + repr([{}] * 4_900) + "\nprint(len(x))",  # just under the caps: parsed, in a thread
    "flood_calls": (
        "import asyncio\n"
        "pad = [{}] * 30_000\n"  # 90 kB of JSON, ~2 MB once decoded in the portal
        "r = await asyncio.gather(*[demo.slow(seconds=2, **{'pad': pad}) for _ in range(200)], return_exceptions=True)\n"
        "print(len(r))"
    ),
    "crasher": (
        "try:\n    await fragile.crash()\nexcept Exception:\n    pass\n"
        "import asyncio\n"
        "await asyncio.gather(*[sluggish.slow(seconds=3) for _ in range(20)], return_exceptions=True)"
    ),
}


def _config(folder: Path, tokens: dict[str, str]) -> Path:
    demo = f"    command: {sys.executable!r}\n    args: [{str(DEMO_SERVER)!r}]\n"
    users = "".join(f"    {name}: {{token: {token!r}}}\n" for name, token in tokens.items())
    path = folder / "portal.yaml"
    path.write_text(
        f"servers:\n  demo:\n{demo}  fragile:\n{demo}    max_restarts: 1000\n  sluggish:\n{demo}"
        f"audit: {{sqlite: {str(folder / 'audit.sqlite')!r}}}\n"
        f"sandbox: {{timeout: 10}}\n"
        f"http:\n  users:\n{users}",
        encoding="utf-8",
    )
    return path


class Tally:
    """What every user was answered, for the latency report and the audit match."""

    def __init__(self) -> None:
        self.latency: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        self.errors: Counter[tuple[str, str]] = Counter()
        self.answered: Counter[tuple[str, str]] = Counter()  # (user, "search" | "run") -> answers received
        self.good_calls: Counter[str] = Counter()  # tool calls good users' runs made (one per ok run)


async def _good_user(url: str, user: str, token: str, phase: list[str], tally: Tally, delay: float) -> None:
    """Searches and runs trivial code about once a second until the phase is `done`; each sample is filed under
    the phase it started in."""
    await anyio.sleep(delay)  # spread the users over the second
    async with authorised_client(url, token) as client:
        while phase[0] != "done":
            now = phase[0]
            started = time.perf_counter()
            found = await client.call_tool("search_api", {"query": "echo text back"})
            tally.latency[now]["search"].append(time.perf_counter() - started)
            tally.answered[(user, "search")] += 1
            if found.is_error:
                tally.errors[(now, "search")] += 1
            started = time.perf_counter()
            ran = await client.call_tool("execute_code", {"code": TRIVIAL})
            tally.latency[now]["run"].append(time.perf_counter() - started)
            tally.answered[(user, "run")] += 1
            if ran.is_error or "hi" not in _text(ran):
                tally.errors[(now, "run")] += 1
            else:
                tally.good_calls[user] += 1
            await anyio.sleep(0.8)  # a person-paced agent: one step a second


async def _hostile(url: str, user: str, token: str, attack: str, tally: Tally, until: float) -> None:
    async with authorised_client(url, token) as client:
        while time.monotonic() < until:
            if attack == "big_query":
                query = "refund invoice " * 260_000  # 3.9 MB
                await client.call_tool("search_api", {"query": query})
                tally.answered[(user, "search")] += 1
                for _ in range(20):
                    await client.call_tool("search_api", {"query": "create an issue"})
                    tally.answered[(user, "search")] += 1
            else:
                await client.call_tool("execute_code", {"code": ATTACK_CODE[attack]})
                tally.answered[(user, "run")] += 1
                if attack == "big_code":  # and code just under the cap whose pre-run check costs the most
                    await client.call_tool("execute_code", {"code": ATTACK_CODE["big_literal"]})
                    tally.answered[(user, "run")] += 1


async def _loris(port: int, until: float) -> None:
    """Keeps up to 200 unfinished requests open from 127.0.0.2 (the portal cuts them; they are reopened)."""
    socks: list[socket.socket] = []
    try:
        while time.monotonic() < until:
            socks = [sock for sock in socks if _alive(sock)]
            while len(socks) < 200:
                sock = socket.socket()
                sock.setblocking(False)
                sock.bind(("127.0.0.2", 0))
                with contextlib.suppress(BlockingIOError, OSError):
                    sock.connect(("127.0.0.1", port))
                socks.append(sock)
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.send(b"GET /mcp HTTP/1.1\r\nX-Slow: ")
            await anyio.sleep(0.5)
    finally:
        for sock in socks:
            sock.close()


def _alive(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def _text(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


async def _sample_memory(pid: int, peak: list[float], until: Callable[[], bool]) -> None:
    while not until():
        with contextlib.suppress(OSError):
            status = await anyio.Path(f"/proc/{pid}/status").read_text()
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    peak[0] = max(peak[0], int(line.split()[1]) / 1024)
        await anyio.sleep(0.25)


async def _attacks(url: str, tokens: dict[str, str], attacks: tuple[str, ...], tally: Tally) -> None:
    """Run `attacks` for one phase, each in a process of its own (so an attacker's own CPU, e.g. encoding a 3.9 MB
    query, does not slow the good users' clients in this process); the good users keep going meanwhile."""
    hostile = dict(zip(ATTACKS, [name for name in tokens if name.startswith("hostile")], strict=True))
    if not attacks:
        await anyio.sleep(PHASE_SECONDS)

    async def attack(name: str) -> None:
        user = hostile[name]
        command = [sys.executable, __file__, "attack", name, url, tokens[user], str(PHASE_SECONDS)]
        done = await anyio.run_process(command, check=False)
        answered = json.loads(done.stdout or b"{}")
        for kind, count in answered.items():
            tally.answered[(user, kind)] += count

    async with anyio.create_task_group() as group:
        for name in attacks:
            group.start_soon(attack, name)


async def _attacker(attack: str, url: str, token: str, seconds: float) -> None:
    """One attack for `seconds` (`bench_isolation.py attack NAME URL TOKEN SECONDS`); prints its answers' count."""
    tally = Tally()
    until = time.monotonic() + seconds
    if attack == "loris":
        await _loris(int(url.rsplit(":", 1)[1].split("/")[0]), until)
    else:
        await _hostile(url, "me", token, attack, tally, until)
    print(json.dumps({kind: count for (_, kind), count in tally.answered.items()}))


def _audit_counts(path: Path) -> Counter[tuple[str, str]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT user, kind, COUNT(*) FROM events GROUP BY user, kind").fetchall()
    return Counter({(user, kind): count for user, kind, count in rows})


async def measure() -> dict[str, Any]:
    tokens = {f"good{index:02d}": secrets.token_urlsafe(16) for index in range(GOOD_USERS)}
    tokens |= {f"hostile{index}": secrets.token_urlsafe(16) for index in range(len(ATTACKS))}
    tally = Tally()
    peak = [0.0]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = _config(folder, tokens)
        port = free_port()
        log = folder / "portal.log"
        async with started(portal_command(config, "127.0.0.1", port), log) as process:
            with anyio.fail_after(STARTUP_TIMEOUT):
                await wait_until_listening(process, port, log)
            url = f"http://127.0.0.1:{port}/mcp"
            phase = ["warm-up"]
            phases: list[tuple[str, tuple[str, ...]]] = [("baseline", ())]
            phases += [(attack, (attack,)) for attack in ATTACKS]
            phases += [("all attacks", ATTACKS)]
            async with anyio.create_task_group() as group:
                group.start_soon(_sample_memory, process.pid, peak, lambda: phase[0] == "done")
                good = [name for name in tokens if name.startswith("good")]
                for index, user in enumerate(good):
                    group.start_soon(_good_user, url, user, tokens[user], phase, tally, index / len(good))
                with anyio.fail_after(PHASE_SECONDS * 2 * len(phases) + 300):
                    while min((tally.answered[(user, "run")] for user in good), default=0) < 2:  # noqa: ASYNC110
                        await anyio.sleep(0.2)  # every session open, the fork server and the search index warm
                    for name, attacks in phases:
                        print(f"   phase {name}", file=sys.stderr, flush=True)
                        phase[0] = name
                        await _attacks(url, tokens, attacks, tally)
                        phase[0] = "settling"  # what an attack still in flight leaves behind is not counted
                        await anyio.sleep(2)
                alive = process.returncode is None
                phase[0] = "done"
        audit = _audit_counts(folder / "audit.sqlite")
        log_bytes = log.stat().st_size
    lost = {
        f"{user} {kind}": answered - audit.get((user, kind), 0)
        for (user, kind), answered in tally.answered.items()
        if answered > audit.get((user, kind), 0)
    }
    lost_calls = {
        user: calls - audit.get((user, "call"), 0)
        for user, calls in tally.good_calls.items()
        if calls > audit.get((user, "call"), 0)
    }
    return {
        "machine": {"kernel": platform.release(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "phase_seconds": PHASE_SECONDS,
        "good_users": GOOD_USERS,
        "attacks": list(ATTACKS),
        "phases": {
            phase: {
                kind: _ms(values) | {"count": len(values), "errors": tally.errors[(phase, kind)]}
                for kind, values in kinds.items()
            }
            for phase, kinds in tally.latency.items()
            if phase not in ("warm-up", "settling")
        },
        "portal_alive": alive,
        "peak_rss_mb": round(peak[0], 1),
        "memory_budget_mb": MEMORY_BUDGET_MB,
        "records_lost": sum(lost.values()) + sum(lost_calls.values()),
        "lost_detail": lost | {f"{user} call": n for user, n in lost_calls.items()},
        "answered": sum(tally.answered.values()),
        "log_bytes": log_bytes,
    }


def _ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0, "max": 0.0}
    return {
        "p50": round(percentile(values, 50) * 1000, 1),
        "p95": round(percentile(values, 95) * 1000, 1),
        "max": round(max(values) * 1000, 1),
    }


def run() -> dict[str, Any]:
    return anyio.run(measure)


def markdown(results: dict[str, Any]) -> str:
    machine, phases = results["machine"], results["phases"]
    base = phases.get("baseline", {})
    budget = results["memory_budget_mb"]
    lines = [
        "## Isolation: 20 users, hostile ones among them, on one portal",
        "",
        f"Linux {machine['kernel']}, Python {machine['python']}, {machine['cpus']} CPUs shared by the portal, its "
        f"three demo servers, the sandboxes and all clients. {results['good_users']} well-behaved users (a search and "
        "a trivial run about once a second each) and 6 hostile users, one per attack of issue 13; "
        f"{results['phase_seconds']:g} s per phase (`PORTAL_BENCH_SECONDS`). Latency of the good users in ms; "
        "effect = the phase's p95 minus the baseline's.",
        "",
        "| phase | search p50 / p95 / max | run p50 / p95 / max | effect on search / run p95 | errors (search / run) |",
        "|---|---|---|---|---|",
    ]
    for phase, kinds in phases.items():
        search, ran = kinds.get("search", {}), kinds.get("run", {})
        effect = (
            f"{search.get('p95', 0) - base.get('search', {}).get('p95', 0):+.0f} / "
            f"{ran.get('p95', 0) - base.get('run', {}).get('p95', 0):+.0f}"
        )
        lines.append(
            f"| {phase} | {search.get('p50')} / {search.get('p95')} / {search.get('max')} | "
            f"{ran.get('p50')} / {ran.get('p95')} / {ran.get('max')} | {effect} | "
            f"{search.get('errors', 0)} / {ran.get('errors', 0)} |"
        )
    worst_search = max(kinds.get("search", {}).get("p95", 0) for kinds in phases.values())
    worst_run = max(kinds.get("run", {}).get("p95", 0) for kinds in phases.values())
    lines += [
        "",
        f"Worst good-user p95 under attack: search {worst_search} ms (target < {TARGETS['search_p95_ms']}), "
        f"trivial run {worst_run} ms (target < {TARGETS['run_p95_ms']}). Portal peak resident memory "
        f"{results['peak_rss_mb']} MB (budget: {budget['base']} MB + {budget['per_run']} MB per concurrent run). "
        f"Audit records lost: {results['records_lost']} of {results['answered']:,} answers. Portal alive at the "
        f"end: {'yes' if results['portal_alive'] else '**no**'}. Portal log: {results['log_bytes']:,} bytes.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["attack"]:
        anyio.run(_attacker, sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]))
    else:
        print(json.dumps(run(), indent=2))
