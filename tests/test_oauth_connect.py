""" "Connect your account" while a run waits (issue 15, point 3): a run calling an `oauth:` server its user has not
connected asks them, by URL-mode elicitation, to open the authorization URL, waits (its clock paused) until the
callback completed the connection, on this replica or another one, and goes on.

Real parts only: npm `oidc-provider` (tests/oidc.py), the SDK-built protected MCP server, real `portal-mcp serve`
processes, real MCP clients of both protocol generations whose elicitation callback hands the URL to a "browser"
(an HTTP client following the authorization server's redirects back to the portal's `/oauth/callback`).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp.client import Client
from mcp.client.session import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client

from portal_mcp.config import load_config
from portal_mcp.control.audit_store.pending import CLAIMED, EXPIRED, OK, WAITING, PendingFlows
from portal_mcp.control.credentials import HELD_GENERATIONS, REDACTED, Redactor
from portal_mcp.portal import Portal
from tests.oauth_downstream import browse_and_return, calls, connect, opened_store, protected_server, write_config
from tests.oidc import Client as OidcClient
from tests.oidc import OidcProvider, require_oidc_provider
from tests.portals import STARTUP_TIMEOUT, portal_command, started, wait_until_listening, wait_until_settled
from tests.servers import free_port

WHOAMI = "print((await protected.whoami())['sub'])"
BROWSER_DELAY = 4.0
"""Seconds before the browser comes back: longer than a run's whole wall clock (`sandbox.timeout: 3`)."""


def _text(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


class Person:
    """A client's elicitation callback and message handler: answers URL questions with `answer` and, when
    accepting, opens the URL in a browser (a task of `tasks`) after `delay` seconds as `user`."""

    def __init__(self, idp: OidcProvider, user: str, answer: str = "accept", delay: float = 0.0) -> None:
        self.idp, self.user, self.answer, self.delay = idp, user, answer, delay
        self.questions: list[types.ElicitRequestParams] = []
        self.completed: list[str] = []
        self.pages: list[httpx2.Response] = []
        self.tasks: anyio.abc.TaskGroup | None = None

    async def elicit(self, context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.questions.append(params)
        if self.answer == "accept" and isinstance(params, types.ElicitRequestURLParams):
            assert self.tasks is not None
            self.tasks.start_soon(self._browse, params.url)
        return types.ElicitResult(action=self.answer)  # type: ignore[arg-type]

    async def _browse(self, url: str) -> None:
        await anyio.sleep(self.delay)
        self.pages.append(await browse_and_return(self.idp, url, self.user))

    async def messages(self, message: Any) -> None:
        if isinstance(message, types.ElicitCompleteNotification):
            self.completed.append(message.params.elicitation_id)


@asynccontextmanager
async def client_of(url: str, token: str, person: Person | None, mode: str) -> AsyncIterator[Client]:
    options: dict[str, Any] = {"mode": mode}
    if person is not None:
        options |= {"elicitation_callback": person.elicit, "message_handler": person.messages}
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(60)) as http,
        Client(streamable_http_client(url, http_client=http), **options) as client,
        anyio.create_task_group() as tasks,
    ):
        if person is not None:
            person.tasks = tasks
        yield client


@asynccontextmanager
async def serving(path: Path, port: int, name: str) -> AsyncIterator[str]:
    log = path.parent / f"{name}.log"
    async with started(portal_command(path, "127.0.0.1", port), log) as process:
        with anyio.fail_after(STARTUP_TIMEOUT):
            await wait_until_listening(process, port, log)
            await wait_until_settled(log)
        yield f"http://127.0.0.1:{port}/mcp"


async def connect_config(
    idp: OidcProvider, folder: Path, url: str, callback_port: int, *, audit: str | None = None
) -> Path:
    """alice connected (her connection lists the server's tools), bob not; `protected` sends browsers back to the
    portal on `callback_port`; a run's wall clock is shorter than the browser takes."""
    redirect = f"http://127.0.0.1:{callback_port}/oauth/callback"
    path = write_config(folder, url, redirect_uri=redirect, **({"audit": audit} if audit else {}))
    path.write_text(path.read_text() + "sandbox: {timeout: 3}\n")
    await connect(idp, path, "alice")
    return path


def bob_token(path: Path) -> str:
    token = load_config(path).http.users["bob"].token
    assert token is not None
    return token


