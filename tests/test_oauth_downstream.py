"""The portal as each user's OAuth client to a remote server (`oauth:`): every user connects their own account and
every call carries that user's token.

Real parts only: npm `oidc-provider` (tests/oidc.py) as the authorization server, tests/servers/oauth_server.py
(the SDK's resource-server support, tokens checked by introspection) as the protected MCP server, the sandbox, and
the SQLite or PostgreSQL state database. The browser is the test: it follows the authorization URLs the portal
hands out (`OidcProvider.browse`).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from portal_mcp.config import PortalConfig, load_config
from portal_mcp.config import parse_config as parse
from portal_mcp.errors import AuditStoreError, ConfigError
from portal_mcp.portal import Portal
from tests.oauth_downstream import (
    browse_and_return,
    calls,
    connect,
    opened_store,
    protected_server,
    write_config,
)
from tests.oidc import Client, require_oidc_provider
from tests.portals import (
    STARTUP_TIMEOUT,
    authorised_client,
    portal_command,
    started,
    wait_until_listening,
    wait_until_settled,
)
from tests.servers import free_port


@pytest.fixture(autouse=True)
def _needs_provider() -> None:
    require_oidc_provider()


WHOAMI = "print((await protected.whoami())['sub'])"


async def test_two_users_each_connect_their_own_account_and_each_call_carries_their_token(tmp_path: Path) -> None:
    async with protected_server(tmp_path) as (idp, url, record):
        path = write_config(tmp_path, url)
        await connect(idp, path, "alice")
        await connect(idp, path, "bob")
        async with Portal.open(load_config(path)) as portal:
            for user in ("alice", "bob", "alice"):
                outcome = await portal.execute_code(WHOAMI, portal.principal(user))
                assert outcome.render().strip() == user
    seen = calls(record)
    assert [call["sub"] for call in seen] == ["alice", "bob", "alice"]
    assert seen[0]["token_sha256"] == seen[2]["token_sha256"] != seen[1]["token_sha256"]


async def test_a_token_that_expires_mid_session_is_refreshed_and_the_run_goes_on(tmp_path: Path) -> None:
    async with protected_server(tmp_path, ttl=2) as (idp, url, record):
        path = write_config(tmp_path, url)
        await connect(idp, path, "alice")
        async with Portal.open(load_config(path)) as portal:
            code = f"import asyncio\n{WHOAMI}\nawait asyncio.sleep(3)\n{WHOAMI}"
            outcome = await portal.execute_code(code, portal.principal("alice"))
            assert outcome.render().split() == ["alice", "alice"], outcome.render()
    seen = [call for call in calls(record) if call["tool"] == "whoami"]
    assert len(seen) == 2 and seen[0]["token_sha256"] != seen[1]["token_sha256"]  # a new token after the refresh


async def test_a_user_who_has_not_connected_is_told_how_and_others_are_not_affected(tmp_path: Path) -> None:
    async with protected_server(tmp_path) as (idp, url, record):
        path = write_config(tmp_path, url)
        await connect(idp, path, "alice")
        async with Portal.open(load_config(path)) as portal:
            outcome = await portal.execute_code(WHOAMI, portal.principal("bob"))
            text = outcome.render()
            assert "user 'bob' has not connected theirs yet" in text
            assert "portal-mcp login protected --user bob" in text
            assert (await portal.execute_code(WHOAMI, portal.principal("alice"))).render().strip() == "alice"
    assert [call["sub"] for call in calls(record)] == ["alice"]


async def test_a_revoked_grant_gives_a_reconnect_message_and_reconnecting_restores_the_calls(tmp_path: Path) -> None:
    async with protected_server(tmp_path) as (idp, url, _record):
        path = write_config(tmp_path, url)
        await connect(idp, path, "alice")
        await connect(idp, path, "bob")
        config = load_config(path)
        async with Portal.open(config) as portal:
            assert (await portal.execute_code(WHOAMI, portal.principal("bob"))).render().strip() == "bob"
            async with opened_store(config) as store:
                record = store.get("bob", "protected")
            assert record is not None
            # Bob withdraws the portal's access at the authorization server (revoking the refresh token ends the grant).
            await idp.revoke(record["tokens"]["refresh_token"], client=Client(record["client"]["client_id"]))
            text = (await portal.execute_code(WHOAMI, portal.principal("bob"))).render()
            assert "no longer accepted (the grant was revoked or expired): reconnect" in text, text
            assert "portal-mcp login protected --user bob" in text
            assert (await portal.execute_code(WHOAMI, portal.principal("alice"))).render().strip() == "alice"
            await connect(idp, path, "bob")
            assert (await portal.execute_code(WHOAMI, portal.principal("bob"))).render().strip() == "bob"


async def test_the_stored_connection_is_sealed_and_opens_only_for_its_user_and_key(tmp_path: Path) -> None:
    async with protected_server(tmp_path) as (idp, url, _record):
        path = write_config(tmp_path, url)
        await connect(idp, path, "alice")
        config = load_config(path)
        async with opened_store(config) as store:
            record = store.get("alice", "protected")
            raw = store.raw("alice", "protected")
            assert record is not None and raw is not None
            tokens = record["tokens"]
            for secret in (tokens["access_token"], tokens["refresh_token"]):
                assert secret not in raw
            assert "alice" not in raw and "access_token" not in raw
            store._put("bob", "protected", raw, 0.0)  # alice's row copied to bob does not open
            with pytest.raises(AuditStoreError, match="cannot be opened"):
                store.get("bob", "protected")
    wrong = path.read_text().replace('"${CONNECTIONS_KEY}"', '"another-key-of-at-least-32-characters!"')
    path.write_text(wrong)
    async with opened_store(load_config(path)) as store:
        with pytest.raises(AuditStoreError, match=r"another `connections\.key`"):
            store.get("alice", "protected")


async def test_tokens_reach_no_reply_log_or_audit_record(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with protected_server(tmp_path) as (idp, url, _record):
        path = write_config(tmp_path, url)
        await connect(idp, path, "alice")
        config = load_config(path)
        async with Portal.open(config) as portal:
            code = "r = await protected.whoami()\nprint(r)\nprint(await protected.echo(text=str(r)))"
            reply = (await portal.execute_code(code, portal.principal("alice"))).render()
            async with opened_store(config) as store:
                record = store.get("alice", "protected")
            assert record is not None
            tokens = [record["tokens"]["access_token"], record["tokens"]["refresh_token"]]
            logged = caplog.text  # below, agent code itself holds the token (and the SDK logs its arguments)
            echoed = await portal.execute_code(f"print(await protected.echo(text={tokens[0]!r}))", portal.local)
            metrics = portal.metrics.exposition()[0].decode()
        audit = (tmp_path / "audit.sqlite").read_bytes()
    assert "alice" in reply
    assert tokens[0] not in echoed.render()  # a server echoing the user's token back is redacted
    for token in tokens:
        assert token not in reply
        assert token not in logged
        assert token.encode() not in audit
        assert token not in metrics


def test_oauth_servers_need_a_connections_key_and_a_valid_redirect(tmp_path: Path) -> None:
    def parse_config(text: str) -> object:
        return parse(text, source="portal.yaml", base_dir=tmp_path, environ={})

    server = "servers:\n  linear:\n    url: https://mcp.example.com/mcp\n    oauth: {}\n"
    with pytest.raises(ConfigError, match=re.escape("connections: {key:")):
        parse_config(server)
    with pytest.raises(ConfigError, match="at least 32 characters"):
        parse_config(server + "connections: {key: short}\n")
    bad = server.replace("{}", "{redirect_uri: 'https://portal.example.com/elsewhere'}")
    with pytest.raises(ConfigError, match="must be the portal's callback URL"):
        parse_config(bad + f"connections: {{key: {'x' * 40}}}\n")
    config = parse(server + f"connections: {{key: {'x' * 40}}}\n", source="p", base_dir=tmp_path, environ={})
    assert config.oauth_servers()["linear"].scopes == []
    assert config.connections.connect_wait == 600
    waiting = parse_config(server + f"connections: {{key: {'x' * 40}, connect_wait: 120}}\n")
    assert isinstance(waiting, PortalConfig) and waiting.connections.connect_wait == 120
    for bad, said in (("0", "must be between 1 and 86400 seconds"), ("100000", "must be between 1 and 86400"),
                      ("ten", "connect_wait")):  # fmt: skip
        with pytest.raises(ConfigError, match=said) as refused:
            parse_config(server + f"connections: {{key: {'x' * 40}, connect_wait: {bad}}}\n")
        assert "connect_wait" in str(refused.value) and "portal.yaml:" in str(refused.value), refused.value


async def test_two_replicas_on_one_postgresql_share_every_users_connection(tmp_path: Path, pg_dsn: str) -> None:
    async with protected_server(tmp_path, ttl=2) as (idp, url, record):
        path = write_config(tmp_path, url, audit=f"audit: {{postgres: {json.dumps(pg_dsn)}}}")
        await connect(idp, path, "alice")
        async with Portal.open(load_config(path)) as one, Portal.open(load_config(path)) as two:
            assert (await one.execute_code(WHOAMI, one.principal("alice"))).render().strip() == "alice"
            await connect(idp, path, "bob")  # while both run: connected through neither of them
            assert (await two.execute_code(WHOAMI, two.principal("bob"))).render().strip() == "bob"
            await anyio.sleep(2.5)  # alice's token expires: one replica refreshes it, the other uses the new one
            for replica in (two, one, two):
                assert (await replica.execute_code(WHOAMI, replica.principal("alice"))).render().strip() == "alice"
    alice = [call["token_sha256"] for call in calls(record) if call["sub"] == "alice"]
    assert len(alice) == 4 and alice[0] != alice[1] == alice[2] == alice[3]


async def test_a_token_the_server_ends_before_its_expiry_is_refreshed_on_the_401(tmp_path: Path) -> None:
    async with protected_server(tmp_path) as (idp, url, record):
        path = write_config(tmp_path, url)
        await connect(idp, path, "alice")
        config = load_config(path)
        async with Portal.open(config) as portal:
            assert await whoami(portal, "alice") == "alice"
            # The server refuses the access token while the portal's expiry says it is good for minutes (clock
            # skew, an expiry rounded down to the second); the grant and its refresh token are still good.
            await store_refused_token(config, "alice")
            assert await whoami(portal, "alice") == "alice"
    seen = [call["token_sha256"] for call in calls(record)]
    assert len(seen) == 2 and seen[0] != seen[1]


async def whoami(portal: Portal, user: str) -> str:
    """Who the protected server says `user`'s call through `portal` was (or the error the run printed)."""
    return (await portal.execute_code(WHOAMI, portal.principal(user))).render().strip()


