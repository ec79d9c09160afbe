"""Several portal replicas behind a round-robin proxy on loopback: the harness of `tests/test_replicas.py` and
`benchmarks/bench_replicas.py`.

- `RoundRobin`: a reverse proxy (ASGI) that sends each HTTP request to the next backend in turn, per request and not
  per TCP connection, so two requests of one MCP client land on different replicas. Responses, SSE included, are
  streamed through as they come. `GET /_roundrobin` answers what it sent where. Run it alone with
  `python -m tests.replicas PORT BACKEND_URL...` (e.g. `python -m tests.replicas 9000 http://127.0.0.1:8001
  http://127.0.0.1:8002`, then point clients at `http://127.0.0.1:9000/mcp`).
- `running_replicas`: N real `portal-mcp serve --transport http --stateless` processes on one config; with
  `peers=True` each gets an id (`r0`, `r1`, ...) and the config lists them all in `http.replica.peers`, so approval
  answers are forwarded to the replica holding the run.
- `running_proxy`: the proxy as a real process in front of them.
- `drive_load`: C concurrent MCP clients (the official SDK client over streamable HTTP) x R `execute_code` runs,
  each run one `demo.echo` call whose argument is unique, so `audit_mismatches` can match every run and every call
  record in the shared audit store against what was sent: nothing lost, nothing recorded twice.

The audit store is a parameter (`AuditStore`: the `audit:` section of the config and a way to read the events
back), so the same load runs against one SQLite file shared by the replicas or against PostgreSQL.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import secrets
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx2
import mcp_types as types
import yaml
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.types import Message, Receive, Scope, Send

from portal_mcp.control.audit import AuditEvent
from portal_mcp.surface.peers import FORWARDED_BY, HOP_BY_HOP
from tests.portals import STARTUP_TIMEOUT, started, wait_until_listening
from tests.servers import DEMO_SERVER, free_port

ROOT = Path(__file__).resolve().parents[1]
STATS_PATH = "/_roundrobin"
# Headers about one hop that a proxy must not forward (the portal's own list), and Host: the backend's is its own.
# The portal's forwarding marker passes, so a client that sets it reaches the replica with it.
_HOP_BY_HOP = (HOP_BY_HOP - {FORWARDED_BY}) | {b"host"}
ClientMode = Literal["legacy", "auto"]


class RoundRobin:
    """ASGI reverse proxy: each request goes to the next backend in turn; `served` counts what went where."""

    def __init__(self, backends: Sequence[str]) -> None:
        if not backends:
            raise ValueError("RoundRobin needs at least one backend URL")
        self.backends = [backend.rstrip("/") for backend in backends]
        self.served: dict[str, Counter[str]] = {backend: Counter() for backend in self.backends}
        self._turn = itertools.cycle(self.backends)
        self._client: httpx2.AsyncClient | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            if scope["path"] == STATS_PATH:
                await _respond(send, 200, json.dumps(self.stats()).encode(), b"application/json")
            else:
                await self._forward(scope, receive, send)

    def stats(self) -> dict[str, dict[str, int]]:
        """Per backend: `requests` (every HTTP request), `tool_calls` (POSTs carrying a `tools/call`) and per method."""
        return {backend: dict(counts) for backend, counts in self.served.items()}

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._client = httpx2.AsyncClient(
                    timeout=httpx2.Timeout(30, read=None),  # an SSE stream may stay quiet for a long time
                    limits=httpx2.Limits(max_connections=None, max_keepalive_connections=64),
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._client is not None:
                    await self._client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self._client is not None, "the proxy runs under a server with lifespan events (uvicorn lifespan='on')"
        backend = next(self._turn)
        body = await _read_body(receive)
        counts = self.served[backend]
        counts["requests"] += 1
        counts[scope["method"]] += 1
        if b'"tools/call"' in body:
            counts["tool_calls"] += 1
        target = backend + scope["raw_path"].decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        headers = [(key, value) for key, value in scope["headers"] if key.lower() not in _HOP_BY_HOP]
        request = self._client.build_request(scope["method"], target, headers=headers, content=body)
        try:
            response = await self._client.send(request, stream=True)
        except httpx2.TransportError as exc:
            await _respond(send, 502, f"round-robin: {backend} unreachable: {exc!r}".encode(), b"text/plain")
            return
        try:
            async with anyio.create_task_group() as group:
                # A client that goes away (e.g. closing an SSE stream) must close the upstream response too.
                group.start_soon(_cancel_on_disconnect, receive, group.cancel_scope)
                await send(
                    {
                        "type": "http.response.start",
                        "status": response.status_code,
                        "headers": [
                            (key, value) for key, value in response.headers.raw if key.lower() not in _HOP_BY_HOP
                        ],
                    }
                )
                async for chunk in response.aiter_raw():  # raw: content-encoding stays as the backend sent it
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return


async def _respond(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]})
    await send({"type": "http.response.body", "body": body})


def main(argv: Sequence[str]) -> None:
    """`python -m tests.replicas PORT BACKEND_URL...`: serve the round-robin proxy on 127.0.0.1:PORT."""
    import uvicorn

    if len(argv) < 2:
        raise SystemExit("usage: python -m tests.replicas PORT BACKEND_URL [BACKEND_URL ...]")
    uvicorn.run(RoundRobin(argv[1:]), host="127.0.0.1", port=int(argv[0]), log_level="warning", lifespan="on")


# ---------------------------------------------------------------------------------------------------------------
# Processes: replicas and the proxy


@dataclass(frozen=True)
class AuditStore:
    """Where the replicas' audit goes: the `audit:` section of their shared config and how to read it back.

    `sqlite_store` is one SQLite file that every replica opens (WAL; SQLite serialises the processes' writes).
    For PostgreSQL, build one with `section={"postgres": DSN}` and `events` reading that database.
    """

    section: dict[str, Any]
    events: Callable[[], list[AuditEvent]]
    name: str


def sqlite_store(path: Path) -> AuditStore:
    def events() -> list[AuditEvent]:
        from portal_mcp.control.audit_store import SqliteAuditSink

        with SqliteAuditSink(path) as store:
            return store.recent(limit=10**9)

    return AuditStore({"sqlite": str(path)}, events, "sqlite")


def postgres_store(dsn: str) -> AuditStore:
    """One PostgreSQL database that every replica writes to (each through its own background writer)."""

    def events() -> list[AuditEvent]:
        from portal_mcp.control.audit_store import PostgresAuditSink

        with PostgresAuditSink(dsn, create=False) as store:
            return store.recent(limit=10**9)

    return AuditStore({"postgres": dsn}, events, "postgres")


def replica_config(
    folder: Path,
    audit: AuditStore,
    users: Mapping[str, str],
    *,
    stateless: bool | None = None,
    policy: Mapping[str, Any] | None = None,
) -> Path:
    """A portal.yaml shared by every replica: the demo server over stdio, one bearer token per user, the audit store.

    `stateless` goes into the file only when given (the replicas also get `--stateless` on the command line), and
    so does `policy`.
    """
    # Operators all (`http.operator_groups`): the tests read each replica's /metrics with a client's token.
    http: dict[str, Any] = {"users": {user: {"token": token, "groups": ["operators"]} for user, token in users.items()}}
    if stateless is not None:
        http["stateless"] = stateless
    config: dict[str, Any] = {
        "servers": {"demo": {"command": sys.executable, "args": [str(DEMO_SERVER)]}},
        "http": http,
        "audit": audit.section,
    }
    if policy is not None:
        config["policy"] = dict(policy)
    path = folder / "portal.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def make_users(count: int) -> dict[str, str]:
    return {f"client{index:02d}": secrets.token_urlsafe(16) for index in range(count)}


@asynccontextmanager
async def running_replicas(
    config: Path,
    count: int,
    *,
    stateless: bool | None = True,
    peers: bool = False,
    extra_peers: Mapping[str, str] | None = None,
) -> AsyncIterator[list[str]]:
    """Start `count` portals on `config` with `--stateless` (`--stateful` for False, the config's choice for None);
    yield their base URLs once all of them listen.

    `peers`: replica i is `r{i}` and `http.replica.peers` in `config` (rewritten) lists every replica plus
    `extra_peers`. Both ways of naming a replica are used: even ones get `--replica-id`, odd ones PORTAL_REPLICA_ID.
    """
    flag = [] if stateless is None else ["--stateless" if stateless else "--stateful"]
    ports = [free_port() for _ in range(count)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    if peers:
        settings = yaml.safe_load(await anyio.Path(config).read_text(encoding="utf-8"))
        listed = {f"r{index}": url for index, url in enumerate(urls)} | dict(extra_peers or {})
        settings.setdefault("http", {})["replica"] = {"peers": listed}
        await anyio.Path(config).write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    async with contextlib.AsyncExitStack() as stack:
        processes = []
        for index, port in enumerate(ports):
            command = [sys.executable, "-m", "portal_mcp", "serve", "--transport", "http", "--port", str(port)]
            command += ["--config", str(config), *flag]
            env = {}
            if peers and index % 2 == 0:
                command += ["--replica-id", f"r{index}"]
            elif peers:
                env["PORTAL_REPLICA_ID"] = f"r{index}"
            log = config.with_name(f"replica{index}.log")
            processes.append(await stack.enter_async_context(started(command, log, env=env)))
        with anyio.fail_after(STARTUP_TIMEOUT):
            for process, port, index in zip(processes, ports, range(count), strict=True):
                await wait_until_listening(process, port, config.with_name(f"replica{index}.log"))
        yield urls


@asynccontextmanager
async def running_proxy(backends: Sequence[str], log: Path) -> AsyncIterator[str]:
    """Start the round-robin proxy as its own process in front of `backends`; yield its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "tests.replicas", str(port), *backends]
    async with started(command, log, cwd=ROOT) as process:
        with anyio.fail_after(STARTUP_TIMEOUT):
            await wait_until_listening(process, port, log)
        yield f"http://127.0.0.1:{port}"


async def proxy_stats(proxy: str) -> dict[str, dict[str, int]]:
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(10)) as http:
        response = await http.get(proxy + STATS_PATH)
        response.raise_for_status()
        stats: dict[str, dict[str, int]] = response.json()
        return stats