@pytest.fixture(autouse=True)
def _needs_provider() -> None:
    require_oidc_provider()


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_run_asks_its_user_to_connect_by_url_waits_for_the_sign_in_and_goes_on(
    tmp_path: Path, mode: str
) -> None:
    port = free_port()
    async with protected_server(tmp_path) as (idp, url, record):
        path = await connect_config(idp, tmp_path, url, port)
        bob = Person(idp, "bob", delay=BROWSER_DELAY)
        async with serving(path, port, "portal") as mcp, client_of(mcp, bob_token(path), bob, mode) as client:
            with anyio.fail_after(60):
                result = await client.call_tool("execute_code", {"code": WHOAMI})
            assert _text(result).strip() == "bob", _text(result)
            again = await client.call_tool("execute_code", {"code": WHOAMI})  # connected now: nobody is asked
            assert _text(again).strip() == "bob"
    [question] = bob.questions
    assert isinstance(question, types.ElicitRequestURLParams)
    assert question.url.startswith(idp.issuer) and "code_challenge_method=S256" in question.url
    assert question.message.startswith("[protected] Connect your account")
    assert [page.status_code for page in bob.pages] == [200]
    assert "Connected your account to protected" in bob.pages[0].text
    if mode == "legacy":  # 2025-11-25: the id the question carried comes back in notifications/elicitation/complete
        assert question.elicitation_id and bob.completed == [question.elicitation_id]
    else:  # 2026-07-28 has neither the id nor the notification
        assert bob.completed == []
    assert [call["sub"] for call in calls(record)] == ["bob", "bob"]


@pytest.mark.parametrize("answer", ["decline", "cancel", None])
async def test_a_user_who_declines_or_whose_client_cannot_open_urls_gets_the_error_naming_the_url(
    tmp_path: Path, answer: str | None
) -> None:
    port = free_port()
    async with protected_server(tmp_path) as (idp, url, record):
        path = await connect_config(idp, tmp_path, url, port)
        bob = Person(idp, "bob", answer=answer) if answer is not None else None
        async with serving(path, port, "portal") as mcp, client_of(mcp, bob_token(path), bob, "legacy") as client:
            with anyio.fail_after(60):
                text = _text(await client.call_tool("execute_code", {"code": WHOAMI}))
    assert "user 'bob' has not connected theirs yet" in text, text
    assert f"open {idp.issuer}" in text and "portal-mcp login protected --user bob" in text
    assert len(bob.questions if bob is not None else []) == (1 if answer is not None else 0)
    assert calls(record) == []


async def test_nobody_coming_back_from_the_sign_in_gives_the_error_once_the_flow_expires(tmp_path: Path) -> None:
    async with protected_server(tmp_path) as (idp, url, record):
        path = await connect_config(idp, tmp_path, url, free_port())
        path.write_text(path.read_text().replace("connections: {", "connections: {connect_wait: 1, "))
        async with Portal.open(load_config(path)) as portal:
            asked: list[types.ElicitRequestParams] = []

            async def elicit(question: Any) -> types.ElicitResult:
                asked.append(question.params)
                return types.ElicitResult(action="accept")  # ... and never opens the URL

            async def done(elicitation_id: str) -> None:
                raise AssertionError("nothing completed")

            run = await portal.start_run(WHOAMI, portal.principal("bob"), elicit=elicit, urls=done)
            with anyio.fail_after(30):
                text = (await run.wait()).render()
    assert len(asked) == 1
    assert "user 'bob' could not connect: nobody came back from the authorization server within 1 s" in text, text
    assert calls(record) == []


async def test_a_user_whose_grant_was_revoked_is_asked_to_reconnect_and_the_call_is_made_again(tmp_path: Path) -> None:
    async with protected_server(tmp_path) as (idp, url, record):
        path = await connect_config(idp, tmp_path, url, free_port())
        await connect(idp, path, "bob")
        async with Portal.open(load_config(path)) as portal:
            connector = portal.pool.accounts.connector
            assert connector is not None
            assert (await portal.execute_code(WHOAMI, portal.principal("bob"))).render().strip() == "bob"
            async with opened_store(load_config(path)) as store:
                stored = store.get("bob", "protected")
            assert stored is not None
            await idp.revoke(stored["tokens"]["refresh_token"], client=OidcClient(stored["client"]["client_id"]))
            asked: list[types.ElicitRequestParams] = []
            completed: list[str] = []

            async def elicit(question: Any) -> types.ElicitResult:  # bob's browser, back at the portal's callback
                asked.append(question.params)
                back = parse_qs(urlsplit(await idp.browse(question.params.url, "bob")).query)
                await connector.complete(back["state"][0], back["code"][0], back.get("iss", [None])[0])
                return types.ElicitResult(action="accept")

            async def done(elicitation_id: str) -> None:
                completed.append(elicitation_id)

            run = await portal.start_run(WHOAMI, portal.principal("bob"), elicit=elicit, urls=done)
            with anyio.fail_after(60):
                text = (await run.wait()).render()
    assert text.strip() == "bob", text
    assert len(asked) == 1 and completed == [asked[0].elicitation_id]  # type: ignore[union-attr]
    bobs = [call["token_sha256"] for call in calls(record) if call["sub"] == "bob"]
    assert len(bobs) == 2 and bobs[0] != bobs[1]  # the second call carries the new grant's token


