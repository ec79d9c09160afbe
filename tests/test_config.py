"""portal.yaml and mcpServers JSON: what is accepted, and the message for each thing that is not."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from portal_mcp.config import (
    RemoteServerConfig,
    SnapshotServerConfig,
    StdioServerConfig,
    bundled_schemas_dir,
    import_as_yaml,
    load_config,
)
from portal_mcp.errors import ConfigError


def write(tmp_path: Path, text: str, name: str = "portal.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str, environ: dict[str, str] | None = None, name: str = "portal.yaml") -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text, name), environ=environ or {})
    return str(info.value)


def test_three_kinds_of_server_are_recognised_by_their_keys(tmp_path: Path) -> None:
    (tmp_path / "snap.json").write_text('{"tools": []}')
    config = load_config(
        write(
            tmp_path,
            """
servers:
  local: {command: python3, args: [-m, x], env: {A: "1"}, cwd: sub, timeout: 5}
  remote: {url: "https://example.com/mcp", headers: {Authorization: "Bearer t"}}
  old: {url: "http://127.0.0.1:9/sse", type: sse}
  saved: {snapshot: snap.json, tools: {deny: ["delete_*"]}}
sandbox: {timeout: 12}
""",
        ),
        environ={},
    )
    local, remote, old, saved = (config.servers[n] for n in ("local", "remote", "old", "saved"))
    assert isinstance(local, StdioServerConfig) and local.args == ["-m", "x"] and local.timeout == 5
    assert local.cwd == (tmp_path / "sub").resolve()
    assert (
        isinstance(remote, RemoteServerConfig)
        and remote.type == "http"
        and remote.headers["Authorization"] == "Bearer t"
    )
    assert isinstance(old, RemoteServerConfig) and old.type == "sse"
    assert isinstance(saved, SnapshotServerConfig) and saved.snapshot == (tmp_path / "snap.json").resolve()
    assert not saved.tools.as_filter().permits("delete_file") and saved.tools.as_filter().permits("read_file")
    assert config.sandbox.timeout == 12


def test_variables_expand_in_every_string_with_defaults_and_escapes(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """
servers:
  gh:
    url: "${BASE:-https://api.example.com}/mcp"
    headers: {Authorization: "Bearer ${TOKEN}", Literal: "$${NOT_A_VAR}"}
