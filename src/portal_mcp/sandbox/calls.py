"""The tool calls of agent code, worker side: the channel to the host, the stubs and namespaces the code calls,
and the errors it sees (`ToolError`, `PermissionError`).

A stub returns a `PendingCall`; awaiting it sends a `call` frame and waits for the matching `result`. Arguments
must be JSON (checked here, and again by the portal, which trusts nothing the worker sends).
"""

from __future__ import annotations

import asyncio
import base64
import difflib
import json
import os
import select
import sys
from collections.abc import Generator, Mapping
from typing import Any, Final, NoReturn

from portal_mcp.naming import RESOURCE_METHODS
from portal_mcp.sandbox import facades, policy, protocol
from portal_mcp.sandbox.protocol import EXIT_HOST_GONE, EXIT_INTERNAL

__all__ = [
    "Channel",
    "Namespace",
    "PendingCall",
    "PortalActions",
    "ToolError",
    "ToolPermissionError",
    "namespaces",
    "write_all",
]

_START_FRAME_LIMIT: Final = 16 * 2**20
_FRAME_SLACK: Final = 64 * 1024
SEARCH_LIMIT: Final = 20


class ToolError(Exception):
    """Raised in agent code when a tool call is refused or fails; `tool` names it, `message` says why."""

    def __init__(self, tool: str, message: str) -> None:
        super().__init__(message)
        self.tool = tool
        self.message = message


ToolError.__module__ = "builtins"  # agent code sees it as a builtin: `<class 'ToolError'>`


class ToolPermissionError(ToolError, PermissionError):
    """Raised in agent code when the portal's policy refuses a call (denied, or not approved by the user)."""


# Agent code sees a PermissionError (that is also a ToolError): `PermissionError: github.delete_repo: not allowed: ...`
ToolPermissionError.__module__ = "builtins"
ToolPermissionError.__name__ = ToolPermissionError.__qualname__ = "PermissionError"


