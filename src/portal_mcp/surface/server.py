"""The MCP surface: exactly two tools, `search_api` and `execute_code`, over stdio or streamable HTTP.

The tool descriptions are the whole manual the model gets, so they teach the workflow (search, then write code
that awaits the stubs) in as few tokens as possible; `tests/test_server.py` holds the budget.
"""

from __future__ import annotations

import logging
import warnings
import weakref
from collections.abc import Iterable
from typing import Any, Literal

import anyio
import mcp_types as types
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from mcp.shared.exceptions import MCPDeprecationWarning
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from portal_mcp import __version__
from portal_mcp.config import ANONYMOUS, HttpConfig, ReplicaConfig
from portal_mcp.control.metrics import USABLE
from portal_mcp.control.principal import Principal
from portal_mcp.downstream import DownstreamEvent
from portal_mcp.errors import ConfigError, RunError
from portal_mcp.portal import Portal
from portal_mcp.runs.approvals import asks_in_result, can_elicit, direct_approver, no_session
from portal_mcp.runs.run import ASK_LATER, Asking
from portal_mcp.sandbox.facades import importable, server_alias
from portal_mcp.sdk import Connection, connection_of, lasting_connection
from portal_mcp.surface.auth import BearerAuth, check_bind, static_tokens
from portal_mcp.surface.follow import elicitor, follow, index_built, url_opener, wants_progress
from portal_mcp.surface.http_limits import BodyLimits, guarded_protocol, install_log_limits
from portal_mcp.surface.oauth import OAuthEdge
from portal_mcp.surface.oauth_callback import PATH as CALLBACK
from portal_mcp.surface.oauth_callback import callback_route
from portal_mcp.surface.offerings import Offerings
from portal_mcp.surface.peers import NOT_FORWARDED, ReplicaRouter
from portal_mcp.surface.tasks import TaskSurface
from portal_mcp.tools import EXECUTE_DESCRIPTION, INSTRUCTIONS, MAX_LIMIT, TOOLS

logger = logging.getLogger("portal_mcp")


def execute_description(servers: Iterable[str] = (), language: str = "open") -> str:
    """The `execute_code` description, true for this catalog and language level: the importable modules come from
    the sandbox's facade list, and a server named like one of them is named by its alias."""
    modules = ", ".join(name for name in importable(language) if name != "urllib")
    text = f"{EXECUTE_DESCRIPTION} Imports (curated subsets): {modules}. No files or network."
    if language == "strict":
        text += " Names starting with `_` are not available."
    clashes = [(server, alias) for server in servers if (alias := server_alias(server)) is not None]
    if clashes:
        named = "; ".join(f"server `{server}` is also `{alias}`" for server, alias in clashes)
        text += f" `import X` gives the module X, so {named}: call it as `{clashes[0][1]}.tool(...)` after an import."
    return text


_LEVELS: list[types.LoggingLevel] = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]


