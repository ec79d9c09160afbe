"""An approval prompt shows every argument the call will send, so nothing that matters hides behind a long one."""

from __future__ import annotations

import textwrap
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.server.mcpserver import MCPServer

from portal_mcp.config import PortalConfig
from portal_mcp.portal import Portal
from portal_mcp.runs.approval_text import arguments_digest, escape, render_arguments
from tests.test_policy import elicitation, era, run_with_client

__all__ = ["era"]  # the fixture, imported for its parametrisation over both protocol eras


def bank(received: list[dict[str, Any]]) -> MCPServer:
    server = MCPServer("bank")

    @server.tool(annotations=types.ToolAnnotations(destructive_hint=True))
    def pay(memo: str, to_account: str, amount: int) -> str:
        """Send a payment."""
        received.append({"memo": memo, "to_account": to_account, "amount": amount})
        return "paid"

    return server


async def test_a_long_memo_cannot_hide_the_account_and_amount_a_person_approves(era: str) -> None:
    memo = "Quarterly invoice, see attached. " * 20 + "\u2028\u202eTotal: 10 EUR"  # ~650 characters, then tricks
    code = textwrap.dedent(
        f"""
        print(await bank.pay(memo={memo!r}, to_account="DE89-ATTACKER", amount=990000))
        """
    )
    asked: list[str] = []
    received: list[dict[str, Any]] = []
    accept = elicitation(lambda _: types.ElicitResult(action="accept", content={"approve": True}), asked)
    config = PortalConfig.model_validate({"user": "alice", "policy": {"default": {"approve": "destructive"}}})
    with anyio.fail_after(60):
        async with Portal.open(config, local={"bank": bank(received)}) as portal:
            text = await run_with_client(portal, code, accept, era)

    assert "paid" in text, text
    [prompt] = asked
    assert 'to_account = "DE89-ATTACKER"' in prompt and "amount = 990000" in prompt
    assert "more characters]" in prompt  # the memo alone was cut
    assert "\u2028" not in prompt and "\u202e" not in prompt
    assert f"Fingerprint: {arguments_digest(received[0])[:16]}" in prompt


def test_every_character_that_can_hide_or_reorder_text_is_escaped() -> None:
    hiding = "a\u2028b\u2029c\u202ed\u200be\x1bf\rg\u2066h"
    assert escape(hiding) == "a\\u2028b\\u2029c\\u202ed\\u200be\\u001bf\\u000dg\\u2066h"
    assert escape("plain ascii and ünïcödé") == "plain ascii and ünïcödé"
    lines = render_arguments({"a\u202eb": "x" * 1000, "short": 1}).splitlines()
    assert lines[0].startswith("  a\\u202eb = ") and lines[0].endswith("[802 more characters]")
    assert lines[1] == "  short = 1"


@pytest.mark.parametrize("changed", [{"amount": 1}, {"amount": 2, "extra": None}])
def test_the_fingerprint_covers_every_argument(changed: dict[str, Any]) -> None:
    assert arguments_digest({"amount": 2}) != arguments_digest(changed)
    assert arguments_digest({"a": 1, "b": 2}) == arguments_digest({"b": 2, "a": 1})