async def store_refused_token(config: PortalConfig, user: str) -> None:
    """Put a token the server refuses in `user`'s stored connection (`refused_token`), their grant untouched."""
    async with opened_store(config) as store:
        stored = store.get(user, "protected")
        assert stored is not None
        store.put(user, "protected", refused_token(stored))


def refused_token(stored: dict[str, Any]) -> dict[str, Any]:
    """`stored` with an access token the server does not accept, good for an hour by its recorded expiry."""
    tokens = {**stored["tokens"], "access_token": "refused-" + secrets.token_hex(16)}
    return {**stored, "tokens": tokens, "expires_at": time.time() + 3600}


@pytest.mark.parametrize("why", ["expired", "refused"])
async def test_replicas_refreshing_one_connection_at_once_refresh_it_once_and_all_use_the_new_token(
    tmp_path: Path, pg_dsn: str, why: str
) -> None:
    async with protected_server(tmp_path) as (idp, url, record):
        path = write_config(tmp_path, url, audit=f"audit: {{postgres: {json.dumps(pg_dsn)}}}")
        await connect(idp, path, "alice")
        config = load_config(path)
        async with Portal.open(config) as one, Portal.open(config) as two:
            for replica in (one, two):
                assert (await replica.execute_code(WHOAMI, replica.principal("alice"))).render().strip() == "alice"
            async with opened_store(config) as store:
                stored = store.get("alice", "protected")
                assert stored is not None
                if why == "expired":  # by the expiry both replicas read from the store before their next call
                    store.put("alice", "protected", {**stored, "expires_at": 1.0})
                else:  # by the server: every replica's next call gets a 401
                    store.put("alice", "protected", refused_token(stored))
            replies: list[str] = []

            async def whoami(replica: Portal) -> None:
                replies.append((await replica.execute_code(WHOAMI, replica.principal("alice"))).render().strip())

            async with anyio.create_task_group() as tasks:
                for replica in (one, two, one, two, one, two):
                    tasks.start_soon(whoami, replica)
        async with opened_store(config) as store:
            after = store.get("alice", "protected")
    assert replies == ["alice"] * 6, replies
    assert after is not None and after["tokens"]["refresh_token"] != stored["tokens"]["refresh_token"]
    seen = [call["token_sha256"] for call in calls(record)]
    assert len(seen) == 8 and seen[0] == seen[1] and len(set(seen[2:])) == 1 and seen[2] != seen[0], seen


