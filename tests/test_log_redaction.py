"""Secrets stay out of the portal's log output, and no portal changes logging it does not own: `portal-mcp serve`
adds the redaction to the handler it installs; an embedding application adds `portal.redactor.filter()` to its
own. Two portals in one process leave each other's (and the application's) handlers alone."""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import subprocess
import sys
from pathlib import Path

import anyio
import httpx2
import pytest

from portal_mcp.config import load_config
from portal_mcp.control.credentials import REDACTED
from portal_mcp.portal import Portal

NOISY_SERVER = Path(__file__).parent / "servers" / "noisy_server.py"
SNAPSHOT = Path(__file__).resolve().parents[1] / "schemas" / "time.json"


def write_config(path: Path, secret_var: str) -> Path:
    path.write_text(
        f"servers:\n  clock: {{snapshot: {SNAPSHOT}}}\n"
        f"  noisy:\n    command: {json.dumps(sys.executable)}\n    args: [{json.dumps(str(NOISY_SERVER))}]\n"
        f"    env: {{API_KEY: '${{{secret_var}}}'}}\n",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_served_portal_redacts_what_the_sdk_logs_about_a_downstream(tmp_path: Path, log_format: str) -> None:
    key = secrets.token_hex(12)
    config = write_config(tmp_path / "portal.yaml", "NOISY_KEY")
    result = subprocess.run(
        [sys.executable, "-m", "portal_mcp", "serve", "--config", str(config), "--log-format", log_format],
        stdin=subprocess.DEVNULL,  # stdio: the client is gone at once, so the portal starts and stops
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NOISY_KEY": key},
    )
    assert "Failed to parse JSONRPC message from server" in result.stderr, result.stderr
    assert "input_value={'jsonrpc': '2.0', 'leak'" in result.stderr and REDACTED in result.stderr
    assert key[:12] not in result.stderr and key[-12:] not in result.stderr  # pydantic quotes it cut short


async def test_two_portals_in_one_process_change_no_handler_and_each_output_redacts_its_own_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = {"A_KEY": secrets.token_hex(12), "B_KEY": secrets.token_hex(12)}
    for name, value in keys.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    config_a = load_config(write_config(tmp_path / "a" / "portal.yaml", "A_KEY"))
    config_b = load_config(write_config(tmp_path / "b" / "portal.yaml", "B_KEY"))
    root = logging.getLogger()
    assert root.handlers, "pytest's capture handlers: what a portal must leave alone"
    before = {handler: list(handler.filters) for handler in root.handlers}
    sdk_logger = logging.getLogger("mcp.client.stdio")  # a record the portal does not write itself
    outputs = {"a": io.StringIO(), "b": io.StringIO()}
    handlers = {name: logging.StreamHandler(stream) for name, stream in outputs.items()}
    with anyio.fail_after(60):
        async with Portal.open(config_a, catalog_only=True) as a:
            # The application's log output for each portal: the one place that portal's redaction goes.
            handlers["a"].addFilter(a.redactor.filter())
            sdk_logger.addHandler(handlers["a"])
            try:
                async with Portal.open(config_b, catalog_only=True) as b:
                    handlers["b"].addFilter(b.redactor.filter())
                    sdk_logger.addHandler(handlers["b"])
                    assert {h: list(h.filters) for h in root.handlers} == before
                    sdk_logger.error("both open: %s %s", keys["A_KEY"], keys["B_KEY"])
                    sdk_logger.removeHandler(handlers["b"])
                assert {h: list(h.filters) for h in root.handlers} == before
                sdk_logger.error("B closed: %s", keys["A_KEY"])
            finally:
                sdk_logger.removeHandler(handlers["a"])
    assert {h: list(h.filters) for h in root.handlers} == before
    a_text, b_text = outputs["a"].getvalue(), outputs["b"].getvalue()
    assert f"both open: {REDACTED} " in a_text and f"B closed: {REDACTED}" in a_text, a_text
    assert "both open: " in b_text and f" {REDACTED}" in b_text, b_text
    assert keys["A_KEY"] not in a_text and keys["B_KEY"] not in b_text


async def test_oauth_tokens_never_reach_the_log_the_audit_or_metrics(tmp_path: Path) -> None:
    """Good and refused OAuth tokens, an opaque one and a proxy assertion pass through a served portal: none of them
    (nor a JWT's signature alone) shows in its JSON log, its audit file or /metrics."""
    from tests.oauth_portal import (
        CAROL_TOKEN,
        PROXY_AUDIENCE,
        PROXY_HEADER,
        oauth_portal,
        opaque_resource,
        portal_resources,
    )
    from tests.oidc import OidcProvider
    from tests.portals import authorised_client
    from tests.servers import free_port

    port = free_port()
    with (
        OidcProvider.started(resources=portal_resources(port)) as idp,
        oauth_portal(tmp_path, idp, port, args=("--log-format", "json")) as portal,
    ):
        with anyio.fail_after(90):
            good = await idp.authorize("alice", resource=portal.resource)
            opaque = await idp.authorize("bob", resource=opaque_resource(port))
            expired = idp.sign(idp.claims("alice", resource=portal.resource, exp=1, iat=0))
            foreign = idp.sign(idp.claims("alice", resource="https://elsewhere.example/mcp"))
            assertion = idp.sign({**idp.claims("dana", aud=PROXY_AUDIENCE), "email": "dana@example.com"})
            tokens = [good["access_token"], good["refresh_token"], opaque["access_token"], expired, foreign, assertion]
            for token in (good["access_token"], opaque["access_token"]):
                async with authorised_client(portal.url, token) as client:
                    await client.call_tool("search_api", {"query": "current time"})
                    await client.call_tool(
                        "execute_code", {"code": "print(await time.get_current_time(timezone='UTC'))"}
                    )
            async with httpx2.AsyncClient(timeout=httpx2.Timeout(30)) as http:
                for token in (expired, foreign, good["refresh_token"], f"{good['access_token']}x"):
                    refused = await http.post(portal.url, json={}, headers={"Authorization": f"Bearer {token}"})
                    assert refused.status_code == 401
                await http.post(portal.url, json={}, headers={PROXY_HEADER: assertion})
                metrics = await http.get(f"{portal.base}/metrics", headers={"Authorization": f"Bearer {CAROL_TOKEN}"})
    assert metrics.status_code == 200
    places = {
        "log": portal.log.read_text(errors="replace"),
        "audit": (tmp_path / "audit.sqlite").read_bytes().decode("latin-1"),
        "metrics": metrics.text,
    }
    assert "token refused" in places["log"]  # the refusals were logged, with their reasons only
    assert 'user="other"' in places["metrics"] and "alice" in places["audit"]  # labels: configured users only
    for where, text in places.items():
        for token in tokens:
            for part in {token, *token.split(".")} - {""}:
                if len(part) >= 16:
                    assert part not in text, f"a token part is in the {where}"


def test_a_token_the_portal_obtains_while_running_is_redacted_by_the_filter_already_installed() -> None:
    """Users' OAuth tokens (`oauth:` servers) arrive after start-up, at each connect and refresh: the one Redactor
    the portal's log handler, replies and errors share learns them (`Redactor.add`)."""
    from portal_mcp.control.credentials import Redactor

    redactor = Redactor(["configured-" + secrets.token_hex(16)])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(redactor.filter())
    logger = logging.getLogger("portal_mcp.test_added_tokens")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        redactor.add([access, refresh])
        logger.warning("a server answered %s and %s", access, refresh)
        assert redactor.text(f"echo {access}") == f"echo {REDACTED}"
    finally:
        logger.removeHandler(handler)
    assert access not in stream.getvalue() and refresh not in stream.getvalue()
    assert stream.getvalue().count(REDACTED) == 2