class Channel:
    """The worker's end of the frame channel (one socket): blocking writes, reads driven by the event loop.

    The first frame read is `start`; every later one a `result`.
    """

    def __init__(self, read_fd: int, write_fd: int, max_result_bytes: int) -> None:
        self.max_args_bytes = max_result_bytes
        self.flush_output: Any = lambda: None
        self.unawaited: dict[int, PendingCall] = {}
        self._read_fd = read_fd
        self._write_fd = write_fd
        self._max_result_frame = max_result_bytes + _FRAME_SLACK
        self._decoder = protocol.FrameDecoder(_START_FRAME_LIMIT, allow_nan=True)
        self._start: asyncio.Future[dict[str, Any]] | None = None
        self._waiting: dict[int, tuple[str, asyncio.Future[Any]]] = {}
        self._next_id = 0

    def send(self, frame: Mapping[str, Any]) -> None:
        """Write one frame (blocking: the host always drains the channel)."""
        self.send_bytes(protocol.encode_frame(frame))

    def send_bytes(self, data: bytes) -> None:
        """Write an encoded frame."""
        write_all(self._write_fd, data)

    def listen(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start reading frames on `loop` (done while a spare waits, so none of it is on the run's clock)."""
        os.set_blocking(self._read_fd, False)
        self._start = loop.create_future()
        loop.add_reader(self._read_fd, self._on_readable)

    async def start_frame(self) -> dict[str, Any]:
        """Wait for the `start` frame."""
        assert self._start is not None
        return await self._start

    def _on_readable(self) -> None:
        try:
            data = os.read(self._read_fd, 1 << 16)
        except BlockingIOError:
            return
        if not data:
            os._exit(EXIT_HOST_GONE)
        try:
            frames = self._decoder.feed(data)
        except protocol.ProtocolViolation:
            os._exit(EXIT_INTERNAL)
        if frames and self._start is not None and not self._start.done():
            start = frames.pop(0)
            if (
                start["type"] != "start"
                or type(start.get("code")) is not str
                or type(start.get("namespaces")) is not dict
            ):
                os._exit(EXIT_INTERNAL)
            self._decoder.max_frame_bytes = self._max_result_frame
            self._start.set_result(start)
        for frame in frames:
            call_id = frame.get("id")
            entry = self._waiting.pop(call_id, None) if type(call_id) is int and frame["type"] == "result" else None
            if entry is None or entry[1].done():
                continue  # answers to cancelled calls
            tool, future = entry
            if frame.get("ok") is True:
                future.set_result(frame.get("value"))
            else:
                error = ToolPermissionError if frame.get("denied") is True else ToolError
                future.set_exception(error(tool, str(frame.get("error"))))

    async def call(self, tool: str, args_json: str) -> Any:
        """Send a call frame and wait for its result; concurrent calls are matched by id."""
        self._next_id += 1
        call_id = self._next_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = (tool, future)
        self.flush_output()
        self.send_bytes(protocol.encode_call_frame(call_id, tool, args_json))
        try:
            return with_bytes(await future)
        except asyncio.CancelledError:
            if self._waiting.pop(call_id, None) is not None:
                self.send(protocol.cancel_frame(call_id))
            raise


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    try:
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:  # the socket is non-blocking for the loop's reads; wait for the host to drain
                select.select([], [fd], [])
    except OSError:  # the host is gone; nobody is left to report to
        os._exit(EXIT_HOST_GONE)


class PendingCall:
    """What a tool stub returns: awaiting it makes the call; using it as a value says to add `await`."""

    __slots__ = ("_args_json", "_awaited", "_channel", "_line", "_tool")

    def __init__(self, channel: Channel, tool: str, args_json: str, line: int | None) -> None:
        self._channel = channel
        self._tool = tool
        self._args_json = args_json
        self._line = line
        self._awaited = False
        channel.unawaited[id(self)] = self

    def __await__(self) -> Generator[Any, None, Any]:
        if self._awaited:
            raise RuntimeError(f"this `{self._tool}(...)` call was already awaited; call the tool again")
        self._awaited = True
        self._channel.unawaited.pop(id(self), None)
        return self._channel.call(self._tool, self._args_json).__await__()

    def not_awaited_message(self) -> str:
        """The fix, in one sentence, naming the line."""
        where = f" on line {self._line}" if self._line else ""
        return (
            f"`{self._tool}(...)`{where} was not awaited, so the tool was not called; write `await {self._tool}(...)`"
        )

    def _misuse(self, *args: object) -> NoReturn:
        raise TypeError(self.not_awaited_message())

    def __getattr__(self, name: str) -> NoReturn:
        self._misuse()

    __getitem__ = __iter__ = __len__ = __bool__ = __contains__ = __str__ = __format__ = _misuse

    def __repr__(self) -> str:
        return f"<{self._tool}(...) not awaited>"


class Namespace:
    """One server's tools, as attributes (or `ns["_odd_name"]` for names starting with `_`)."""

    __slots__ = ("_channel", "_server", "_tools")

    def __init__(self, server: str, tools: dict[str, Any], channel: Channel) -> None:
        self._server = server
        self._tools = tools
        self._channel = channel

    def __getattr__(self, name: str) -> Any:
        stub = self._tools.get(name)
        if stub is None and name in RESOURCE_METHODS:
            return _resource_stub(self._channel, f"{self._server}.{name}")
        if stub is None:
            close = difflib.get_close_matches(name, self._tools, n=3)
            hint = f"did you mean {', '.join(f'{self._server}.{c}' for c in close)}?" if close else "use search_api"
            raise AttributeError(f"server {self._server!r} has no tool {name!r}; {hint}")
        return stub

    __getitem__ = __getattr__

    def __repr__(self) -> str:
        return f"<tools of server {self._server!r}: {len(self._tools)}>"


class PortalActions:
    """`portal` in agent code: the portal's own actions. `await portal.search("query", limit=5, server=None)` asks
    the portal for the tools that fit (only those the user may call; of one server with `server`, as `search_api`
    takes it), as `{"name", "signature", "description"}` dicts, best first; `portal.tool("server.tool")` is the stub
    of a tool by its qualified name, to call one a search found."""

    __slots__ = ("_channel", "_namespaces")

    def __init__(self, channel: Channel, namespaces: Mapping[str, Namespace]) -> None:
        self._channel = channel
        self._namespaces = namespaces

    async def search(self, query: str, limit: int = 5, server: str | None = None) -> list[dict[str, str]]:
        if type(query) is not str or not query.strip():
            raise TypeError('portal.search(query) needs the query as a non-empty string: portal.search("send email")')
        if type(limit) is not int or not 1 <= limit <= SEARCH_LIMIT:
            raise ValueError(f"portal.search(limit=...) takes a whole number from 1 to {SEARCH_LIMIT}")
        if server is not None and (type(server) is not str or not server.strip()):
            raise TypeError(
                'portal.search(server=...) takes a server\'s name: portal.search("send email", server="gmail")'
            )
        asked = {"query": query, "limit": limit} | ({"server": server} if server is not None else {})
        args = json.dumps(asked, ensure_ascii=False)
        if utf8_size("portal.search() arguments", args) > self._channel.max_args_bytes:
            raise ValueError("portal.search(query): the query is too long; say what the tool does in a few words")
        found: list[dict[str, str]] = await self._channel.call(protocol.SEARCH_ACTION, args)
        return found

    def tool(self, name: str) -> Any:
        """The stub of `server.tool` (as `portal.search` names it): `await portal.tool(name)(arg=...)`."""
        server, _, tool = name.partition(".") if type(name) is str else ("", "", "")
        namespace = self._namespaces.get(server)
        if namespace is None or not tool:
            raise ValueError(f"portal.tool(name) takes a qualified name `server.tool` of a known server, not {name!r}")
        return getattr(namespace, tool)

    def __repr__(self) -> str:
        return "<portal: search(query, limit=5, server=None), tool(name)>"


def utf8_size(what: str, text: str) -> int:
    """The bytes of `text` in UTF-8; ValueError naming `what` when it holds a character UTF-8 cannot carry (an unpaired
    surrogate, as `surrogateescape` decoding or a cut emoji leaves), which no JSON message can send."""
    try:
        return len(text.encode())
    except UnicodeEncodeError as exc:
        bad = text[exc.start : exc.end]
        raise ValueError(
            f"{what} hold text UTF-8 cannot carry ({bad!r}, half of a surrogate pair): replace it first, e.g. "
            "text.encode('utf-8', 'replace').decode()"
        ) from None


def _refuse_json(value: object) -> NoReturn:
    if isinstance(value, PendingCall):
        raise TypeError(value.not_awaited_message())
    raise TypeError(f"a {type(value).__name__} is not a JSON value")


def _make_stub(channel: Channel, qualified: str) -> Any:
    def stub(*args: Any, **kwargs: Any) -> PendingCall:
        if args:
            raise TypeError(f"{qualified}() takes keyword arguments only; write `{qualified}(name=value, ...)`")
        try:
            args_json = json.dumps(
                kwargs, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_refuse_json
            )
        except (TypeError, ValueError, RecursionError) as exc:
            raise TypeError(
                f"arguments of {qualified}() must be JSON values (dict, list, str, int, float, bool, None): {exc}"
            ) from None
        size = utf8_size(f"arguments of {qualified}()", args_json)
        if size > channel.max_args_bytes:
            raise ValueError(
                f"arguments of {qualified}() are {size} bytes of JSON, over the limit of "
                f"{channel.max_args_bytes}; send less per call"
            )
        return PendingCall(channel, qualified, args_json, policy.agent_line(sys._getframe(1)))

    stub.__name__ = qualified.partition(".")[2]
    stub.__qualname__ = qualified
    return stub


def _resource_stub(channel: Channel, qualified: str) -> Any:
    """`server.resources()`, `server.resource_templates()`, `server.read_resource(uri)`: the portal answers them
    (runs/resources.py)."""
    stub = _make_stub(channel, qualified)
    if not qualified.endswith(".read_resource"):
        return stub

    def read_resource(uri: str) -> PendingCall:
        result: PendingCall = stub(uri=uri)
        return result

    read_resource.__qualname__ = qualified
    return read_resource


def with_bytes(value: Any) -> Any:
    """Binary resource contents as bytes: in a list (a read's contents, a tool result's blocks), each resource's
    base64 `blob` (a content, or an embedded `{"type": "resource", "resource": {...}}`) becomes `data`."""
    if type(value) is not list:
        return value
    for item in value:
        inner = item.get("resource") if type(item) is dict and item.get("type") == "resource" else item
        if type(inner) is dict and "uri" in inner and type(inner.get("blob")) is str:
            try:
                inner["data"] = base64.b64decode(inner["blob"], validate=True)
            except ValueError:
                continue
            del inner["blob"]
    return value


def namespaces(channel: Channel, servers: Mapping[str, Any]) -> dict[str, Namespace]:
    """One `Namespace` per server; a server named like an importable module is bound twice (`time`, `time_`)."""
    namespaces: dict[str, Namespace] = {}
    for server, names in servers.items():
        namespace = Namespace(server, {name: _make_stub(channel, f"{server}.{name}") for name in names}, channel)
        namespaces[server] = namespace
        alias = facades.server_alias(server)
        if alias is not None and alias not in servers:
            namespaces[alias] = namespace
    return namespaces
