"""Other clients' config files work unchanged as `--config` and in `import` (samples in tests/client_configs/, written
as each client writes them)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import yaml

from portal_mcp.config import RemoteServerConfig, StdioServerConfig, import_as_yaml, load_config
from portal_mcp.config.clients import PORTAL_KEYS
from portal_mcp.config.models import PortalConfig
from portal_mcp.errors import ConfigError

SAMPLES = Path(__file__).parent / "client_configs"


def stdio(config: PortalConfig, name: str) -> StdioServerConfig:
    server = config.servers[name]
    assert isinstance(server, StdioServerConfig)
    return server


def remote(config: PortalConfig, name: str) -> RemoteServerConfig:
    server = config.servers[name]
    assert isinstance(server, RemoteServerConfig)
    return server


def test_the_portal_keys_of_client_files_are_the_portal_config_keys() -> None:
    assert set(PortalConfig.model_fields) - {"source", "substituted_secrets"} == PORTAL_KEYS


def test_claude_desktop_config_loads_with_its_other_keys_ignored_in_one_info_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="portal_mcp.config"):
        config = load_config(SAMPLES / "claude-desktop" / "claude_desktop_config.json", environ={})
    assert list(config.servers) == ["filesystem", "time", "github"]
    assert stdio(config, "filesystem").args[-1] == "/Users/ada/Downloads"
    assert stdio(config, "github").env == {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_exampleexampleexample"}
    ignored = [r.getMessage() for r in caplog.records if "ignoring keys" in r.getMessage()]
    assert len(ignored) == 1 and ignored[0].endswith(
        "ignoring keys that are not about MCP servers: globalShortcut, preferences"
    )


def test_claude_code_mcp_json_has_stdio_http_and_sse_servers() -> None:
    config = load_config(SAMPLES / "claude-code" / ".mcp.json", environ={"GITHUB_PAT": "github_pat_1234567890"})
    assert remote(config, "github").type == "http"
    assert remote(config, "github").headers == {"Authorization": "Bearer github_pat_1234567890"}
    assert remote(config, "sentry").type == "sse"
    assert stdio(config, "dbhub").args[-1] == "postgres://localhost:5432/dev"
    assert "github_pat_1234567890" in config.secret_values()


def test_claude_json_gives_the_user_servers_and_those_of_the_project_in_this_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "shop"
    project.mkdir()
    text = (SAMPLES / "claude-code" / ".claude.json").read_text().replace("/home/ada/code/shop", str(project))
    (tmp_path / ".claude.json").write_text(text)
    monkeypatch.chdir(project)
    config = load_config(tmp_path / ".claude.json", environ={})
    assert list(config.servers) == ["memory", "shop_db"]  # not the other project's server
    assert stdio(config, "shop_db").command == "uvx"


def test_cursor_variables_are_expanded(tmp_path: Path) -> None:
    folder = tmp_path / "app"
    shutil.copytree(SAMPLES / "cursor", folder)
    config = load_config(
        folder / ".cursor" / "mcp.json", environ={"LINEAR_API_KEY": "lin_api_123456", "NOTES_TOKEN": "n0tes-t0ken"}
    )
    assert remote(config, "linear").headers == {"Authorization": "Bearer lin_api_123456"}
    notes = stdio(config, "notes")
    assert notes.args == [f"{folder}/tools/notes-server.js", "--dir", f"{Path.home()}/notes"]
    assert notes.env == {"NOTES_TOKEN": "n0tes-t0ken"}


def test_a_missing_cursor_env_variable_is_named_with_its_line() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(SAMPLES / "cursor" / ".cursor" / "mcp.json", environ={"NOTES_TOKEN": "x"})
    assert caught.value.line == 6
    assert "environment variable 'LINEAR_API_KEY'" in caught.value.message


def test_vscode_mcp_json_with_comments_inputs_and_an_env_file(tmp_path: Path) -> None:
    config = load_config(SAMPLES / "vscode" / ".vscode" / "mcp.json", environ={"PERPLEXITY_KEY": "pplx-abcdefgh"})
    assert list(config.servers) == ["Perplexity", "fetch", "github"]
    assert stdio(config, "Perplexity").env == {"PERPLEXITY_API_KEY": "pplx-abcdefgh"}
    assert "pplx-abcdefgh" in config.secret_values()
    assert stdio(config, "fetch").env == {"FETCH_USER_AGENT": "portal-tests/1.0", "FETCH_TIMEOUT": "20"}
    assert remote(config, "github").url == "https://api.githubcopilot.com/mcp/"


def test_a_vscode_input_without_a_value_names_the_input_and_where_to_put_it() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(SAMPLES / "vscode" / ".vscode" / "mcp.json", environ={})
    assert caught.value.message.startswith("VS Code input 'perplexity-key' (Perplexity API Key) has no value")
    assert "set the environment variable PERPLEXITY_KEY, or add `PERPLEXITY_KEY: ...` to the secrets file" in str(
        caught.value
    )
    assert caught.value.line == 18


def test_a_vscode_input_can_come_from_the_secrets_file(tmp_path: Path) -> None:
    folder = tmp_path / "proj"
    shutil.copytree(SAMPLES / "vscode", folder)
    (folder / "secrets.yaml").write_text("PERPLEXITY_KEY: pplx-from-file\n")
    mcp = folder / ".vscode" / "mcp.json"
    mcp.write_text(mcp.read_text().replace('"inputs": [', '"secrets_file": "../secrets.yaml",\n  "inputs": [', 1))
    assert stdio(load_config(mcp, environ={}), "Perplexity").env == {"PERPLEXITY_API_KEY": "pplx-from-file"}


def test_windsurf_server_url_and_disabled_servers() -> None:
    config = load_config(
        SAMPLES / "windsurf" / "mcp_config.json",
        environ={"BRAVE_API_KEY": "brave-123456", "FIGMA_TOKEN": "figd-123456"},
    )
    assert remote(config, "figma").url == "https://mcp.figma.example/mcp"
    assert stdio(config, "brave_search").env == {"BRAVE_API_KEY": "brave-123456"}
    assert config.servers["puppeteer"].disabled


def test_zed_settings_give_its_custom_context_servers(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="portal_mcp.config"):
        config = load_config(SAMPLES / "zed" / "settings.json", environ={})
    assert list(config.servers) == ["mcp_server_time", "git"]
    assert stdio(config, "git").args == ["mcp-server-git", "--repository", "/home/ada/code/shop"]
    assert any("skipping 'postgres-context-server'" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "sample",
    [
        "claude-desktop/claude_desktop_config.json",
        "claude-code/.mcp.json",
        "cursor/.cursor/mcp.json",
        "vscode/.vscode/mcp.json",
        "windsurf/mcp_config.json",
        "zed/settings.json",
    ],
)
def test_import_writes_a_portal_yaml_that_loads(sample: str, tmp_path: Path) -> None:
    text = import_as_yaml(SAMPLES / sample)
    body = yaml.safe_load(text)
    assert body["servers"]
    assert "${env:" not in text and "${input:" not in text and "${userHome}" not in text
    portal_yaml = tmp_path / "portal.yaml"
    portal_yaml.write_text(text)
    environ = dict.fromkeys(("GITHUB_PAT", "LINEAR_API_KEY", "NOTES_TOKEN", "PERPLEXITY_KEY", "BRAVE_API_KEY", "FIGMA_TOKEN", "HOME"), "v4lue-for-tests")  # fmt: skip
    assert list(load_config(portal_yaml, environ=environ).servers) == list(body["servers"])
