"""Per-user downstream credentials: each user's calls carry their own secrets, and no secret leaks anywhere else.

Real parts only: an HTTP MCP server on loopback that records the Authorization header of each call, the same
server over stdio (one process per user, `API_KEY` from the user's secrets), the sandbox, the SQLite audit log and
a real `portal-mcp serve` process.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import pytest

from portal_mcp.config import PortalConfig, load_config
from portal_mcp.control.credentials import MIN_REDACTED_LENGTH, REDACTED, Redactor
from portal_mcp.downstream._stderr import StderrPump
from portal_mcp.errors import MissingSecretError, ToolFailedError
from portal_mcp.logs import JsonFormatter, downstream_stderr
from portal_mcp.portal import Portal
from portal_mcp.runs.bridge import Caller
from tests.portals import authorised_client, running_portal, wait_until_listening
from tests.servers import SERVERS, alive, descendants, free_port, kill_all

AUTH_SERVER = SERVERS / "auth_server.py"
LEAKY_SERVER = SERVERS / "leaky_server.py"
linux_only = pytest.mark.skipif(sys.platform != "linux", reason="inspects processes through /proc")


def as_user(portal: Portal, user: str) -> Caller:
    """The caller of a bridge call made for `user` outside any run."""
    return Caller(portal.principal(user))


class Marks:
    """Random marker secrets: any of them turning up outside the downstream is a leak."""

    def __init__(self) -> None:
        self.values = {
            name: f"{name.lower().replace('_', '-')}-{secrets.token_hex(12)}"
            for name in (
                "ALICE_TOKEN",
                "BOB_TOKEN",
                "ALICE_KEY",
                "BOB_KEY",
                "ALICE_PORTAL",
                "BOB_PORTAL",
                "CAROL_PORTAL",
            )
        }

    def __getitem__(self, name: str) -> str:
        return self.values[name]

    def found_in(self, text: str | bytes) -> list[str]:
        if isinstance(text, bytes):
            return [name for name, value in self.values.items() if value.encode() in text]
        return [name for name, value in self.values.items() if value in text]


@pytest.fixture
def marks() -> Marks:
    return Marks()


@asynccontextmanager
async def auth_http(record: Path) -> AsyncIterator[str]:
    """tests/servers/auth_server.py over streamable HTTP on a free loopback port; yields its /mcp url."""
    port = free_port()
    process = await anyio.open_process(
        [sys.executable, str(AUTH_SERVER), "--transport", "http", "--port", str(port), "--record", str(record)],
        stdin=subprocess.DEVNULL,
        stdout=None,
        stderr=None,
    )
    try:
        with anyio.fail_after(15):
            await wait_until_listening(process, port)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        with anyio.CancelScope(shield=True):
            process.kill()
            await process.wait()
            await process.aclose()


def write_setup(folder: Path, marks: Marks, url: str, *, idle: float = 900.0, extra_servers: str = "") -> Path:
    """secrets.yaml (0600) with every marker, and a portal.yaml whose two servers use `${user.*}`."""
    secrets_file = folder / "secrets.yaml"
    secrets_file.write_text("".join(f"{name}: {json.dumps(value)}\n" for name, value in marks.values.items()))
    secrets_file.chmod(0o600)
    config = folder / "portal.yaml"
    config.write_text(
        f"""
secrets_file: secrets.yaml
user: alice
audit: {{sqlite: audit.sqlite}}
http:
  users:
    alice: {{token: "${{ALICE_PORTAL}}", secrets: {{TOKEN: "${{ALICE_TOKEN}}", KEY: "${{ALICE_KEY}}"}}}}
    bob: {{token: "${{BOB_PORTAL}}", secrets: {{TOKEN: "${{BOB_TOKEN}}", KEY: "${{BOB_KEY}}"}}}}
    carol: {{token: "${{CAROL_PORTAL}}"}}