async def test_a_remote_user_connects_through_the_url_in_the_reply_and_the_portal_serves_the_callback(
    tmp_path: Path,
) -> None:
    port = free_port()
    async with protected_server(tmp_path) as (idp, url, record):
        path = write_config(tmp_path, url, redirect_uri=f"http://127.0.0.1:{port}/oauth/callback")
        await connect(idp, path, "alice")
        bob = load_config(path).http.users["bob"].token
        assert bob is not None
        log = tmp_path / "portal.log"
        async with started(portal_command(path, "127.0.0.1", port), log) as process:
            with anyio.fail_after(STARTUP_TIMEOUT):
                await wait_until_listening(process, port, log)
                await wait_until_settled(log)
            async with authorised_client(f"http://127.0.0.1:{port}/mcp", bob) as client:
                first = await client.call_tool("execute_code", {"code": WHOAMI})
                text = first.content[0].text  # type: ignore[union-attr]
                found = re.search(r"open (http://\S+) in a browser to connect", text)
                assert found is not None, text
                second = await client.call_tool("execute_code", {"code": WHOAMI})  # the same link while it waits
                assert found.group(1) in second.content[0].text  # type: ignore[union-attr]
                page = await browse_and_return(idp, found.group(1), "bob")  # bob's browser comes back to the portal
                assert page.status_code == 200 and "Connected your account to protected" in page.text
                again = await client.call_tool("execute_code", {"code": WHOAMI})
                assert again.content[0].text.strip() == "bob"  # type: ignore[union-attr]
                replayed = await browse_and_return(idp, found.group(1), "bob")  # a used link connects nobody
                assert replayed.status_code == 400
    assert [call["sub"] for call in calls(record)] == ["bob"]