async def test_the_callback_lands_on_another_replica_which_connects_the_user_and_the_waiting_run_goes_on(
    tmp_path: Path, pg_dsn: str
) -> None:
    one_port, two_port = free_port(), free_port()
    async with protected_server(tmp_path) as (idp, url, record):
        audit = f"audit: {{postgres: {json.dumps(pg_dsn)}}}"
        path = await connect_config(idp, tmp_path, url, two_port, audit=audit)  # browsers come back to replica two
        bob = Person(idp, "bob", delay=1.0)
        async with (
            serving(path, one_port, "one") as one,
            serving(path, two_port, "two"),
            client_of(one, bob_token(path), bob, "legacy") as client,
        ):
            with anyio.fail_after(60):
                result = await client.call_tool("execute_code", {"code": WHOAMI})  # runs on replica one
            assert _text(result).strip() == "bob", _text(result)
        two_log = (tmp_path / "two.log").read_text()
        one_log = (tmp_path / "one.log").read_text()
    assert "user 'bob' connected their account" in two_log  # the token exchange happened on replica two
    assert "user 'bob' connected their account" not in one_log
    assert len(bob.completed) == 1 and [page.status_code for page in bob.pages] == [200]
    assert [call["sub"] for call in calls(record)] == ["bob"]


async def test_a_pending_flow_is_sealed_single_use_and_expires(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, "http://127.0.0.1:9/mcp"))  # nothing is called
    async with opened_store(config) as store:
        pending = PendingFlows(store)
        state, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(64)
        key = pending.add("ana", "linear", state, {"verifier": verifier}, ttl=60)
        [(sealed,)] = store.query("SELECT sealed FROM oauth_pending", ())[0]
        assert verifier not in sealed and state not in sealed and state not in key
        assert pending.outcome(key) == WAITING
        assert pending.claim("another state") is None
        assert pending.claim(state) == (key, "ana", "linear", {"verifier": verifier})
        assert pending.outcome(key) == CLAIMED
        assert pending.claim(state) is None  # used once
        assert store.query("SELECT sealed FROM oauth_pending", ())[0] == [("",)]  # the verifier is gone
        pending.finish(key, None)
        assert pending.outcome(key) == OK
        late = secrets.token_urlsafe(32)
        expired = pending.add("ana", "linear", late, {"verifier": verifier}, ttl=0.2)
        await anyio.sleep(0.3)
        assert pending.outcome(expired) == EXPIRED and pending.claim(late) is None


def _token() -> str:
    return "At" + secrets.token_urlsafe(30)


def test_the_redaction_forgets_a_connections_tokens_once_expired_and_replaced_and_holds_a_bounded_number() -> None:
    fixed = "configured-Secret-4242-value"
    redactor = Redactor([fixed])
    ana, bob = ("oauth", "linear", "ana"), ("oauth", "linear", "bob")
    now = time.time()
    expired, refresh = _token(), _token()
    redactor.add([expired, refresh], holder=ana, expires_at=now - 1)
    assert redactor.text(expired) == REDACTED  # the newest generation is kept, even expired
    current = _token()
    redactor.add([current, refresh], holder=ana, expires_at=now + 300)
    assert redactor.text(expired) == expired  # expired and replaced: forgotten
    assert redactor.text(current) == REDACTED and redactor.text(refresh) == REDACTED
    bobs = _token()
    redactor.add([bobs], holder=bob, expires_at=now + 300)
    refreshed = [_token() for _ in range(50)]  # a day of refreshes, each still unexpired when replaced
    for token in refreshed:
        redactor.add([token], holder=ana, expires_at=now + 300)
    still = [token for token in [current, *refreshed] if redactor.text(token) == REDACTED]
    assert still == refreshed[-HELD_GENERATIONS:]
    assert redactor.text(bobs) == REDACTED and redactor.text(fixed) == REDACTED  # others untouched
    redactor.forget(ana)
    assert redactor.text(refreshed[-1]) == refreshed[-1] and redactor.text(bobs) == REDACTED
