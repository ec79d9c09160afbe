"""Why a connection failed: exceptions from the SDK and its transports read as user-facing sentences."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import httpx2
import mcp_types as types
from mcp.shared.exceptions import MCPError

from portal_mcp.config import RemoteServerConfig, StdioServerConfig
from portal_mcp.downstream._transports import Watch
from portal_mcp.errors import DownstreamError


def describe(
    exc: BaseException,
    watch: Watch,
    config: StdioServerConfig | RemoteServerConfig | None,
    explain: Callable[[str], str],
) -> str:
    """A user-facing sentence for why connecting failed (or a connection ended).

    `explain` adds what the link knows beyond the exception (its transport's stream errors, its server's stderr).
    """
    leaf = _leaf(exc)
    if isinstance(leaf, DownstreamError):  # the portal's own (a token exchange the link's auth could not make)
        return leaf.message
    if isinstance(config, StdioServerConfig):
        if isinstance(leaf, FileNotFoundError):
            if config.cwd is not None and str(leaf.filename) == str(config.cwd):
                return f"working directory {str(config.cwd)!r} does not exist; check `cwd:`"
            return f"command {config.command!r} not found; check `command:` (is it installed and on PATH?)"
        if isinstance(leaf, PermissionError):
            return f"command {config.command!r} cannot be run (permission denied); check `command:`"
        if isinstance(leaf, MCPError) and leaf.code == types.CONNECTION_CLOSED:
            return explain("the process exited before the MCP handshake finished; run the command by hand to see why")
    if isinstance(config, RemoteServerConfig):
        if watch.http_status is not None:
            # The transport turns an HTTP error status into a vaguer JSON-RPC error; the status says more.
            return _http_status_message(*watch.http_status, config)
        if isinstance(leaf, httpx2.ConnectError | httpx2.ConnectTimeout):
            return f"cannot reach {config.url} ({leaf}); is the server running and `url:` right?"
        if isinstance(leaf, httpx2.HTTPStatusError):
            return _http_status_message(leaf.response.status_code, leaf.response.reason_phrase, config)
        if isinstance(leaf, httpx2.HTTPError):
            return f"HTTP error talking to {config.url}: {type(leaf).__name__}: {leaf}"
    if isinstance(leaf, MCPError):
        if leaf.code == types.CONNECTION_CLOSED:
            return "the server closed the connection"
        return f"the server answered with an error: {leaf.message} (JSON-RPC error {leaf.code})"
    if isinstance(leaf, OSError) and leaf.strerror:
        return f"{leaf.strerror} ({type(leaf).__name__})"
    return f"{type(leaf).__name__}: {leaf}"


class TooOld:
    """The server rejected `initialize` as a protocol version it no longer speaks."""


TOO_OLD = TooOld()


def rejects_handshake(exc: BaseException) -> bool:
    leaf = _leaf(exc)
    return isinstance(leaf, MCPError) and leaf.code == types.UNSUPPORTED_PROTOCOL_VERSION


def unreachable(exc: BaseException) -> bool:
    """True when the connection failed because TCP could not connect, so no request can have reached the server."""
    return isinstance(_leaf(exc), httpx2.ConnectError)


def refused(exc: BaseException, watch: Watch) -> bool:
    """Whether the server refused the credentials (HTTP 401 or 403): the same ones would be refused again."""
    if watch.http_status is not None:
        return watch.http_status[0] in (401, 403)
    leaf = _leaf(exc)
    return isinstance(leaf, httpx2.HTTPStatusError) and leaf.response.status_code in (401, 403)


def expected(exc: BaseException) -> bool:
    """Whether `exc` is a state the link waits out rather than a fault (`DownstreamError.expected`)."""
    leaf = _leaf(exc)
    return isinstance(leaf, DownstreamError) and leaf.expected


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups; task groups wrap what transports raise."""
    while isinstance(exc, BaseExceptionGroup):
        inner = [e for e in exc.exceptions if not isinstance(e, anyio.get_cancelled_exc_class())]
        exc = (inner or list(exc.exceptions))[0]
    return exc


_ACCOUNT_REFUSED = (
    "the server does not let this user's connected account in; connect an account that may use it (`portal-mcp "
    "login`), or ask its administrator for access"
)
_EXCHANGED_REFUSED = (
    "the server refused the token exchanged for this user; check `oauth.token_exchange` (its audience, resource and "
    "scopes) and that the user may use this server"
)


def _http_status_message(code: int, phrase: str, config: RemoteServerConfig) -> str:
    if code in (401, 403) and config.oauth is not None:
        # The user's own token: a 401 was already answered by one refresh or exchange (a 401 after it, and a 403
        # asking for more scope, say to reconnect before reaching here); what is left is the account itself.
        hint = _EXCHANGED_REFUSED if config.oauth.token_exchange is not None else _ACCOUNT_REFUSED
    elif code in (401, 403):
        hint = "check the credentials in `headers:`"
    elif code == 404:
        hint = "check the path in `url:` (streamable HTTP servers usually serve /mcp, SSE servers /sse)"
    elif code in (405, 406, 415):
        hint = "is this an MCP endpoint, and is `type:` (http or sse) right?"
    else:
        hint = "check the server's logs"
    return f"{config.url} answered HTTP {code} {phrase}; {hint}"
