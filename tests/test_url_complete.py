"""A downstream server's `notifications/elicitation/complete` reaches the client of the run whose URL question it
ends (2025-11-25 clients), and only that: a completion for an id the server never asked about is not passed on.

Real parts: an in-process MCP server behind a real `Portal`, its `PortalServer` in front of a real SDK client of the
handshake era (the only one with the notification), in memory.
"""

from __future__ import annotations

from typing import Any

import anyio
import mcp_types as types
from mcp.client import Client
from mcp.client.session import ClientRequestContext
from mcp.server.mcpserver import Context, MCPServer

from portal_mcp.config import PortalConfig
from portal_mcp.downstream._asking import URLS_REMEMBERED
from portal_mcp.portal import Portal
from portal_mcp.surface.server import PortalServer

SIGN_IN_URL = "https://acme.example/authorize?session=42"


def acme() -> MCPServer:
    """Asks the user to sign in at a URL (id `acme-42`); once they accepted, says the sign-in is done. `forge` says
    another id is done, one it never asked about."""
    server = MCPServer("acme")

    @server.tool()
    async def sign_in(ctx: Context) -> str:
        """Sign in to Acme in the browser."""
        answer = await ctx.elicit_url("Sign in to Acme", SIGN_IN_URL, "acme-42")
        if answer.action == "accept":
            await ctx.session.send_elicit_complete("acme-42", related_request_id=ctx.request_id)
        return f"signed in: {answer.action}"

    @server.tool()
    async def forge(ctx: Context) -> str:
        """Claim that a sign-in nobody was asked for is done."""
        await ctx.session.send_elicit_complete("someone-elses-7", related_request_id=ctx.request_id)
        return "claimed"

    @server.tool()
    async def flood(ctx: Context, count: int) -> str:
        """Ask `count` URL questions and complete none until the end; then say the first and the last are done."""
        for number in range(count):
            await ctx.elicit_url("Sign in again", SIGN_IN_URL, f"flood-{number}")
        for number in (0, count - 1):
            await ctx.session.send_elicit_complete(f"flood-{number}", related_request_id=ctx.request_id)
        return "flooded"

    return server


class Person:
    """A 2025-11-25 client's side: accepts (or declines) URL questions, records the completions it is told of."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.questions: list[types.ElicitRequestParams] = []
        self.completed: list[str] = []

    async def elicit(self, context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.questions.append(params)
        return types.ElicitResult(action=self.answer)  # type: ignore[arg-type]

    async def messages(self, message: Any) -> None:
        if isinstance(message, types.ElicitCompleteNotification):
            self.completed.append(message.params.elicitation_id)


async def run(code: str, person: Person) -> str:
    config = PortalConfig.model_validate({"user": "ada"})
    with anyio.fail_after(60):
        async with (
            Portal.open(config, local={"acme": acme()}) as portal,
            Client(
                PortalServer(portal).server,
                mode="legacy",
                elicitation_callback=person.elicit,
                message_handler=person.messages,
            ) as client,
        ):
            result = await client.call_tool("execute_code", {"code": code})
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


async def test_the_servers_completion_of_an_accepted_url_question_reaches_the_client_with_its_id() -> None:
    person = Person("accept")
    text = await run("print(await acme.sign_in())", person)
    assert "signed in: accept" in text, text
    [question] = person.questions
    assert isinstance(question, types.ElicitRequestURLParams)
    assert (question.url, question.elicitation_id) == (SIGN_IN_URL, "acme-42")
    assert person.completed == ["acme-42"]  # before: the portal dropped the server's notification


async def test_a_completion_for_an_id_the_server_never_asked_about_is_not_passed_on() -> None:
    person = Person("accept")
    text = await run("print(await acme.forge())\nprint(await acme.sign_in())", person)
    assert "claimed" in text and "signed in: accept" in text, text
    assert person.completed == ["acme-42"]


async def test_a_declined_url_question_is_not_completed() -> None:
    person = Person("decline")
    text = await run("print(await acme.sign_in())", person)
    assert "signed in: decline" in text, text
    assert person.completed == []


async def test_a_server_that_never_completes_its_questions_cannot_grow_what_the_portal_remembers() -> None:
    person = Person("accept")
    count = URLS_REMEMBERED + 1
    text = await run(f"print(await acme.flood(count={count}))", person)
    assert "flooded" in text, text
    assert len(person.questions) == count
    # The oldest question was forgotten when the bound was passed: only the newest completion is passed on.
    assert person.completed == [f"flood-{count - 1}"]