""",
        ),
        environ={"TOKEN": "s3cret"},
    )
    server = config.servers["gh"]
    assert isinstance(server, RemoteServerConfig)
    assert server.url == "https://api.example.com/mcp"
    assert server.headers == {"Authorization": "Bearer s3cret", "Literal": "${NOT_A_VAR}"}


def test_relative_command_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "servers:\n  s: {command: ./bin/server}\n"), environ={})
    server = config.servers["s"]
    assert isinstance(server, StdioServerConfig)
    assert server.command == str((tmp_path / "bin/server").resolve())


def test_a_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, "servers:\n  a:\n    command: x\n   bad: [\n")
    assert "YAML syntax error" in message
    assert "portal.yaml:4" in message or "portal.yaml:5" in message


def test_an_unknown_key_names_the_key_the_server_and_the_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, "servers:\n  fs:\n    command: x\n    argz: [a]\n")
    assert "unknown key 'argz'" in message
    assert "server 'fs'" in message
    assert "portal.yaml:4" in message


def test_an_unknown_top_level_key_is_named(tmp_path: Path) -> None:
    message = error_of(tmp_path, "servers: {}\nsandbx: {timeout: 1}\n")
    assert "unknown key 'sandbx'" in message


def test_an_unset_variable_names_the_variable_and_where_it_is_used(tmp_path: Path) -> None:
    message = error_of(
        tmp_path, "servers:\n  gh:\n    url: https://x\n    headers: {Authorization: 'Bearer ${GH_TOKEN}'}\n"
    )
    assert "'GH_TOKEN'" in message
    assert "servers.gh.headers.Authorization" in message
    assert "portal.yaml:4" in message


def test_a_missing_snapshot_names_the_path(tmp_path: Path) -> None:
    message = error_of(tmp_path, "servers:\n  old:\n    snapshot: gone/old.json\n")
    assert str((tmp_path / "gone/old.json").resolve()) in message
    assert "portal-mcp snapshot" in message


def test_a_server_with_both_command_and_url_says_so(tmp_path: Path) -> None:
    message = error_of(tmp_path, "servers:\n  both:\n    command: x\n    url: https://x\n")
    assert "server 'both' has both `command` and `url`" in message
    assert "portal.yaml:2" in message


def test_a_server_with_neither_command_nor_url_says_what_it_needs(tmp_path: Path) -> None:
    message = error_of(tmp_path, "servers:\n  empty: {timeout: 3}\n")
    assert "needs one of `command`" in message


def test_a_server_name_that_is_not_an_identifier_gets_a_suggestion(tmp_path: Path) -> None:
    message = error_of(tmp_path, "servers:\n  my-server: {command: x}\n")
    assert "'my-server'" in message and "'my_server'" in message


def test_wrong_value_types_name_the_key(tmp_path: Path) -> None:
    message = error_of(tmp_path, "servers:\n  s:\n    command: x\n    timeout: soon\n")
    assert "server 's' key 'timeout'" in message


def test_a_non_http_url_is_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, "servers:\n  s: {url: 'ftp://x'}\n")
    assert "must start with http:// or https://" in message


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")


def test_claude_desktop_mcp_servers_json_is_accepted_with_names_made_identifiers(tmp_path: Path) -> None:
    claude = {
        "mcpServers": {
            "github-server": {"command": "npx", "args": ["-y", "x"], "env": {"TOKEN": "${GH:-none}"}},
            "remote": {"type": "streamable-http", "url": "https://example.com/mcp", "headers": {"X": "1"}},
            "local": {"type": "stdio", "command": "uvx", "args": ["mcp-server-time"]},
        }
    }
    config = load_config(write(tmp_path, json.dumps(claude), "claude_desktop_config.json"), environ={})
    assert list(config.servers) == ["github_server", "remote", "local"]
    assert isinstance(config.servers["remote"], RemoteServerConfig)
    assert isinstance(config.servers["local"], StdioServerConfig)


def test_import_prints_yaml_that_keeps_variables_as_written(tmp_path: Path) -> None:
    claude = {"mcpServers": {"gh-x": {"command": "npx", "env": {"TOKEN": "${GH_TOKEN}"}, "type": "stdio"}}}
    text = import_as_yaml(write(tmp_path, json.dumps(claude), "mcp.json"))
    assert "gh_x:" in text and "${GH_TOKEN}" in text and "type:" not in text
    again = load_config(write(tmp_path, text, "round.yaml"), environ={"GH_TOKEN": "t"})
    server = again.servers["gh_x"]
    assert isinstance(server, StdioServerConfig) and server.env == {"TOKEN": "t"}


def test_the_bundled_default_config_loads() -> None:
    config = load_config(None)
    assert {"time", "memory"} <= set(config.servers)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "portal_mcp", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("servers:\n  a: {command: x, url: 'https://x'}\n", "has both"),
        ("servers: [\n", "YAML syntax error"),
        ("servers:\n  a: {command: x, nope: 1}\n", "unknown key 'nope'"),
        ("servers:\n  a: {url: '${UNSET_FOR_TEST}'}\n", "'UNSET_FOR_TEST'"),
    ],
)
def test_the_cli_reports_a_bad_config_in_one_line_with_exit_code_2(tmp_path: Path, text: str, expected: str) -> None:
    result = run_cli("check", "--config", str(write(tmp_path, text)))
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_import_on_the_cli_prints_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps({"mcpServers": {"t": {"command": "uvx", "args": ["mcp-server-time"]}}}), "m.json")
    result = run_cli("import", str(path))
    assert result.returncode == 0, result.stderr
    assert "servers:" in result.stdout and "uvx" in result.stdout


def test_the_audit_log_stays_in_memory_unless_a_sqlite_file_is_named(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "servers: {}\n"), environ={}).audit.sqlite is None


def test_a_relative_audit_file_resolves_against_the_config_folder_and_home_expands(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "audit: {sqlite: state/audit.sqlite}\n"), environ={})
    assert config.audit.sqlite == tmp_path.resolve() / "state" / "audit.sqlite"
    config = load_config(write(tmp_path, "audit: {sqlite: ~/audit.sqlite}\n"), environ={})
    assert config.audit.sqlite == Path.home() / "audit.sqlite"


def test_an_unknown_audit_key_is_named(tmp_path: Path) -> None:
    assert "unknown key 'mysql' in key 'audit'" in error_of(tmp_path, "audit: {mysql: x}\n")


# -- secrets_file and per-user secrets (`${user.KEY}`) ------------------------------------------------------------


def write_secrets(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "secrets.yaml"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_secrets_file_names_fill_variables_and_the_environment_wins(tmp_path: Path) -> None:
    write_secrets(tmp_path, "PORTAL_TOKEN: from-the-file-123\nGH: gh-from-the-file\n")
    config = load_config(
        write(
            tmp_path,
            "secrets_file: secrets.yaml\n"
            "http: {bearer_tokens: ['${PORTAL_TOKEN}']}\n"
            "servers:\n  gh: {url: 'https://example.com/mcp', headers: {Authorization: 'Bearer ${GH}'}}\n",
        ),
        environ={"PORTAL_TOKEN": "from-the-environment"},
    )
    assert config.http.bearer_tokens == ["from-the-environment"]
    server = config.servers["gh"]
    assert isinstance(server, RemoteServerConfig) and server.headers["Authorization"] == "Bearer gh-from-the-file"
    assert config.secrets_file == tmp_path / "secrets.yaml"
    # Every file value and every value substituted into headers/http is one to redact.
    assert {"from-the-file-123", "gh-from-the-file", "from-the-environment"} <= config.secret_values()


@pytest.mark.parametrize(
    ("secrets", "expected"),
    [
        (None, "secrets_file"),
        ("- a\n- b\n", "must be a YAML mapping"),
        ("PIN: 123456789\n", "secret 'PIN' must be a string, not int; quote it"),
        ("'bad name': x\n", "secret name 'bad name'"),
        ("A: [unclosed\n", "YAML syntax error"),
    ],
)
def test_a_broken_secrets_file_is_a_config_error(tmp_path: Path, secrets: str | None, expected: str) -> None:
    if secrets is not None:
        write_secrets(tmp_path, secrets)
    message = error_of(tmp_path, "secrets_file: secrets.yaml\n")
    assert expected in message
    if secrets is None:
        assert "does not exist" in message
    assert "123456789" not in message  # a value never appears in the message


def test_a_secrets_file_others_can_read_is_loaded_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_secrets(tmp_path, "T: secret-value-1\n", mode=0o644)
    load_config(write(tmp_path, "secrets_file: secrets.yaml\n"), environ={})
    assert "can be read by other users" in caplog.text and "chmod 600" in caplog.text
    assert "secret-value-1" not in caplog.text


def test_a_secrets_file_anyone_can_write_is_refused(tmp_path: Path) -> None:
    write_secrets(tmp_path, "T: secret-value-1\n", mode=0o602)
    assert "writable by every user" in error_of(tmp_path, "secrets_file: secrets.yaml\n")


PER_USER = """
user: alice
http:
  users:
    alice: {token: ta, secrets: {GH: alice-gh-token}}
    bob: {token: tb, secrets: {GH: bob-gh-token, JIRA: bob-jira}}