class PortalServer:
    """Serves a `Portal` as an MCP server and forwards downstream events to clients as log notifications."""

    def __init__(self, portal: Portal) -> None:
        self.portal = portal
        # Connections that asked for log messages, with their minimum level; weak so closed sessions drop out.
        self._log_levels: weakref.WeakKeyDictionary[Connection, int] = weakref.WeakKeyDictionary()
        self._listed: weakref.WeakSet[Connection] = weakref.WeakSet()  # connections counted in the tokens-saved metric
        self._owners: weakref.WeakKeyDictionary[Connection, str] = weakref.WeakKeyDictionary()  # connection -> its user
        with warnings.catch_warnings():
            # logging/setLevel is deprecated for 2026-07-28 clients but is what today's clients use.
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            self.server: Server[Any] = Server(
                "portal-mcp",
                version=__version__,
                instructions=INSTRUCTIONS,
                on_list_tools=self._list_tools,
                on_call_tool=self._call_tool,
                on_set_logging_level=self._set_level,
                # Without it the SDK runs the tools/list handler before every 2026-07-28 HTTP call (to check
                # `Mcp-Param-*` headers), which would count each call as a listing in the metrics.
                get_tool_input_schema=_input_schema,
            )
        portal.add_listener(self._on_event)
        self.tasks = TaskSurface(portal, self._principal)  # tasks.py: execute_code as a task (2025-11-25)
        self.tasks.install(self.server)
        self.offerings = Offerings(portal, self._principal)  # resources, prompts, completion: offerings.py
        self.offerings.install(self.server)

    async def _list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        await self._greet(ctx)
        # Counted once per connection: a legacy session, or one request of the sessionless 2026-07-28 protocol.
        connection = connection_of(ctx.session)  # with or without a channel: each client counts
        if connection is not None and connection not in self._listed:
            self._listed.add(connection)
            await anyio.to_thread.run_sync(self.portal.metrics.tools_listed)
        # Only the servers this caller may see: a name the policy hides must not appear in a description either.
        principal = self._principal(ctx)
        visible = self.portal.policy.view(principal.name, self.portal.catalog, principal.groups).catalog.servers()
        execute = TOOLS[1].model_copy(
            update={"description": execute_description(visible, self.portal.sandbox.language)}
        )
        return types.ListToolsResult(tools=[TOOLS[0], execute])

    async def _set_level(
        self, ctx: ServerRequestContext[Any], params: types.SetLevelRequestParams
    ) -> types.EmptyResult:
        connection = _connection(ctx)
        if connection is not None:  # a connection without a channel (stateless HTTP) has nothing to remember it for
            self._log_levels[connection] = _LEVELS.index(params.level)
            self._owners[connection] = self._principal(ctx).name
        return types.EmptyResult()

    async def _call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        await self._greet(ctx)
        args = params.arguments or {}
        if params.name == "search_api":
            await index_built(ctx, self.portal)  # follow.py: a stale index is built off the loop, with progress
            return await self._search(args, self._principal(ctx))
        if params.name == "execute_code":
            return await self._execute(ctx, params, args)
        return _error(f"unknown tool {params.name!r}; this server has `search_api` and `execute_code`")

    async def _execute(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams, args: dict[str, Any]
    ) -> types.CallToolResult | types.InputRequiredResult:
        """Start a run or resume one with the client's answers, then reply with its outcome or, for a 2026-07-28
        client, with the approval questions it waits on (see approvals.py)."""
        principal = self._principal(ctx)
        approvals = self.portal.approvals
        try:
            if params.request_state is not None:
                # Over HTTP with `http.replica` peers, an answer for another replica's run was forwarded there before
                # it got here (peers.ReplicaRouter); one that reaches this point comes with the reason it was not.
                reason = _scope(ctx).get(NOT_FORWARDED)
                run = approvals.resume(
                    principal.name,
                    params.request_state,
                    params.input_responses,
                    not_forwarded=reason if isinstance(reason, str) else None,
                )
            else:
                code = args.get("code")
                if not isinstance(code, str):
                    return _error("execute_code needs `code`: a string of Python source")
                asking, elicit, progress = self._asking(ctx), elicitor(ctx), wants_progress(ctx)
                run = await self.portal.start_run(
                    code, principal, approve=asking, elicit=elicit, progress=progress, urls=url_opener(ctx)
                )
            reply = await follow(ctx, approvals, run)  # follow.py: progress, downstream questions, cancellation
        except RunError as exc:
            return _error(str(exc))
        if isinstance(reply, types.InputRequiredResult):
            return reply
        return types.CallToolResult(content=[types.TextContent(text=reply.render())], is_error=not reply.ok)

    @staticmethod
    def _asking(ctx: ServerRequestContext[Any]) -> Asking:
        """How this request's client is asked about calls that need approval."""
        if can_elicit(ctx) and asks_in_result(ctx):
            return ASK_LATER  # 2026-07-28: no server-initiated requests; the questions go back in the result
        if can_elicit(ctx):
            return direct_approver(ctx)
        # A handshake-era request without a session cannot be asked, whatever the client supports.
        return no_session if not asks_in_result(ctx) and _connection(ctx) is None else None

    async def _search(self, args: dict[str, Any], principal: Principal) -> types.CallToolResult:
        query, server, limit, detail = (
            args.get("query", ""),
            args.get("server"),
            args.get("limit", 5),
            args.get("detail", "auto"),
        )
        if not isinstance(query, str):
            return _error("search_api: `query` must be a string")
        if server is not None and not isinstance(server, str):
            return _error("search_api: `server` must be a server name (string)")
        if type(limit) is not int or not 1 <= limit <= MAX_LIMIT:
            return _error(f"search_api: `limit` must be an integer from 1 to {MAX_LIMIT}")
        if detail not in ("name", "signature", "full", "auto"):
            return _error("search_api: `detail` must be 'name', 'signature' or 'full'")
        # The ranking and the reply in a thread of this user's (portal.py): the event loop serves everyone else.
        text = await self.portal.search_api_offloaded(
            query, principal, server=server or None, limit=limit, detail=detail
        )
        return types.CallToolResult(content=[types.TextContent(text=text)])

    def _principal(self, ctx: ServerRequestContext[Any]) -> Principal:
        """Who is calling: the user an HTTP request authenticated as, else (stdio, HTTP without tokens) the portal's
        local user."""
        found = _scope(ctx).get("portal_user")
        return found if isinstance(found, Principal) else self.portal.local

    async def _greet(self, ctx: ServerRequestContext[Any]) -> None:
        """On a connection's first request, tell it which servers are unavailable: they failed before it came.

        Only connections that outlive a request are greeted and sent downstream events: a stateless HTTP request
        (`http: {stateless: true}`, and every 2026-07-28 request) gets a connection of its own with no channel to send
        on, so there the events go to the portal's own log only and a failed server shows up when it is called.
        """
        connection = _connection(ctx)
        if connection is None or connection in self._log_levels:
            return
        self.offerings.remember(ctx)
        self._log_levels[connection] = _LEVELS.index("info")
        self._owners[connection] = self._principal(ctx).name
        for status in self.portal.statuses():
            if status.state in ("failed", "down"):
                await self._send(
                    connection, "error", {"server": status.name, "event": status.state, "message": status.error}
                )

    async def _on_event(self, event: DownstreamEvent) -> None:
        """Tell the clients that asked for log messages; an event about one user's own connection (its text can
        quote what that user's process printed) only that user's."""
        data = {"server": event.server, "event": event.kind, "message": event.message}
        for connection, minimum in list(self._log_levels.items()):
            if event.user is not None and self._owners.get(connection) != event.user:
                continue
            if _LEVELS.index(event.level) >= minimum:
                await self._send(connection, event.level, data)

    async def _send(self, connection: Connection, level: types.LoggingLevel, data: dict[str, Any]) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await connection.log(level, data, "portal-mcp")
        except Exception:  # a client that went away must not break delivery to the others
            logger.debug("dropping log notification for a closed connection", exc_info=True)

    async def serve_stdio(self) -> None:
        from portal_mcp.surface.stdio import stdio_streams

        async with stdio_streams() as (read, write):
            await self.server.run(read, write, self.server.create_initialization_options())

    check_bind = staticmethod(check_bind)

    @staticmethod
    def check_replica(http: HttpConfig, source: str | None = None) -> None:
        """Refuse a replica setup that cannot forward approval answers: a bad id, or peers but no id of its own."""
        replica = http.replica
        try:  # the id may come from `serve --replica-id` / PORTAL_REPLICA_ID, set without validation
            ReplicaConfig.model_validate(replica.model_dump())
        except ValidationError as exc:
            message = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
            raise ConfigError(f"http.replica: {message}", source=source) from None
        if replica.peers and replica.id is None:
            raise ConfigError(
                "`http.replica.peers` lists the replicas, so this one needs its id: `serve --replica-id NAME` or "
                f"PORTAL_REPLICA_ID=NAME, one of {', '.join(sorted(replica.peers))}",
                source=source,
            )

    async def serve_http(self, host: str, port: int, http: HttpConfig) -> None:
        import uvicorn

        app = self.http_app(host, http)
        install_log_limits()  # http_limits.py: connection caps, header deadline, floods of log lines bounded
        # log_config=None: uvicorn's loggers propagate to the portal's handler (text or JSON, see `logs`).
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", log_config=None, lifespan="on",
            http=guarded_protocol(http.limits),
        )  # fmt: skip
        await uvicorn.Server(config).serve()

    def http_app(self, host: str, http: HttpConfig) -> ASGIApp:
        """The streamable HTTP app at `/mcp` with `/metrics` and `/healthz` next to it: DNS-rebinding checks on all
        three and, when configured, bearer tokens (`/healthz` answers without one, with its overall status only).

        With `http.stateless` no MCP session is kept: every request is served on its own (so any replica behind a
        load balancer can take it), and nothing is pushed to the client outside a request's own response. With
        `http.replica.peers`, an approval answer for a run on another replica is forwarded there (`peers`).
        """
        auth = self.portal.config.auth
        self.check_bind(host, http, auth=auth)
        self.check_replica(http)
        self.portal.approvals.replica = http.replica.id  # tokens handed out from now on name this replica
        hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*", *http.allowed_hosts]
        if host in ("0.0.0.0", "::"):
            if not http.allowed_hosts:
                # Clients reach a wildcard bind by names the portal cannot know; without them every remote request
                # gets `421 Invalid Host header`, which is hard to trace back to the config.
                logger.warning(
                    "serving on %r: only requests addressed to localhost pass the DNS-rebinding check; list the "
                    "names clients use (e.g. `myhost:*`, `192.0.2.7:*`) in `http: {allowed_hosts: [...]}`",
                    host,
                )
        else:
            hosts.append(f"[{host}]:*" if ":" in host else f"{host}:*")  # an IPv6 Host header is bracketed
        origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*", *http.allowed_origins]
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
        )
        guard = TransportSecurityMiddleware(security)
        authenticated = bool(static_tokens(http)) or auth is not None
        oauth = OAuthEdge(auth, self.portal.principal, self.portal.pool.accounts.exchanges.remember) if auth else None
        operators = frozenset(http.operator_groups)

        def operator(request: Request) -> bool:  # with tokens, only `http.operator_groups` members see the details
            return not authenticated or bool(operators & set(getattr(request.scope.get("portal_user"), "groups", ())))

        async def metrics(request: Request) -> Response:
            if (refused := await guard.validate_request(request)) is not None:
                return refused
            if not operator(request):
                return JSONResponse({"error": "forbidden: /metrics is for users in `http.operator_groups`"}, 403)
            # Serialising walks every series and may count the catalog's tokens: off the event loop.
            body, content_type = await anyio.to_thread.run_sync(self.portal.metrics.exposition, request.headers.get("accept"))  # fmt: skip
            return Response(body, headers={"content-type": content_type})

        async def healthz(request: Request) -> Response:
            if (refused := await guard.validate_request(request)) is not None:
                return refused
            detailed = operator(request)
            return JSONResponse(self.health(detailed), headers={"cache-control": "no-store"})

        app: ASGIApp = self.server.streamable_http_app(
            streamable_http_path="/mcp",
            transport_security=security,
            host=host,
            stateless_http=http.stateless,
            custom_starlette_routes=[
                Route("/metrics", metrics, methods=["GET"]),
                Route("/healthz", healthz, methods=["GET"]),
                *(oauth.routes(guard) if oauth is not None else []),
                callback_route(self.portal.pool),
            ],
        )
        if http.replica.peers:
            # Inside the bearer check: only authenticated requests are forwarded, with the caller's own token.
            assert http.replica.id is not None  # check_replica
            app = ReplicaRouter(
                app, replica=http.replica.id, peers=http.replica.peers, guard=guard, metrics=self.portal.metrics
            )
        if authenticated:
            anonymous = self.portal.principal(ANONYMOUS)
            app = BearerAuth(
                app,
                dict.fromkeys(http.bearer_tokens, anonymous)
                | {user.token: self.portal.principal(name) for name, user in http.users.items() if user.token},
                public=frozenset({"/healthz", CALLBACK, *(oauth.paths() if oauth is not None else ())}),
                oauth=oauth,
            )
        return BodyLimits(app, http.limits)

    def health(self, detailed: bool = True) -> dict[str, Any]:
        """`/healthz`: `ok` when every downstream server is usable, `degraded` when one is not (the portal still
        serves the others); with `detailed`, each server's state, tool count and last error."""
        statuses = self.portal.statuses()
        status = "ok" if all(s.state in USABLE or s.state == "disabled" for s in statuses) else "degraded"
        if not detailed:
            return {"status": status}
        servers = [
            {
                "name": s.name,
                "kind": s.transport,
                "state": s.state,
                "tools": s.tool_count,
                "restarts": s.restarts,
                "error": s.error,
            }
            for s in statuses
        ]
        return {"status": status, "version": __version__, "tools": len(self.portal.catalog), "servers": servers}


def _input_schema(name: str) -> dict[str, Any] | None:
    return next((tool.input_schema for tool in TOOLS if tool.name == name), None)


def _scope(ctx: ServerRequestContext[Any]) -> dict[str, Any]:
    """The ASGI scope of an HTTP request (empty over stdio)."""
    scope = getattr(ctx.request, "scope", None)
    return scope if isinstance(scope, dict) else {}


def _connection(ctx: ServerRequestContext[Any]) -> Connection | None:
    """The connection a request came on, if it outlives the request and has a channel for log notifications."""
    return lasting_connection(ctx.session)


def _error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=message)], is_error=True)


Transport = Literal["stdio", "http"]