async def test_connections_lists_accounts_and_revoke_ends_the_grant_at_the_authorization_server(
    tmp_path: Path,
) -> None:
    async with protected_server(tmp_path) as (idp, url, _record):
        path = write_config(tmp_path, url)
        await connect(idp, path, "alice")
        await connect(idp, path, "bob")
        async with opened_store(load_config(path)) as store:
            tokens = (store.get("alice", "protected") or {})["tokens"]
        assert (await idp.introspect(tokens["access_token"]))["active"] is True

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            command = [sys.executable, "-m", "portal_mcp", *args, "--config", str(path)]
            return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

        listed = await anyio.to_thread.run_sync(cli, "connections")
        assert listed.returncode == 0 and "alice" in listed.stdout and "bob" in listed.stdout
        revoked = await anyio.to_thread.run_sync(cli, "connections", "--revoke", "protected", "--user", "alice")
        assert revoked.returncode == 0, revoked.stderr
        assert "Revoked 'alice' to 'protected'" in revoked.stdout
        assert (await idp.introspect(tokens["access_token"]))["active"] is False
        after = await anyio.to_thread.run_sync(cli, "connections")
        assert "alice" not in after.stdout and "bob" in after.stdout
        for token in (tokens["access_token"], tokens["refresh_token"]):
            assert token not in listed.stdout + listed.stderr + revoked.stdout + revoked.stderr