servers:
  gh: {url: 'https://example.com/mcp', headers: {Authorization: 'Bearer ${user.GH}', X-Literal: '$${user.GH}'}}
  local: {command: python3, env: {KEY: '${user.GH}'}}
"""


def test_user_references_stay_unexpanded_and_the_first_user_with_every_secret_lists(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, PER_USER), environ={})
    gh, local = config.servers["gh"], config.servers["local"]
    assert isinstance(gh, RemoteServerConfig) and isinstance(local, StdioServerConfig)
    assert gh.headers["Authorization"] == "Bearer ${user.GH}"
    assert gh.user_keys() == {"GH"} and local.user_keys() == {"GH"}
    assert gh.list_as == "alice" and local.list_as == "alice"
    assert config.user_secrets()["bob"] == {"GH": "bob-gh-token", "JIRA": "bob-jira"}
    assert {"alice-gh-token", "bob-gh-token", "bob-jira", "ta", "tb"} <= config.secret_values() | {"ta", "tb"}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("'${user.GH}'}}\n", "'${user.JIRA}'}}\n"),
            "",  # bob has JIRA: valid, and bob lists it
        ),
        (
            ("'${user.GH}'}}\n", "'${user.NOPE}'}}\n"),
            "server 'local' uses `${user.NOPE}` but no user has the secret 'NOPE'",
        ),
        (
            ("command: python3,", "command: python3, args: ['${user.GH}'],"),
            "`${user.GH}` in servers.local.args.0: a user's secret can only be used in",
        ),
        (
            ("url: 'https://example.com/mcp'", "url: 'https://example.com/mcp?k=${user.GH}'"),
            "in servers.gh.url",
        ),
        (
            ("command: python3,", "command: python3, list_as: carol,"),
            "`list_as: carol` is not a user in `http.users`",
        ),
        (
            ("'${user.GH}'}}\n", "'${user.GH}${user.JIRA}'}, list_as: alice}\n"),
            "`list_as: alice` lacks the secret(s) JIRA",
        ),
    ],
)
def test_user_references_are_checked_at_load(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    text = PER_USER.replace(*change)
    assert text != PER_USER
    if not expected:
        config = load_config(write(tmp_path, text), environ={})
        assert config.servers["local"].list_as == "bob"  # type: ignore[union-attr]
        return
    message = error_of(tmp_path, text)
    assert expected in message
    assert "gh-token" not in message


def test_an_escaped_user_reference_is_a_literal_everywhere(tmp_path: Path) -> None:
    text = PER_USER.replace("command: python3,", "command: python3, args: ['$${user.GH}'],")
    config = load_config(write(tmp_path, text), environ={})
    local = config.servers["local"]
    assert isinstance(local, StdioServerConfig) and local.args == ["${user.GH}"]


def test_list_as_on_a_server_without_user_references_is_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, "servers:\n  t: {command: python3, list_as: alice}\n")
    assert "`list_as` only applies to servers whose headers/env use `${user.KEY}`" in message


def test_the_config_reference_is_a_valid_config(tmp_path: Path) -> None:
    reference = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    section = reference[reference.index("## portal.yaml reference") :]
    text = section[section.index("```yaml\n") + 8 : section.index("\n```", section.index("```yaml"))]
    (tmp_path / "schemas").mkdir()
    shutil.copy(bundled_schemas_dir() / "time.json", tmp_path / "schemas" / "legacy.json")
    write_secrets(tmp_path, "UNUSED: nothing-here\n")
    variables = ["GITHUB_TOKEN", "ALICE_TOKEN", "ALICE_LINEAR_TOKEN", "PORTAL_TOKEN"]
    config = load_config(write(tmp_path, text), environ={name: f"{name.lower()}-value" for name in variables})
    assert set(config.servers) == {"github", "linear", "legacy"}
    assert config.policy.groups["eng"].read_only is True


def test_a_stdio_user_can_have_secrets_and_groups_without_an_http_token(tmp_path: Path) -> None:
    text = (
        "user: ada\n"
        "http: {users: {ada: {groups: [eng], secrets: {KEY: '${ADA_KEY}'}}}}\n"
        f"servers:\n  tool: {{command: {sys.executable!r}, env: {{API_KEY: '${{user.KEY}}'}}}}\n"
        "policy: {groups: {eng: {read_only: true}}}\n"
    )
    config = load_config(write(tmp_path, text), environ={"ADA_KEY": "ada-key-value"})
    assert config.http.users["ada"].token is None
    assert config.user_secrets() == {"ada": {"KEY": "ada-key-value"}}
    assert "ada-key-value" in config.secret_values()


def test_a_secret_named_variable_is_redacted_wherever_it_is_used_and_a_path_is_not(tmp_path: Path) -> None:
    text = (
        "servers:\n"
        "  remote: {url: 'https://mcp.example.com/mcp?token=${API_TOKEN}'}\n"
        f"  local: {{command: {sys.executable!r}, args: ['--api-key=${{SERVICE_API_KEY}}', '${{DATA_DIR}}/db']}}\n"
    )
    environ = {"API_TOKEN": "url-token-0123456789", "SERVICE_API_KEY": "arg-key-0123456789", "DATA_DIR": "/srv/data/x"}
    values = load_config(write(tmp_path, text), environ=environ).secret_values()
    assert {"url-token-0123456789", "arg-key-0123456789"} <= values
    assert "/srv/data/x" not in values


@pytest.mark.parametrize(
    ("http", "message"),
    [
        ("http: {users: {a: {token: same}, b: {token: same}}}", "user 'a' and user 'b' have the same token"),
        ("http: {bearer_tokens: [same], users: {a: {token: same}}}", "`http.bearer_tokens[0]` and user 'a' have"),
        ("http: {users: {a: {token: '${EMPTY}'}}}", "the token of user 'a' is empty"),
        ("http: {bearer_tokens: ['  ']}", "the token of `http.bearer_tokens[0]` is empty"),
    ],
)
def test_every_command_refuses_empty_or_shared_tokens_with_the_line(tmp_path: Path, http: str, message: str) -> None:
    # Checked at load, so `portal-mcp check` refuses what `serve` would (it used to pass them).
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        load_config(write(tmp_path, "servers: {}\n" + http + "\n"), environ={"EMPTY": ""})
    assert caught.value.line == 2


def test_every_config_problem_is_listed_with_its_line_and_a_did_you_mean(tmp_path: Path) -> None:
    path = tmp_path / "portal.yaml"
    path.write_text(
        "servers:\n  demo:\n    comand: python\n  other:\n    command: x\n    timout: 3\nsandbox:\n  timeot: 3\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    problems = [(p.line, p.message) for p in caught.value.problems()]
    assert [line for line, _ in problems] == [3, 6, 8]
    assert "`comand` looks like a typo for `command`" in problems[0][1]
    assert problems[1][1] == "unknown key 'timout' in server 'other'; did you mean 'timeout'?"
    assert problems[2][1] == "unknown key 'timeot' in key 'sandbox'; did you mean 'timeout'?"
    assert str(caught.value).startswith("3 problems:\n")


def test_relative_args_and_cwd_resolve_against_the_configs_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "project"
    (folder / "tools").mkdir(parents=True)
    (folder / "tools" / "server.py").write_text("")
    path = folder / "portal.yaml"
    path.write_text(
        "servers:\n"
        "  local: {command: python, args: [tools/server.py, ./data, -m, '@scope/pkg', mcp-server-time, --x=1]}\n"
        "  inside: {command: python, args: [server.py], cwd: tools}\n"
    )
    monkeypatch.chdir(tmp_path)  # elsewhere: the paths still name the files next to the config
    config = load_config(path, environ={})
    local, inside = config.servers["local"], config.servers["inside"]
    assert isinstance(local, StdioServerConfig) and isinstance(inside, StdioServerConfig)
    assert local.args == [
        str(folder / "tools" / "server.py"),
        str(folder / "data"),
        "-m",
        "@scope/pkg",
        "mcp-server-time",
        "--x=1",
    ]
    assert inside.cwd == folder / "tools" and inside.args == ["server.py"]  # with `cwd:` the process resolves them