# ---------------------------------------------------------------------------------------------------------------
# The load and its checks


@dataclass(frozen=True)
class Run:
    """One planned `execute_code` run: its code makes one `demo.echo(text=...)` call and prints the echo."""

    user: str
    index: int
    text: str

    @property
    def code(self) -> str:
        # The comment makes every run's code, hence its sha256 subject in the audit, unique.
        return f"# replica load: {self.user} run {self.index}\nr = await demo.echo(text={self.text!r})\nprint(r)\n"

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.code.encode()).hexdigest()[:16]

    @property
    def call_size(self) -> int:
        """The audit's `size_in` of the echo call: unique per user, as the text grows with the run index."""
        return len(json.dumps({"text": self.text}))


def plan(users: Sequence[str], runs: int) -> dict[str, list[Run]]:
    return {user: [Run(user, index, f"{user}-r{index}-" + "." * index) for index in range(runs)] for user in users}


@dataclass
class LoadResult:
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    """Seconds per `execute_code` call as the client saw it, through the proxy."""
    wrong: list[str] = field(default_factory=list)
    """Runs whose reply was not exactly the echoed text, each with what came back."""
    done: int = 0


async def drive_load(
    mcp_url: str,
    users: Mapping[str, str],
    runs: Mapping[str, Sequence[Run]],
    modes: Sequence[ClientMode] = ("legacy", "auto"),
) -> LoadResult:
    """Every user's client at once, each sending its runs one after the other; modes alternate across clients.

    `legacy` clients do the initialize handshake and send no session ID afterwards (the server gave none): the
    stateless path of 2025-era clients. `auto` clients negotiate 2026-07-28, where every request stands alone.
    """
    result = LoadResult()

    async def client(position: int, user: str) -> None:
        mode = modes[position % len(modes)]
        headers = {"Authorization": f"Bearer {users[user]}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(60)) as http,
            Client(streamable_http_client(mcp_url, http_client=http), mode=mode) as session,
        ):
            for run in runs[user]:
                started = time.perf_counter()
                reply = await session.call_tool("execute_code", {"code": run.code})
                result.latencies.append(time.perf_counter() - started)
                text = "\n".join(block.text for block in reply.content if isinstance(block, types.TextContent))
                if reply.is_error or text.strip() != run.text:
                    result.wrong.append(f"{run.user} run {run.index}: {text!r}")
                result.done += 1

    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for position, user in enumerate(runs):
            group.start_soon(client, position, user)
    result.seconds = time.perf_counter() - started
    return result