servers:
  remote:
    url: {url}
    headers: {{Authorization: "Bearer ${{user.TOKEN}}"}}
  local:
    command: {json.dumps(sys.executable)}
    args: [{json.dumps(str(AUTH_SERVER))}]
    env: {{API_KEY: "${{user.KEY}}"}}
    user_idle_timeout: {idle}
{extra_servers}""",
        encoding="utf-8",
    )
    return config


@pytest.fixture
def processes() -> Iterator[None]:
    before = descendants()
    yield
    leftover = alive(descendants() - before)
    kill_all(leftover)
    assert not leftover, f"processes left running: {leftover}"


def scan_processes(marks: Marks) -> tuple[dict[int, str], list[int]]:
    """Processes below the test that hold a marker (pid -> command line), and the sandbox's processes."""
    holders: dict[int, str] = {}
    sandbox: list[int] = []
    for pid in descendants():
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if marks.found_in(environ + cmdline):
            holders[pid] = cmdline.decode(errors="replace")
        if cmdline.startswith(f"{sys.executable}\0-I\0-B\0-c\0".encode()):
            sandbox.append(pid)  # the fork server and its spare workers
    return holders, sandbox


def records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def load(config: Path) -> PortalConfig:
    return load_config(config, environ={})


async def test_each_users_calls_reach_the_remote_server_with_that_users_token(tmp_path: Path, marks: Marks) -> None:
    record = tmp_path / "received.jsonl"
    async with auth_http(record) as url:
        config = load(write_setup(tmp_path, marks, url))
        with anyio.fail_after(60):
            async with Portal.open(config) as portal:
                statuses = {s.name: s.state for s in portal.statuses()}
                alice = await portal.bridge.call("remote.tag", {"text": "from alice"}, caller=as_user(portal, "alice"))
                bob = await portal.bridge.call("remote.tag", {"text": "from bob"}, caller=as_user(portal, "bob"))
                again = await portal.bridge.call("remote.tag", {"text": "alice again"}, caller=as_user(portal, "alice"))

    assert statuses == {"remote": "connected", "local": "connected"}
    assert (alice, bob, again) == ("tagged from alice", "tagged from bob", "tagged alice again")
    received = {line["text"]: line["auth"] for line in records(record)}
    assert received == {
        "from alice": f"Bearer {marks['ALICE_TOKEN']}",
        "from bob": f"Bearer {marks['BOB_TOKEN']}",
        "alice again": f"Bearer {marks['ALICE_TOKEN']}",
    }


async def test_concurrent_calls_of_two_users_never_carry_each_others_token(tmp_path: Path, marks: Marks) -> None:
    record = tmp_path / "received.jsonl"
    async with auth_http(record) as url:
        config = load(write_setup(tmp_path, marks, url))
        with anyio.fail_after(90):
            async with Portal.open(config) as portal, anyio.create_task_group() as group:
                for i in range(25):
                    for user in ("alice", "bob"):
                        group.start_soon(
                            partial(portal.bridge.call, caller=as_user(portal, user)),
                            "remote.tag",
                            {"text": f"{user} {i}"},
                        )

    seen = records(record)
    assert len(seen) == 50
    token = {"alice": f"Bearer {marks['ALICE_TOKEN']}", "bob": f"Bearer {marks['BOB_TOKEN']}"}
    assert [line for line in seen if line["auth"] != token[line["text"].split()[0]]] == []


@linux_only
@pytest.mark.usefixtures("processes")
async def test_a_stdio_server_runs_one_process_per_user_each_with_its_own_secret(tmp_path: Path, marks: Marks) -> None:
    def sha(value: str) -> str:
        return hashlib.sha256(value.encode()).hexdigest()

    record = tmp_path / "received.jsonl"
    async with auth_http(record) as url:
        config = load(write_setup(tmp_path, marks, url))
        with anyio.fail_after(60):
            async with Portal.open(config) as portal:
                alice = await portal.bridge.call(
                    "local.env_digest", {"name": "API_KEY"}, caller=as_user(portal, "alice")
                )
                bob = await portal.bridge.call("local.env_digest", {"name": "API_KEY"}, caller=as_user(portal, "bob"))
                bob_again = await portal.bridge.call(
                    "local.env_digest", {"name": "API_KEY"}, caller=as_user(portal, "bob")
                )
                running = alive({alice["pid"], bob["pid"]})

    assert alice["sha256"] == sha(marks["ALICE_KEY"])
    assert bob["sha256"] == sha(marks["BOB_KEY"])
    assert alice["pid"] != bob["pid"]
    assert bob_again["pid"] == bob["pid"], "a user's later calls reuse their process"
    assert running == {alice["pid"], bob["pid"]}
    assert not alive({alice["pid"], bob["pid"]}), "closing the portal ends every user's process"


