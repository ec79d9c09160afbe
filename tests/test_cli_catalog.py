"""The commands that only read the catalog (stubs, snapshot, search, agents-md) connect the downstream servers and
nothing else: no sandbox fork server starts and the audit store is never opened."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

DEMO_SERVER = Path(__file__).parent / "servers" / "demo_server.py"
UNREACHABLE = "postgresql://portal@127.0.0.1:1/audit?connect_timeout=3"
"""Nothing listens on port 1: a portal that opened this audit store would fail to start."""
ZYGOTE = "portal_mcp.sandbox.zygote"
"""What the sandbox's fork server runs (`sandbox/forkserver.py`): the process to look for."""


def commands(out: Path) -> list[list[str]]:
    return [
        ["stubs", "--out", str(out / "stubs")],
        ["snapshot", "--out", str(out / "snapshots")],
        ["search", "add two numbers"],
        ["agents-md"],
    ]


def write_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "portal.yaml"
    path.write_text(
        f"servers:\n  demo: {{command: {sys.executable}, args: [{DEMO_SERVER}]}}\n{extra}", encoding="utf-8"
    )
    return path


def descendants(pid: int) -> dict[int, str]:
    """The processes below `pid` now, with their command lines (processes gone meanwhile are skipped)."""
    found: dict[int, str] = {}
    pending = [pid]
    while pending:
        parent = pending.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                children = [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                continue
            for child in children:
                try:
                    found[child] = (Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")).decode()
                except OSError:
                    continue
                pending.append(child)
    return found


def run_watching(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run `portal-mcp ARGS` and, while it runs, note the command line of every process it starts."""
    seen: set[str] = set()
    with subprocess.Popen(
        [sys.executable, "-m", "portal_mcp", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            seen.update(descendants(process.pid).values())
            time.sleep(0.002)
        stdout, stderr = process.communicate(timeout=10)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), seen


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the process tree from /proc")
def test_catalog_commands_start_no_sandbox_process(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    for command in commands(tmp_path):
        result, seen = run_watching(*command, "--config", str(config))
        assert result.returncode == 0, result.stderr
        assert any(str(DEMO_SERVER) in line for line in seen)  # the watch sees the processes the command starts
        assert not [line for line in seen if ZYGOTE in line], command


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the process tree from /proc")
def test_the_watch_sees_the_fork_server_of_a_command_that_runs_code(tmp_path: Path) -> None:
    code = tmp_path / "code.py"
    code.write_text("print(await demo.add(a=1, b=2))\n", encoding="utf-8")
    result, seen = run_watching("exec", str(code), "--config", str(write_config(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert [line for line in seen if ZYGOTE in line]


def test_catalog_commands_work_while_the_configured_audit_store_is_unreachable(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"audit: {{postgres: '{UNREACHABLE}'}}\n")
    for command in commands(tmp_path):
        result = subprocess.run(
            [sys.executable, "-m", "portal_mcp", *command, "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, (command, result.stderr)
    assert "async def add(" in (tmp_path / "stubs" / "demo.pyi").read_text(encoding="utf-8")
    assert (tmp_path / "snapshots" / "demo.json").is_file()


def test_a_command_that_runs_code_still_opens_the_configured_audit_store(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"audit: {{postgres: '{UNREACHABLE}'}}\n")
    result = subprocess.run(
        [sys.executable, "-m", "portal_mcp", "exec", "-", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        input="print(1)\n",
    )
    assert result.returncode == 1
    assert "audit" in result.stderr.lower()