@dataclass(frozen=True)
class AuditCheck:
    runs: int
    calls: int
    other: int
    lost: list[str]
    duplicated: list[str]
    unexpected: list[str]
    not_ok: list[str]

    @property
    def exact(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected or self.not_ok or self.other)


def check_audit(events: Sequence[AuditEvent], runs: Mapping[str, Sequence[Run]]) -> AuditCheck:
    """Match the store's run and call records one to one against the planned runs."""
    planned = [run for user_runs in runs.values() for run in user_runs]
    expected: Counter[tuple[str, str, str, int]] = Counter(
        ("run", run.user, run.digest, 0) for run in planned
    ) + Counter(("call", run.user, "demo.echo", run.call_size) for run in planned)
    seen: Counter[tuple[str, str, str, int]] = Counter(
        (event.kind, event.user, event.subject, event.size_in if event.kind == "call" else 0)
        for event in events
        if event.kind in ("run", "call")
    )
    return AuditCheck(
        runs=sum(1 for event in events if event.kind == "run"),
        calls=sum(1 for event in events if event.kind == "call"),
        other=sum(1 for event in events if event.kind not in ("run", "call")),
        lost=[repr(key) for key in expected if seen[key] == 0],
        duplicated=[repr(key) for key, count in seen.items() if count > 1],
        unexpected=[repr(key) for key in seen if key not in expected],
        not_ok=[
            f"{event.kind} {event.subject}: {event.outcome} {event.detail}" for event in events if event.outcome != "ok"
        ],
    )


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


if __name__ == "__main__":
    main(sys.argv[1:])
