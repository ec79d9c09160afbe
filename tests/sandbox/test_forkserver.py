"""The fork server and the layers as the host sees them: fresh processes, restarts, reaping, confinement."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from portal_mcp.config import SandboxConfig
from portal_mcp.errors import SandboxError
from portal_mcp.sandbox import confine, forkserver, launcher
from portal_mcp.sandbox.host import SandboxHost
from tests.sandbox._support import (
    NAMESPACES,
    FakeTools,
    environ_and_fds,
    exists,
    fork_servers,
    run,
    worker_pids,
)

pytestmark = pytest.mark.anyio


def _status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in text.splitlines())}


async def _gone(pid: int) -> None:
    with anyio.fail_after(10):
        while exists(pid):
            await anyio.sleep(0.01)


async def test_every_run_gets_a_fresh_process_that_is_reaped_afterwards() -> None:
    seen: list[list[int]] = []

    async def call_tool(tool: str, args: dict[str, Any]) -> Any:
        seen.append(worker_pids())  # no spares: the only worker is the one running

    with anyio.fail_after(30):
        async with SandboxHost(SandboxConfig(spare_workers=0)) as host:
            for _ in range(3):
                result = await host.run("await gh.search()", NAMESPACES, call_tool)
                assert result.ok, result.error
    assert [len(pids) for pids in seen] == [1, 1, 1]
    assert len({pids[0] for pids in seen}) == 3
    for pids in seen:
        await _gone(pids[0])


async def test_the_fork_server_holds_no_credentials_and_no_portal_descriptors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTAL_TEST_SECRET", "hunter2")
    inherited = os.open(__file__, os.O_RDONLY)
    os.set_inheritable(inherited, True)
    try:
        with anyio.fail_after(30):
            async with SandboxHost(SandboxConfig()):
                [server] = fork_servers()
                environ, targets = environ_and_fds(server)
    finally:
        os.close(inherited)
    assert environ == b""
    assert targets[0] == targets[1] == "/dev/null"
    assert targets[2].startswith("pipe:")  # its own diagnostics, to the portal log
    assert all(target.startswith(("/dev/null", "pipe:", "socket:")) for target in targets.values())


async def test_a_running_worker_is_confined_as_the_host_reports() -> None:
    status: dict[str, str] = {}
    netns: list[str] = []

    async def call_tool(tool: str, args: dict[str, Any]) -> Any:
        [pid] = worker_pids()
        status.update(_status(pid))
        netns.append(os.readlink(f"/proc/{pid}/ns/net"))

    with anyio.fail_after(30):
        async with SandboxHost(SandboxConfig(spare_workers=0)) as host:
            result = await host.run("await gh.search()", NAMESPACES, call_tool)
            layers = host.layers
    assert result.ok, result.error
    assert list(layers) == list(confine.LAYERS)
    assert all(type(mechanisms) is tuple for mechanisms in layers.values())
    if "seccomp" in layers["new processes"]:
        assert status["Seccomp"] == "2"
        assert status["NoNewPrivs"] == "1"
    if "netns" in layers["network"]:
        assert netns[0] != os.readlink("/proc/self/ns/net")
    if "capabilities" in layers["other processes"]:
        assert status["CapEff"] == "0000000000000000"


async def test_missing_layers_are_logged_once_and_code_still_runs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A worker on a kernel without any of the optional mechanisms (the spawned form, so the patch applies).
    bootstrap = (
        "import sys; sys.modules['ssl'] = None\n"
        "from portal_mcp.sandbox import confine\n"
        "def refuse():\n"
        "    raise confine.LayerUnavailable('not on this kernel')\n"
        "for name in ('isolate_network', 'drop_capabilities', 'restrict_filesystem', 'install_seccomp'):\n"
        "    setattr(confine, name, refuse)\n"
        "from portal_mcp.sandbox.worker import main\n"
        "main()\n"
    )
    monkeypatch.setattr(launcher, "WORKER_COMMAND", (sys.executable, "-I", "-B", "-c", bootstrap))
    caplog.set_level(logging.WARNING, logger="portal_mcp.sandbox")
    with anyio.fail_after(30):
        async with SandboxHost(SandboxConfig(backend="spawn")) as host:
            first = await host.run("1 + 1", NAMESPACES, FakeTools())
            second = await host.run("2 + 2", NAMESPACES, FakeTools())
            layers = host.layers
    assert (first.value, second.value) == ("2", "4")
    assert layers["network"] == ()
    assert layers["filesystem writes"] == ("rlimit",)
    warnings = [record.getMessage() for record in caplog.records]
    assert warnings.count("sandbox layer unavailable, continuing without it: seccomp: not on this kernel") == 1
    assert "no kernel mechanism keeps sandboxed code from the network here" in warnings


async def test_the_spawn_backend_runs_code_under_the_same_layers() -> None:
    with anyio.fail_after(30):
        async with SandboxHost(SandboxConfig(backend="spawn")) as host:
            result = await host.run("print('hi')\nawait gh.search(q=1)", NAMESPACES, FakeTools())
            layers = host.layers
    assert result.ok, result.error
    assert result.output == "hi\n"
    assert list(layers) == list(confine.LAYERS)


async def test_a_killed_fork_server_is_replaced_before_the_next_run(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="portal_mcp.sandbox")
    with anyio.fail_after(30):
        async with SandboxHost(SandboxConfig()) as host:
            [first] = fork_servers()
            os.kill(first, signal.SIGKILL)
            await _gone(first)
            result = await host.run("'after'", NAMESPACES, FakeTools())
            # A spare forked before the kill may still serve this run (it dies with its fork server, but not
            # at once), so the replacement can come up a moment after the run.
            while not (servers := fork_servers()):
                await anyio.sleep(0.02)
            [second] = servers
    assert result.value == "'after'"
    assert second != first
    assert any("the sandbox fork server died" in record.getMessage() for record in caplog.records)


async def test_a_fork_server_killed_during_a_run_fails_that_run_only() -> None:
    async def call_tool(tool: str, args: dict[str, Any]) -> Any:
        [server] = fork_servers()
        os.kill(server, signal.SIGKILL)  # its workers die with it (PR_SET_PDEATHSIG)
        await anyio.sleep(30)

    with anyio.fail_after(30):
        async with SandboxHost(SandboxConfig()) as host:
            broken = await host.run("await gh.search()", NAMESPACES, call_tool)
            after = await host.run("'after'", NAMESPACES, FakeTools())
    assert broken.error_kind == "crash"
    assert after.value == "'after'"


async def test_a_worker_killed_by_a_signal_is_reported_with_the_signal() -> None:
    async def call_tool(tool: str, args: dict[str, Any]) -> Any:
        [pid] = worker_pids()
        os.kill(pid, signal.SIGSEGV)
        await anyio.sleep(30)

    result = await run("await gh.search()", call_tool, spare_workers=0)
    assert result.error_kind == "crash"
    assert "killed by SIGSEGV" in (result.error or "")


async def test_closing_the_host_stops_the_fork_server_and_every_worker() -> None:
    with anyio.fail_after(30):
        async with SandboxHost(SandboxConfig(spare_workers=3)) as host:
            await host.run("1", NAMESPACES, FakeTools())
            with anyio.fail_after(10):
                while len(worker_pids()) < 3:
                    await anyio.sleep(0.01)
            processes = fork_servers() + worker_pids()
    for pid in processes:
        await _gone(pid)


async def test_runs_in_parallel_each_get_their_own_worker() -> None:
    results: dict[int, Any] = {}
    with anyio.fail_after(30):
        async with SandboxHost(SandboxConfig(spare_workers=1)) as host:

            async def one(n: int) -> None:
                results[n] = await host.run(f"await gh.slow(n={n}, seconds=0.2)", NAMESPACES, FakeTools())

            async with anyio.create_task_group() as tg:
                for n in range(6):
                    tg.start_soon(one, n)
    assert {n: result.value for n, result in results.items()} == {n: str(n) for n in range(6)}


_GARBAGE_ZYGOTE = """
import json, os, struct, sys, time
control = 0
def send(frame):
    data = json.dumps(frame).encode()
    os.write(control, struct.pack('>I', len(data)) + data)
send({'type': 'ready', 'protocol': 2})
os.read(control, 65536)
send({'type': 'forked', 'token': 'not a number', 'pid': -1})
time.sleep(30)
"""


async def test_a_fork_server_breaking_the_protocol_is_stopped_and_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(forkserver, "ZYGOTE_COMMAND", (sys.executable, "-I", "-c", _GARBAGE_ZYGOTE))
    caplog.set_level(logging.ERROR, logger="portal_mcp.sandbox")
    with pytest.raises(SandboxError, match="could not fork a worker"):
        await run("1", wait=30)
    assert any("sent a malformed 'forked' frame" in record.getMessage() for record in caplog.records)
    assert fork_servers() == []