@linux_only
@pytest.mark.usefixtures("processes")
async def test_an_idle_users_process_is_closed_and_the_next_call_starts_a_new_one(tmp_path: Path, marks: Marks) -> None:
    record = tmp_path / "received.jsonl"
    async with auth_http(record) as url:
        config = load(write_setup(tmp_path, marks, url, idle=0.3))
        with anyio.fail_after(60):
            async with Portal.open(config) as portal:
                first = await portal.bridge.call("local.env_digest", {"name": "API_KEY"}, caller=as_user(portal, "bob"))
                while alive({first["pid"]}):
                    await anyio.sleep(0.05)
                second = await portal.bridge.call(
                    "local.env_digest", {"name": "API_KEY"}, caller=as_user(portal, "bob")
                )
                listing = await portal.bridge.call(
                    "local.env_digest", {"name": "API_KEY"}, caller=as_user(portal, "alice")
                )
                await anyio.sleep(1.0)
                listing_again = await portal.bridge.call(
                    "local.env_digest", {"name": "API_KEY"}, caller=as_user(portal, "alice")
                )

    assert second["pid"] != first["pid"] and second["sha256"] == first["sha256"]
    assert listing_again["pid"] == listing["pid"], (
        "the listing user's connection is the server's own: never idle-closed"
    )


async def test_a_user_without_the_secret_gets_an_error_naming_the_server_and_key(tmp_path: Path, marks: Marks) -> None:
    record = tmp_path / "received.jsonl"
    async with auth_http(record) as url:
        config = load(write_setup(tmp_path, marks, url))
        with anyio.fail_after(60):
            async with Portal.open(config) as portal:
                with pytest.raises(MissingSecretError) as refused:
                    await portal.bridge.call("remote.tag", {"text": "carol"}, caller=as_user(portal, "carol"))
                with pytest.raises(MissingSecretError) as stranger:
                    await portal.bridge.call("local.tag", {"text": "dave"}, caller=as_user(portal, "dave"))
                run = await portal.execute_code("await remote.whoami()", portal.principal("carol"))

    message = str(refused.value)
    assert "'remote'" in message and "TOKEN" in message and "http.users.carol.secrets" in message
    assert "'dave' is not in `http.users`" in str(stranger.value)
    assert "a `token` only if they call over HTTP" in str(stranger.value), "a user without a token is valid (stdio)"
    assert not run.ok and "TOKEN" in run.render() and "http.users.carol.secrets" in run.render()
    assert records(record) == [], "nothing was sent downstream"
    assert not marks.found_in(message + str(stranger.value) + run.render())


async def test_a_downstream_echoing_the_credentials_is_redacted_in_results_and_errors(
    tmp_path: Path, marks: Marks
) -> None:
    record = tmp_path / "received.jsonl"
    code = """
for call in (remote.whoami(), local.whoami()):
    print(await call)
for call in (remote.reject(), local.reject(), remote.reject_rpc()):
    try:
        await call
    except Exception as exc:
        print("caught", exc)
"""
    async with auth_http(record) as url:
        config = load(write_setup(tmp_path, marks, url))
        with anyio.fail_after(60):
            async with Portal.open(config) as portal:
                run = await portal.execute_code(code, portal.principal("bob"))
                with pytest.raises(ToolFailedError) as failed:
                    await portal.bridge.call("remote.reject", {}, caller=as_user(portal, "alice"))

    output = run.render()
    assert run.ok, output
    assert output.count("[redacted]") >= 5, output
    assert "401 Unauthorized" in output and "invalid credentials" in output
    assert not marks.found_in(output)
    assert "[redacted]" in str(failed.value) and not marks.found_in(str(failed.value))


