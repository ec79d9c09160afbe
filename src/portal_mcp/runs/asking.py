"""The questions a run puts to its user: the portal's approvals, and the questions downstream servers ask.

Both travel as MCP elicitation: an approval as a form with one box (`APPROVAL_SCHEMA`), a downstream's question as
the server sent it (a form with its schema, or a URL to open), its message prefixed with the server's name so the
person knows who asks. `Question.request()` is what a 2026-07-28 client gets inside an `InputRequiredResult`;
`Question.ask(session, related)` sends it as a server request to a handshake-era client.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Protocol

import mcp_types as types

from portal_mcp.control.audit import Verdict
from portal_mcp.runs.bridge import ApprovalRequest

APPROVAL_SCHEMA: types.ElicitRequestedSchema = {
    "type": "object",
    "properties": {"approve": {"type": "boolean", "title": "Allow this call", "default": True}},
    "required": ["approve"],
}


def verdict_of(answer: types.ElicitResult) -> Verdict:
    if answer.action == "accept":
        # Fail closed: only an explicit yes approves (an unticked box may arrive as null, "false", 0 or nothing).
        return "approved" if (answer.content or {}).get("approve") is True else "declined"
    return "declined" if answer.action == "decline" else "cancelled"


@dataclass(frozen=True)
class Elicitation:
    """A downstream server's question, asked during one of the run's calls."""

    server: str
    params: types.ElicitRequestParams

    def forwarded(self) -> types.ElicitRequestParams:
        """The question as the user's client gets it: the same, its message saying which server asks."""
        message = f"[{self.server}] {self.params.message}"
        return self.params.model_copy(update={"message": message, "meta": None, "task": None})


class Sender(Protocol):
    """The part of an MCP server session that asks the client (`ctx.session`)."""

    async def elicit_form(
        self, message: str, requested_schema: types.ElicitRequestedSchema, related_request_id: Any = None
    ) -> types.ElicitResult: ...

    async def elicit_url(
        self, message: str, url: str, elicitation_id: str, related_request_id: Any = None
    ) -> types.ElicitResult: ...


def request_of(question: ApprovalRequest | Elicitation) -> types.ElicitRequest:
    """The question as an `elicitation/create` request (what an `InputRequiredResult` carries)."""
    if isinstance(question, Elicitation):
        return types.ElicitRequest(params=question.forwarded())
    return types.ElicitRequest(
        params=types.ElicitRequestFormParams(message=question.message(), requested_schema=APPROVAL_SCHEMA)
    )


async def send(session: Sender, question: Elicitation, related: Any) -> types.ElicitResult:
    """Ask a handshake-era client a downstream's question with a server request; returns its answer."""
    params = question.forwarded()
    if isinstance(params, types.ElicitRequestURLParams):
        # Required at 2025-11-25, absent from a 2026-07-28 server's question: then the portal names it.
        elicitation_id = params.elicitation_id or secrets.token_urlsafe(12)
        return await session.elicit_url(params.message, params.url, elicitation_id, related_request_id=related)
    return await session.elicit_form(params.message, params.requested_schema, related_request_id=related)