async def test_a_refresh_the_provider_cannot_serve_just_now_keeps_the_connection_and_says_try_again(
    tmp_path: Path,
) -> None:
    async with protected_server(tmp_path) as (idp, url, record):
        path = write_config(tmp_path, url)
        await connect(idp, path, "alice")
        config = load_config(path)
        async with Portal.open(config) as portal:
            assert await whoami(portal, "alice") == "alice"
            await store_refused_token(config, "alice")  # the next call needs a refresh
            await idp.outage(503, times=1)
            text = await whoami(portal, "alice")
            assert "the connection ended" not in text and "the call was not sent" in text, text
            assert "HTTP 503" in text and "run the code again shortly" in text, text
            assert "reconnect" not in text and "portal-mcp login" not in text, text
            assert await whoami(portal, "alice") == "alice"  # the provider is back: refreshed, no new sign-in
    seen = [call["token_sha256"] for call in calls(record)]
    assert len(seen) == 2 and seen[0] != seen[1]


async def test_tokens_refreshed_while_the_store_cannot_take_them_are_kept_and_stored_once_it_can(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The provider rotates refresh tokens: once a refresh succeeds, the stored refresh token is spent. Tokens the
    # store cannot take at that moment must not be dropped (a restart would then find only the spent one, and the
    # grant would be gone): the call goes on with them, and they are written as soon as the store takes writes.
    async with protected_server(tmp_path) as (idp, url, record):
        # The connections in a file of their own: the audit log (in memory here) keeps being written meanwhile.
        path = write_config(tmp_path, url, audit="", connections="sqlite: connections.sqlite")
        await connect(idp, path, "alice")
        config = load_config(path)
        async with Portal.open(config) as portal:
            assert await whoami(portal, "alice") == "alice"
            await store_refused_token(config, "alice")  # the next call gets a 401 and refreshes
            with writes_refused(tmp_path / "connections.sqlite"), caplog.at_level(logging.WARNING):
                assert await whoami(portal, "alice") == "alice"
            assert "refreshed tokens are held in memory until the store takes them" in caplog.text
            assert await whoami(portal, "alice") == "alice"  # written before this call went out
            async with opened_store(config) as store:
                stored = store.get("alice", "protected")
                assert stored is not None
                # A restart after the access token expired refreshes from what the store holds.
                store.put("alice", "protected", {**stored, "expires_at": 1.0})
        async with Portal.open(config) as restarted:
            assert await whoami(restarted, "alice") == "alice"
    seen = [call["token_sha256"] for call in calls(record)]
    assert len(seen) == 4 and seen[0] != seen[1] == seen[2] != seen[3], seen


@contextmanager
def writes_refused(database: Path) -> Iterator[None]:
    """Another process holding `database`'s write lock: the portal's writes there fail once their busy timeout
    ends, while reads go on (WAL)."""
    assert database.is_file()
    holder = sqlite3.connect(database, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


async def test_an_account_the_server_forbids_is_told_so_and_others_are_not_affected(tmp_path: Path) -> None:
    async with protected_server(tmp_path, forbid="bob") as (idp, url, record):
        path = write_config(tmp_path, url)
        await connect(idp, path, "alice")
        await connect(idp, path, "bob")
        async with Portal.open(load_config(path)) as portal:
            text = (await portal.execute_code(WHOAMI, portal.principal("bob"))).render()
            refusals = len([call for call in calls(record) if "refused" in call])
            # Not retried in the background (the first retry would come 2 s after the refusal, the next 4 s later):
            # the same account would be refused again, and a server may lock an account that keeps knocking.
            await anyio.sleep(7)
            again = await whoami(portal, "bob")
            assert await whoami(portal, "alice") == "alice"
    assert "HTTP 403 Forbidden; the server does not let this user's connected account in" in text, text
    assert refusals >= 1 and len([call for call in calls(record) if "refused" in call]) == refusals
    assert "not retried in the background, since the same account would be refused again" in again, again
    assert "headers:" not in text  # before: "check the credentials in `headers:`", which an oauth: server has none of