@linux_only
@pytest.mark.usefixtures("processes")
async def test_no_secret_reaches_logs_audit_sandbox_or_stderr_in_process(
    tmp_path: Path, marks: Marks, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    record = tmp_path / "received.jsonl"
    # The agent hunts for credentials: its environment, its arguments, the portal's process.
    hunt = """
found = []
try:
    import os
    found.append(str(dict(os.environ)))
except Exception as exc:
    found.append(repr(exc))
try:
    found.append(open('/proc/self/environ').read())
except Exception as exc:
    found.append(repr(exc))
print(found)
print(await local.print_env(name="API_KEY"))
print(await remote.whoami())
"""
    async with auth_http(record) as url:
        config = load(write_setup(tmp_path, marks, url))
        with anyio.fail_after(60):
            async with Portal.open(config) as portal:
                # The test's log output, as an embedding application's: it adds the portal's redaction itself.
                caplog.handler.addFilter(portal.redactor.filter())
                outputs = [
                    (await portal.execute_code(hunt, portal.principal(user))).render() for user in ("alice", "bob")
                ]
                outputs.append(portal.search_api("credentials whoami", portal.local))
                outputs.append(portal.search_api("", portal.local))
                # Every process below the test that holds a marker must be a downstream server.
                holders, sandbox = scan_processes(marks)
                # A library's log record quoting a secret (the SDK logs lines it cannot parse) is redacted too.
                logging.getLogger("mcp.client.stdio").warning("bad line %s", marks["BOB_KEY"])
                await anyio.sleep(0.2)  # let the stderr pumps forward the print_env lines

    assert all(output.count("[redacted]") >= 1 for output in outputs[:2]), outputs
    assert not marks.found_in("\n".join(outputs))
    assert len(holders) == 2 and all(str(AUTH_SERVER) in cmdline for cmdline in holders.values()), holders
    assert sandbox, "the scan saw the sandbox's fork server"
    assert "bad line [redacted]" in caplog.text
    assert not marks.found_in(caplog.text)
    err = capfd.readouterr().err
    assert "auth server config: API_KEY=[redacted]" in err
    assert not marks.found_in(err)
    assert not marks.found_in((tmp_path / "audit.sqlite").read_bytes())
    for suffix in ("-wal", "-shm"):
        wal = tmp_path / f"audit.sqlite{suffix}"
        if wal.exists():
            assert not marks.found_in(wal.read_bytes())


async def test_no_secret_reaches_a_served_portals_replies_stderr_audit_or_check(tmp_path: Path, marks: Marks) -> None:
    record = tmp_path / "received.jsonl"
    # A per-user server whose listing connection fails, printing its secret on the way out.
    leaky = tmp_path / "leaky.py"
    leaky.write_text(
        "import os, sys\nsys.stderr.write('starting with key ' + os.environ['API_KEY'] + '\\n')\nsys.exit(3)\n"
    )
    extra = f"""  leaky:
    command: {json.dumps(sys.executable)}
    args: [{json.dumps(str(leaky))}]
    env: {{API_KEY: "${{user.KEY}}"}}
"""
    code = """
print(await remote.whoami(), await local.whoami())
try:
    await remote.reject()
except Exception as exc:
    print(exc)
print(await local.print_env(name="API_KEY"))
"""
    async with auth_http(record) as url:
        config = write_setup(tmp_path, marks, url, extra_servers=extra)
        async with running_portal(config) as portal_url:
            with anyio.fail_after(60):
                replies = []
                for user in ("ALICE_PORTAL", "BOB_PORTAL", "CAROL_PORTAL"):
                    async with authorised_client(portal_url, marks[user]) as client:
                        replies.append(await client.call_tool("execute_code", {"code": code}))
                        replies.append(await client.call_tool("search_api", {"query": ""}))
                await anyio.sleep(0.3)
        check = await anyio.run_process(
            [sys.executable, "-m", "portal_mcp", "check", "--config", str(config)],
            check=False,
            env={**os.environ, "COLUMNS": "2000"},  # one table row per server: nothing folded across lines
        )

    texts = [block.text for reply in replies for block in reply.content if block.type == "text"]
    assert any("[redacted]" in text for text in texts), texts
    assert any("lacks them" in text for text in texts), "carol is told what she is missing"
    assert not marks.found_in("\n".join(texts))
    served_log = config.with_suffix(".log").read_bytes()
    assert b"[redacted]" in served_log
    assert not marks.found_in(served_log)
    assert not marks.found_in((tmp_path / "audit.sqlite").read_bytes())
    check_output = check.stdout + check.stderr
    assert b"leaky" in check_output and b"[redacted]" in check_output, check_output.decode()
    assert not marks.found_in(check_output)
    received = records(record)
    assert {line["auth"] for line in received} <= {"", f"Bearer {marks['ALICE_TOKEN']}", f"Bearer {marks['BOB_TOKEN']}"}


def test_secret_values_never_show_in_the_configs_repr(tmp_path: Path, marks: Marks) -> None:
    config = load(write_setup(tmp_path, marks, "http://127.0.0.1:9/mcp"))
    assert not marks.found_in(repr(config))
    assert set(marks.values.values()) <= config.secret_values()
    assert os.environ.get("ALICE_TOKEN") is None  # the markers never were in this process's environment


@pytest.mark.parametrize("session_user", ["alice", "bob"])
async def test_what_one_users_connection_says_reaches_that_user_and_the_log_never_other_clients(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], session_user: str
) -> None:
    import mcp_types as types
    from mcp.client import Client

    from portal_mcp.errors import PortalError
    from portal_mcp.surface.server import PortalServer

    config_file = tmp_path / "portal.yaml"
    config_file.write_text(
        f"user: {session_user}\n"  # the in-process client's session is the stdio user's
        "http:\n  users:\n"
        "    alice: {secrets: {KEY: alice-key-0123456789}}\n"
        "    bob: {secrets: {KEY: bob-key-0123456789}}\n"
        f"servers:\n  picky:\n    command: {json.dumps(sys.executable)}\n"
        f"    args: [{json.dumps(str(SERVERS / 'picky_server.py'))}]\n"
        "    env: {API_KEY: '${user.KEY}'}\n",
        encoding="utf-8",
    )
    told: list[str] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        told.append(json.dumps(params.data))

    caplog.set_level(logging.INFO, logger="portal_mcp.downstream")
    with anyio.fail_after(60):
        async with (
            Portal.open(load_config(config_file, environ={})) as portal,
            Client(PortalServer(portal).server, mode="legacy", logging_callback=on_log) as session,
        ):
            await session.list_tools()  # from now on the session is sent log messages
            with pytest.raises(PortalError):
                await portal.bridge.call("picky.ping", {}, caller=as_user(portal, "bob"))
            await anyio.sleep(0.3)
    about_bob = [line for line in told if "(as user 'bob')" in line]
    assert (about_bob != []) == (session_user == "bob"), told  # bob hears about his own process; alice never
    # What the process printed (bob's data) is in the portal's stderr log only, never in an event or status.
    assert not any("atlas" in line for line in told), told
    assert all("its stderr is in the portal's log" in line for line in about_bob), about_bob
    logged = [record for record in caplog.records if getattr(record, "user", None) == "bob"]
    assert logged and not any("atlas" in record.getMessage() for record in logged)
    assert "private-project-atlas" in capfd.readouterr().err


