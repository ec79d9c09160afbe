"""The bridge: nothing leaves the portal unless it names a real tool with arguments its schema accepts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult, ImageContent, TextContent

from portal_mcp.catalog.model import Catalog
from portal_mcp.catalog.schemas import Validators, drop_omitted
from portal_mcp.config import LimitsConfig
from portal_mcp.control.audit import MemoryAuditSink
from portal_mcp.control.budgets import Budgets
from portal_mcp.control.credentials import Redactor
from portal_mcp.control.principal import Principal
from portal_mcp.downstream import DownstreamPool
from portal_mcp.errors import ArgumentError, ToolFailedError, UnknownToolError
from portal_mcp.runs.bridge import Bridge, Caller, result_value

BUDGETS = Budgets(LimitsConfig(), max_result_bytes=2_000_000)


def make_tracker() -> tuple[MCPServer, list[dict[str, Any]]]:
    server = MCPServer("tracker")
    received: list[dict[str, Any]] = []

    @server.tool()
    def create_issue(title: str, priority: int, labels: list[str] | None = None) -> dict[str, Any]:
        """Create an issue."""
        received.append({"title": title, "priority": priority, "labels": labels})
        return {"id": len(received), "title": title}

    @server.tool()
    def count(text: str) -> int:
        """A scalar result, which MCPServer wraps as structured content `{"result": ...}`."""
        return len(text)

    @server.tool(structured_output=False)
    def note(text: str) -> str:
        """Plain text result."""
        return f"noted {text}"

    return server, received


ADA = Caller(Principal.unrestricted("ada"))


@pytest.fixture
async def bridge() -> AsyncIterator[tuple[Bridge, list[dict[str, Any]], MemoryAuditSink]]:
    server, received = make_tracker()
    audit = MemoryAuditSink()
    with anyio.fail_after(30):
        async with DownstreamPool({}, local={"tracker": server}) as pool:
            catalog = Catalog.build(pool.listings())
            yield (
                Bridge(lambda: catalog, pool, audit, Redactor(), Validators(), approval_timeout=5.0, budgets=BUDGETS),
                received,
                audit,
            )


async def test_a_valid_call_reaches_the_server_and_returns_structured_content(bridge: Any) -> None:
    calls, received, audit = bridge
    value = await calls.call("tracker.create_issue", {"title": "Login broken", "priority": 1}, caller=ADA)
    assert value == {"id": 1, "title": "Login broken"}
    assert received == [{"title": "Login broken", "priority": 1, "labels": None}]
    event = list(audit)[-1]
    assert (event.kind, event.user, event.subject, event.outcome) == ("call", "ada", "tracker.create_issue", "ok")


@pytest.mark.parametrize(
    ("arguments", "field", "problem"),
    [
        ({"title": "x"}, "priority", "is required"),
        ({"title": "x", "priority": "high"}, "priority", "expected integer"),
        ({"title": "x", "priority": 1, "labels": "bug"}, "labels", ""),
        ({"title": "x", "priority": 1, "labels": ["ok", 3]}, "labels.1", "expected string"),
    ],
)
async def test_invalid_arguments_are_refused_before_the_call_and_name_the_field(
    bridge: Any, arguments: dict[str, Any], field: str, problem: str
) -> None:
    calls, received, audit = bridge
    with pytest.raises(ArgumentError) as info:
        await calls.call("tracker.create_issue", arguments, caller=ADA)
    assert info.value.field == field
    assert problem in info.value.problem
    assert f"argument {field!r}" in str(info.value)
    assert received == []
    assert list(audit)[-1].outcome == "refused"


async def test_an_unknown_tool_is_refused_with_near_names(bridge: Any) -> None:
    calls, _, _ = bridge
    with pytest.raises(UnknownToolError) as info:
        await calls.call("tracker.create_isue", {}, caller=ADA)
    assert "tracker.create_issue" in info.value.suggestions


async def test_a_tool_name_that_is_not_exactly_a_str_is_refused(bridge: Any) -> None:
    calls, received, _ = bridge

    class Liar(str):
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = str.__hash__

    with pytest.raises(UnknownToolError):
        await calls.call(Liar("tracker.nothing"), {"title": "x", "priority": 1}, caller=ADA)
    assert received == []


async def test_optional_arguments_passed_as_none_are_omitted(bridge: Any) -> None:
    calls, received, _ = bridge
    await calls.call("tracker.create_issue", {"title": "x", "priority": 2, "labels": None}, caller=ADA)
    assert received[-1]["labels"] is None


def test_none_is_kept_where_the_schema_accepts_null_and_dropped_where_it_does_not() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
        "required": [],
    }
    assert drop_omitted(schema, {"a": None, "b": None}) == {"b": None}


def test_results_follow_the_contract() -> None:
    def result(*texts: str, structured: Any = None, error: bool = False) -> CallToolResult:
        return CallToolResult(
            content=[TextContent(text=text) for text in texts], structured_content=structured, is_error=error
        )

    assert result_value("s.t", result("ignored", structured={"a": 1})) == {"a": 1}
    assert result_value("s.t", result('{"rows": [1, 2]}')) == {"rows": [1, 2]}
    assert result_value("s.t", result("plain words")) == "plain words"
    with pytest.raises(ToolFailedError, match="rate limited"):
        result_value("s.t", result("rate limited", error=True))
    image = CallToolResult(content=[ImageContent(data="aGk=", mime_type="image/png")])
    assert result_value("s.t", image) == [{"type": "image", "data": "aGk=", "mimeType": "image/png"}]


async def test_a_plain_text_result_comes_back_as_text(bridge: Any) -> None:
    calls, _, _ = bridge
    assert await calls.call("tracker.note", {"text": "hi"}, caller=ADA) == "noted hi"


async def test_structured_content_is_returned_as_the_server_sent_it(bridge: Any) -> None:
    calls, _, _ = bridge
    assert await calls.call("tracker.count", {"text": "four"}, caller=ADA) == {"result": 4}


async def test_the_audit_keeps_the_kind_of_a_failure_but_never_its_message(bridge: Any) -> None:
    calls, _, audit = bridge
    with pytest.raises(ArgumentError):
        await calls.call(
            "tracker.create_issue", {"title": "secret-title-value", "priority": "secret-priority"}, caller=ADA
        )
    event = list(audit)[-1]
    assert event.detail == "ArgumentError field=priority"
    assert "secret" not in repr(event)


async def test_the_audit_records_the_size_of_what_the_downstream_sent(bridge: Any) -> None:
    calls, _, audit = bridge
    await calls.call("tracker.note", {"text": "hi"}, caller=ADA)
    assert list(audit)[-1].size_out == len(b"noted hi")


def nested(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


async def test_arguments_nested_deeper_than_a_call_can_carry_are_refused_by_name_not_failed_inside() -> None:
    server = MCPServer("store")
    received: list[Any] = []

    @server.tool()
    def put(value: Any) -> str:
        """Store any JSON value."""
        received.append(value)
        return "stored"

    audit = MemoryAuditSink()
    with anyio.fail_after(30):
        async with DownstreamPool({}, local={"store": server}) as pool:
            catalog = Catalog.build(pool.listings())
            calls = Bridge(
                lambda: catalog, pool, audit, Redactor(), Validators(), approval_timeout=5.0, budgets=BUDGETS
            )
            assert await calls.call("store.put", {"value": nested(150)}, caller=ADA) == {"result": "stored"}
            # 600 levels: the SDK's serializer refused the message and the call ended as an internal error.
            with pytest.raises(ArgumentError) as info:
                await calls.call("store.put", {"value": nested(600)}, caller=ADA)
    assert "nest 601 levels deep, over the 200 a call can carry" in str(info.value)
    assert len(received) == 1
    assert [event.outcome for event in audit] == ["ok", "refused"]
