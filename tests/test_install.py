"""`portal-mcp install CLIENT` on a temporary home: the entry is written, merged, read back by the portal's own
reader of that client's format, never duplicated, never clobbered, and `--import` moves the servers to portal.yaml."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from portal_mcp.cli import main
from portal_mcp.config import StdioServerConfig, load_config
from portal_mcp.config.install import CLIENTS, client_file

SAMPLES = Path(__file__).parent / "client_configs"
EXISTING = {
    "claude-desktop": SAMPLES / "claude-desktop" / "claude_desktop_config.json",
    "claude-code": SAMPLES / "claude-code" / ".claude.json",
    "cursor": SAMPLES / "cursor" / ".cursor" / "mcp.json",
    "vscode": SAMPLES / "vscode" / ".vscode" / "mcp.json",
}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    return folder


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["install", *args])
    return result.exit_code, result.output


def backups(file: Path) -> list[Path]:
    return sorted(file.parent.glob(f"{file.name}.bak-*"))


@pytest.mark.parametrize("client", CLIENTS)
def test_install_writes_an_entry_the_client_format_reader_reads_back_and_twice_changes_nothing(
    client: str, home: Path, tmp_path: Path
) -> None:
    portal_yaml = tmp_path / "portal.yaml"
    portal_yaml.write_text("servers: {}\n")
    file = client_file(client, home)  # type: ignore[arg-type]
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(EXISTING[client].read_text())  # the user's file as the client wrote it
    (file.parent / ".env").write_text("FETCH_TIMEOUT=20\n")  # the VS Code sample's envFile

    code, output = run(client, "--config", str(portal_yaml))
    assert code == 0, output
    assert f"added 'portal' to {file}" in output
    assert len(backups(file)) == 1 and backups(file)[0].read_text() == EXISTING[client].read_text()

    environ = {"PERPLEXITY_KEY": "pplx-1234567", "LINEAR_API_KEY": "lin-1234567", "NOTES_TOKEN": "n-1234567"}
    portal = load_config(file, environ=environ).servers["portal"]
    assert isinstance(portal, StdioServerConfig)
    assert portal.args == ["serve", "--config", str(portal_yaml)]
    assert Path(portal.command).name == "portal-mcp"
    before = json.loads(file.read_text())
    key = "servers" if client == "vscode" else "mcpServers"
    assert set(before[key]) - {"portal"}  # the user's other servers are still there

    code, output = run(client, "--config", str(portal_yaml))
    assert code == 0 and "nothing changed" in output
    assert json.loads(file.read_text()) == before and len(backups(file)) == 1


@pytest.mark.parametrize("client", CLIENTS)
def test_install_into_a_new_home_creates_the_file(client: str, home: Path) -> None:
    code, output = run(client)
    assert code == 0, output
    file = client_file(client, home)  # type: ignore[arg-type]
    assert list(load_config(file, environ={}).servers) == ["portal"]
    assert backups(file) == []


def test_a_same_named_entry_that_is_not_the_portal_is_kept_unless_forced(home: Path) -> None:
    file = client_file("cursor", home)
    file.parent.mkdir(parents=True)
    file.write_text(json.dumps({"mcpServers": {"portal": {"command": "something-else"}}}))
    code, output = run("cursor")
    assert code == 2
    assert "already has a server named 'portal' that is not this portal" in output and "--force" in output
    assert json.loads(file.read_text()) == {"mcpServers": {"portal": {"command": "something-else"}}}

    code, output = run("cursor", "--force")
    assert code == 0, output
    assert json.loads(file.read_text())["mcpServers"]["portal"]["args"] == ["serve"]
    assert json.loads(backups(file)[0].read_text())["mcpServers"]["portal"] == {"command": "something-else"}


def test_import_moves_the_clients_servers_into_portal_yaml(home: Path, tmp_path: Path) -> None:
    file = client_file("claude-desktop", home)
    file.parent.mkdir(parents=True)
    file.write_text(EXISTING["claude-desktop"].read_text())
    portal_yaml = tmp_path / "portal.yaml"

    code, output = run("claude-desktop", "--config", str(portal_yaml), "--import")
    assert code == 0, output
    assert "moved 3 servers into" in output
    written = json.loads(file.read_text())
    assert list(written["mcpServers"]) == ["portal"]
    assert written["globalShortcut"] == "Alt+Space"  # the client's other settings are untouched
    moved = yaml.safe_load(portal_yaml.read_text())["servers"]
    assert list(moved) == ["filesystem", "time", "github"]
    assert list(load_config(portal_yaml, environ={}).servers) == ["filesystem", "time", "github"]

    code, output = run("claude-desktop", "--config", str(portal_yaml), "--import")
    assert code == 0 and "nothing changed" in output


def test_print_gives_the_entry_for_any_other_client() -> None:
    code, output = run("windsurf", "--print", "--config", "/etc/portal.yaml")
    assert code == 0
    entry = json.loads(output)["mcpServers"]["portal"]
    assert entry["args"] == ["serve", "--config", "/etc/portal.yaml"]


def test_an_unknown_client_without_print_is_a_usage_error() -> None:
    code, output = run("windsurf")
    assert code == 2 and "use one of claude-desktop, claude-code, cursor, vscode, or --print" in output
