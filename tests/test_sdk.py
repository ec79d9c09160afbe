"""The SDK internals the portal reads (portal_mcp.sdk) are still where it reads them: an SDK upgrade that moves one
fails here, not as silently missing log notifications."""

from __future__ import annotations

import contextvars
import io
import typing
from typing import Any

import anyio
import mcp_types as types
from mcp.client import Client
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.stdio import stdio_server

from portal_mcp import sdk


def recording_server(seen: list[tuple[sdk.Connection | None, sdk.Connection | None]]) -> Server[Any]:
    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        seen.append((sdk.connection_of(ctx.session), sdk.lasting_connection(ctx.session)))
        return types.ListToolsResult(tools=[])

    return Server("recorder", on_list_tools=list_tools)


async def test_a_session_request_comes_on_a_lasting_connection_with_a_channel() -> None:
    seen: list[tuple[sdk.Connection | None, sdk.Connection | None]] = []
    with anyio.fail_after(30):
        async with Client(recording_server(seen), mode="legacy") as client:
            await client.list_tools()
            await client.list_tools()
    [(first, lasting), (second, _)] = seen
    assert isinstance(first, sdk.Connection) and lasting is first
    assert second is first  # one connection per session: what the server keys log levels and greetings on


async def test_a_2026_request_has_a_connection_but_none_that_lasts() -> None:
    seen: list[tuple[sdk.Connection | None, sdk.Connection | None]] = []
    with anyio.fail_after(30):
        async with Client(recording_server(seen)) as client:
            await client.list_tools()
    [(connection, lasting)] = seen
    assert isinstance(connection, sdk.Connection) and not connection.has_standalone_channel
    assert lasting is None


def test_the_client_stream_types_are_where_the_downstream_transports_name_them() -> None:
    assert typing.get_origin(sdk.TransportStreams) is tuple
    assert sdk.ReadStream.__name__ == "ReadStream" and sdk.WriteStream.__name__ == "WriteStream"


def test_the_stdio_text_layer_leaves_the_claimed_buffer_open_when_closed() -> None:
    # `sdk.claim_stdin` itself claims fd 0 of a real `portal-mcp serve` in tests/test_stdio_input.py.
    buffer = io.BytesIO(b'{"jsonrpc": "2.0"}\n')
    lines = sdk.UnownedTextWrapper(buffer, encoding="utf-8", errors="replace")
    assert lines.readline() == '{"jsonrpc": "2.0"}\n'
    lines.close()
    assert not buffer.closed


async def test_a_wrapped_read_stream_hands_on_the_sdk_transports_sender_context() -> None:
    # The SDK's dispatcher runs each handler in the context its transport kept for the message, read by name
    # (`last_context`) from the read stream; the portal's wrappers (`sdk.ReadWrapper`) must keep handing it on.
    stdin = anyio.wrap_file(io.StringIO('{"jsonrpc": "2.0", "id": 1, "method": "ping"}\n'))
    transport = stdio_server(stdin=stdin, stdout=anyio.wrap_file(io.StringIO()))
    with anyio.fail_after(10):
        async with transport as (read, write), sdk.ReadWrapper(read) as wrapped, write:
            item = await wrapped.receive()
    assert not isinstance(item, Exception) and isinstance(item.message, types.JSONRPCRequest)
    assert isinstance(wrapped.last_context, contextvars.Context)