async def test_the_listing_users_process_output_stays_out_of_statuses_and_search(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    config_file = tmp_path / "portal.yaml"
    config_file.write_text(
        "user: alice\n"
        "http:\n  users:\n"
        "    alice: {secrets: {KEY: alice-key-0123456789}}\n"
        "    bob: {secrets: {KEY: bob-key-0123456789}}\n"
        f"servers:\n  picky:\n    command: {json.dumps(sys.executable)}\n"
        f"    args: [{json.dumps(str(SERVERS / 'picky_server.py'))}]\n"
        "    env: {API_KEY: '${user.KEY}'}\n"
        "    list_as: bob\n",  # bob's process lists the tools, and it fails at start
        encoding="utf-8",
    )
    with anyio.fail_after(60):
        async with Portal.open(load_config(config_file, environ={})) as portal:
            [status] = portal.statuses()
            overview = portal.search_api("", portal.local)
    assert status.state == "failed" and status.error is not None
    assert "its stderr is in the portal's log" in status.error
    assert "atlas" not in status.error and "atlas" not in overview
    assert "Unavailable: picky" in overview
    assert "private-project-atlas" in capfd.readouterr().err  # the operator still has it


# A secret cut into pieces: downstream stderr is read line by line and long lines are wrapped.

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MTc5NTk1ODEyMX0.Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eA"
DSN = "postgresql://reporting_user:S3cr3t-Passw0rd-77@db-prod-2024.internal:5432/analytics_warehouse"


def windows(secret: str, size: int = MIN_REDACTED_LENGTH) -> set[str]:
    """Every `size`-character piece of `secret`: none may be left anywhere."""
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


def pieces_found(secret: str, text: str) -> list[str]:
    return sorted(piece for piece in windows(secret) if piece in text)


def test_a_secret_wrapped_over_three_stderr_lines_is_redacted_on_each_line() -> None:
    # What the SDK's rich traceback printed for `ValueError("401 Unauthorized: bad token " + key)` (the smoke test).
    lines = [
        "                             ValueError: 401 Unauthorized: bad                  ",
        "                             token                                              ",
        f"                             {JWT[:37]}              ",
        f"                             {JWT[37:74]}              ",
        f"                             {JWT[74:]}                      ",
    ]
    redactor = Redactor([JWT, DSN])
    assert [redactor.text(line).strip() for line in lines] == [
        "ValueError: 401 Unauthorized: bad",
        "token",
        REDACTED,
        REDACTED,
        REDACTED,
    ]
    # The same through a stdio server's stderr pump, as the pool reads it.
    out = io.StringIO()
    pump = StderrPump("leaky", out, redactor.text)
    pump.writer.write("\n".join(lines) + "\n")
    pump.writer.flush()
    assert pump.drain()
    pump.close()
    assert not pieces_found(JWT, out.getvalue())
    assert out.getvalue().count(f"[leaky] {' ' * 29}{REDACTED}") == 3


def test_pieces_are_redacted_wherever_they_sit_and_whole_values_in_every_spelling() -> None:
    secret = 'k3y-"quoted"/Value\\with+Spaces and-more-42'
    redactor = Redactor([JWT, secret])
    assert redactor.text(f"bad token {JWT}.") == f"bad token {REDACTED}."
    assert redactor.text(f"?token={JWT[5:60]}&x=1") == f"?token={REDACTED}&x=1"  # `=` ends a run
    assert redactor.text(f"Bearer {JWT[20:80]}/rest of the path") == f"Bearer {REDACTED}/rest of the path"
    assert redactor.text(quote(secret, safe="")) == REDACTED
    assert redactor.text(json.dumps({"k": secret})) == json.dumps({"k": REDACTED})
    cut = {"rows": [{"id": 1, "note": JWT[:40]}, {JWT[50:]: ["plain", 3]}]}
    assert redactor.value(cut) == {"rows": [{"id": 1, "note": REDACTED}, {REDACTED: ["plain", 3]}]}
    untouched = {"rows": [{"id": 1, "note": "nothing secret here, just words and 2024-01-01"}]}
    assert redactor.value(untouched) is untouched


def test_ordinary_words_and_the_dictionary_parts_of_a_dsn_are_kept() -> None:
    redactor = Redactor([DSN, "postgresql://user:pw@db-prod-2024.internal/app"])
    text = (
        "connect with postgresql to localhost, then db and app; the analytics_warehouse belongs to reporting_user "
        "on the internal network (port 5432). Authorization headers, configuration, documentation, 2024-01-01."
    )
    assert redactor.text(text) == text
    assert redactor.value({"text": text, "words": text.split()}) == {"text": text, "words": text.split()}
    # A random-looking piece of the DSN is its secret part, wherever it shows.
    assert redactor.text("password S3cr3t-Passw0rd-77 rejected") == f"password {REDACTED} rejected"
    assert redactor.text("host db-prod-2024.internal") == f"host {REDACTED}"  # documented: letters and digits


def test_a_piece_shorter_than_twelve_characters_is_not_redacted() -> None:
    # Documented limit: the tail of a token at a wrap boundary may be short; it is not enough to use the token.
    redactor = Redactor([JWT])
    assert redactor.text(JWT[-11:]) == JWT[-11:]
    assert redactor.text(JWT[-12:]) == REDACTED
    assert redactor.text(f"{JWT[:-11]}\n{JWT[-11:]}") == f"{REDACTED}\n{JWT[-11:]}"


def long_key() -> str:
    """A random JWT-shaped key of 103 characters: the SDK's traceback (80 columns) folds it into 37+37+29."""
    key = f"eyJ{secrets.token_urlsafe(16)[:17]}.eyJ{secrets.token_urlsafe(32)[:42]}.{secrets.token_urlsafe(32)[:36]}"
    assert len(key) == 103
    return key


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.usefixtures("processes")
async def test_a_secret_folded_over_a_downstreams_traceback_lines_reaches_no_log_nor_the_agent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], log_format: str
) -> None:
    caplog.set_level(logging.INFO)
    key = long_key()
    (tmp_path / "secrets.yaml").write_text(f"LEAKY_KEY: {json.dumps(key)}\n")
    (tmp_path / "secrets.yaml").chmod(0o600)
    config_file = tmp_path / "portal.yaml"
    config_file.write_text(
        "secrets_file: secrets.yaml\n"
        f"servers:\n  leaky:\n    command: {json.dumps(sys.executable)}\n"
        f"    args: [{json.dumps(str(LEAKY_SERVER))}]\n"
        "    env: {API_KEY: '${LEAKY_KEY}', COLUMNS: '80'}\n",  # the width the smoke test saw
        encoding="utf-8",
    )
    code = "print(await leaky.report())\ntry:\n    await leaky.boom()\nexcept Exception as exc:\n    print('caught', exc)\n"
    # json: the served portal's `--log-format json` path, each stderr line a log record.
    errlog = downstream_stderr() if log_format == "json" else None
    err = ""
    with anyio.fail_after(60):
        async with Portal.open(load_config(config_file, environ={}), errlog=errlog) as portal:
            reply = (await portal.execute_code(code, portal.local)).render()
            while "UnexpectedToolError" not in err + caplog.text:  # the last exception of the traceback
                await anyio.sleep(0.05)
                err += capfd.readouterr().err
    err += capfd.readouterr().err
    logged = err + caplog.text + "\n".join(JsonFormatter().format(record) for record in caplog.records)

    assert "caught leaky.boom failed" in reply, reply
    # The result's repr: the key folded in three lines, each piece redacted.
    assert repr(f"status: connected with key\n{REDACTED}\n{REDACTED}\n{REDACTED}\n(expires soon)") in reply, reply
    assert "ValueError: 401 Unauthorized: bad" in logged
    folded = [line for line in logged.splitlines() if line.rstrip().endswith(f" {REDACTED}")]
    assert len(folded) >= 3, "the key was printed folded, a piece a line, and each piece was redacted"
    assert not pieces_found(key, reply)
    assert not pieces_found(key, logged)
