"""Resources, resource templates, prompts and completions on the portal's MCP server: the portal's own resources
(the catalog overview, each server's stubs, the `agents-md` text) and every downstream server's, namespaced.

A server's resource `URI` is `portal://server/URI` (templates likewise), a prompt `name` is `server.name`; the
portal's own resources are `portal:overview`, `portal:agents-md` and `portal:stubs/SERVER`. A user sees only the
servers their policy lets them reach (`UserRules.server_refusal`); reads and prompt gets are audited as calls of
`server.read_resource` / `server.get_prompt`. When a server's resources or prompts change, sessions that outlive a
request (handshake-era clients) get `notifications/resources/list_changed` and `notifications/prompts/list_changed`.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import mcp_types as types
from mcp.client import Client
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions
from mcp.shared.exceptions import MCPError

from portal_mcp.catalog.model import Catalog
from portal_mcp.catalog.stubs import render_module
from portal_mcp.control.principal import Principal
from portal_mcp.downstream import DownstreamEvent, Extras
from portal_mcp.errors import PolicyDeniedError, PortalError
from portal_mcp.naming import PORTAL_SCHEME, resource_uri, split_resource_uri
from portal_mcp.portal import Portal
from portal_mcp.sdk import Connection, lasting_connection
from portal_mcp.surface.agents_md import render_agents_md

logger = logging.getLogger("portal_mcp")

Context = ServerRequestContext[Any]
T = TypeVar("T")
OVERVIEW, AGENTS_MD, STUBS = f"{PORTAL_SCHEME}:overview", f"{PORTAL_SCHEME}:agents-md", f"{PORTAL_SCHEME}:stubs/"
OWN = [
    types.Resource(uri=OVERVIEW, name="overview", title="Catalog overview", mime_type="text/markdown",
                   description="The portal's servers: what each offers, its owner, its tool count and state"),
    types.Resource(uri=AGENTS_MD, name="agents-md", title="AGENTS.md section", mime_type="text/markdown",
                   description="How a coding agent uses this portal (search_api, then execute_code), with the catalog"),
]  # fmt: skip
STUBS_TEMPLATE = types.ResourceTemplate(
    uri_template=STUBS + "{server}", name="stubs", title="A server's typed stubs", mime_type="text/x-python",
    description="Every tool of one server as a typed Python stub (what execute_code calls)",
)  # fmt: skip


class Offerings:
    """The request handlers for resources/*, prompts/* and completion/complete (install them on a `Server`)."""

    def __init__(self, portal: Portal, principal: Callable[[Context], Principal]) -> None:
        self.portal = portal
        self._principal = principal
        self._sessions: weakref.WeakSet[Connection] = weakref.WeakSet()
        portal.add_listener(self._on_event)

    def install(self, server: Server[Any]) -> None:
        handlers: list[tuple[str, Any, Any]] = [
            ("resources/list", types.PaginatedRequestParams, self.list_resources),
            ("resources/templates/list", types.PaginatedRequestParams, self.list_templates),
            ("resources/read", types.ReadResourceRequestParams, self.read_resource),
            ("prompts/list", types.PaginatedRequestParams, self.list_prompts),
            ("prompts/get", types.GetPromptRequestParams, self.get_prompt),
            ("completion/complete", types.CompleteRequestParams, self.complete),
        ]
        for method, params, handler in handlers:
            server.add_request_handler(method, params, handler)
        options = server.create_initialization_options
        changes = NotificationOptions(prompts_changed=True, resources_changed=True)
        # The SDK builds the handshake's capabilities from this method without options: announce the list changes.
        server.create_initialization_options = (  # type: ignore[method-assign]
            lambda notification_options=None, *args, **kwargs: options(notification_options or changes, *args, **kwargs)
        )

    # -- resources ---------------------------------------------------------------------------------------------------

    async def list_resources(
        self, ctx: Context, params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        self.remember(ctx)
        stubs = [
            types.Resource(
                uri=STUBS + name, name=f"stubs/{name}", title=f"{name}: typed stubs", mime_type="text/x-python"
            )
            for name in self._catalog(ctx).servers()
        ]
        found = [*OWN, *stubs]
        for server, extras in self._reachable(ctx):
            found += [_named(r, server, uri=resource_uri(server, r.uri)) for r in extras.resources]
        return types.ListResourcesResult(resources=found)

    async def list_templates(
        self, ctx: Context, params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        self.remember(ctx)
        found = [STUBS_TEMPLATE]
        for server, extras in self._reachable(ctx):
            found += [_named(t, server, uri_template=resource_uri(server, t.uri_template)) for t in extras.templates]
        return types.ListResourceTemplatesResult(resource_templates=found)

    async def read_resource(self, ctx: Context, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        self.remember(ctx)
        uri = params.uri
        own = self._own(ctx, uri)
        if own is not None:
            mime = "text/x-python" if uri.startswith(STUBS) else "text/markdown"
            return types.ReadResourceResult(contents=[types.TextResourceContents(uri=uri, mime_type=mime, text=own)])
        server, inner = self._split(uri)
        result = await self._request(
            ctx, server, "read_resource", lambda client: client.read_resource(inner), f"resources/read of {inner!r}"
        )
        for content in result.contents:
            if content.uri == inner:
                content.uri = uri  # the client reads it back under the name it asked for
        return result

    def _own(self, ctx: Context, uri: str) -> str | None:
        """The text of one of the portal's own resources (None: `uri` is not one)."""
        principal = self._principal(ctx)
        if uri == OVERVIEW:
            return self.portal.overview(hidden=self.portal.policy.hidden(principal.name, self.portal.catalog))
        if uri == AGENTS_MD:
            return render_agents_md(self.portal, self._catalog(ctx))
        if uri.startswith(STUBS):
            server = uri.removeprefix(STUBS)
            entries = self._catalog(ctx).by_server(server)
            if not entries:
                raise MCPError(types.INVALID_PARAMS, f"no server {server!r} to show stubs of; list resources")
            return render_module(server, entries, self.portal.shapes.observed(entries))
        return None

    # -- prompts and completion --------------------------------------------------------------------------------------

    async def list_prompts(self, ctx: Context, params: types.PaginatedRequestParams | None) -> types.ListPromptsResult:
        self.remember(ctx)
        found = [_named(p, server, name=f"{server}.{p.name}") for server, extras in self._reachable(ctx)
                 for p in extras.prompts]  # fmt: skip
        return types.ListPromptsResult(prompts=found)

    async def get_prompt(self, ctx: Context, params: types.GetPromptRequestParams) -> types.GetPromptResult:
        self.remember(ctx)
        server, _, name = params.name.partition(".")
        arguments = params.arguments

        async def get(client: Client) -> types.GetPromptResult:
            result: types.GetPromptResult = await client.get_prompt(name, arguments)
            return result

        return await self._request(ctx, server, "get_prompt", get, f"prompt {name!r}")

    async def complete(self, ctx: Context, params: types.CompleteRequestParams) -> types.CompleteResult:
        ref: types.PromptReference | types.ResourceTemplateReference = params.ref
        if isinstance(ref, types.ResourceTemplateReference) and ref.uri == STUBS_TEMPLATE.uri_template:
            names = [name for name in self._catalog(ctx).servers() if name.startswith(params.argument.value)]
            return types.CompleteResult(completion=types.Completion(values=names[:100], total=len(names)))
        if isinstance(ref, types.PromptReference):
            server, _, name = ref.name.partition(".")
            ref = ref.model_copy(update={"name": name})
        else:
            server, inner = self._split(ref.uri)
            ref = ref.model_copy(update={"uri": inner})
        argument = {"name": params.argument.name, "value": params.argument.value}
        context = params.context.arguments if params.context is not None else None

        async def send(client: Client) -> types.CompleteResult:
            result: types.CompleteResult = await client.complete(ref, argument, context)
            return result

        return await self._request(ctx, server, "complete", send, "completion/complete")

    # -- shared ------------------------------------------------------------------------------------------------------

    async def _request(
        self, ctx: Context, server: str, method: str, send: Callable[[Client], Awaitable[T]], what: str
    ) -> T:
        """A request to `server` for this caller, audited; refusals and failures become JSON-RPC errors."""
        if server not in self.portal.pool.extras():
            raise MCPError(types.INVALID_PARAMS, f"no server {server!r} offers resources or prompts; list them first")
        try:
            assert self.portal.bridge.resources is not None  # Portal always gives the bridge its ResourceCalls
            return await self.portal.bridge.resources.request(server, method, self._principal(ctx), send, what=what)
        except PolicyDeniedError as exc:
            raise MCPError(types.INVALID_PARAMS, str(exc)) from None
        except PortalError as exc:
            raise MCPError(types.INTERNAL_ERROR, str(exc)) from None

    def _split(self, uri: str) -> tuple[str, str]:
        found = split_resource_uri(uri)
        if found is None:
            raise MCPError(
                types.INVALID_PARAMS,
                f"{uri!r} is not a portal resource: they are `{PORTAL_SCHEME}://SERVER/URI` or `{PORTAL_SCHEME}:NAME`",
            )
        return found

    def _reachable(self, ctx: Context) -> Iterable[tuple[str, Extras]]:
        """Each server with resources or prompts that this caller's policy lets them reach."""
        rules = self._principal(ctx).rules
        return [
            (name, extras) for name, extras in self.portal.pool.extras().items() if rules.server_refusal(name) is None
        ]

    def _catalog(self, ctx: Context) -> Catalog:
        return self.portal.policy.view(self._principal(ctx).name, self.portal.catalog).catalog

    def remember(self, ctx: Context) -> None:
        """Send this request's session (if it outlives the request) the list changes from now on."""
        connection = lasting_connection(ctx.session)
        if connection is not None:
            self._sessions.add(connection)

    async def _on_event(self, event: DownstreamEvent) -> None:
        if event.kind != "listing_changed" or event.user is not None:
            return
        for connection in list(self._sessions):
            try:
                await connection.send_resource_list_changed()
                await connection.send_prompt_list_changed()
            except Exception:  # a client that went away must not break delivery to the others
                logger.debug("dropping a list_changed notification for a closed connection", exc_info=True)


def _named(item: Any, server: str, **update: Any) -> Any:
    """`item` (a Resource, ResourceTemplate or Prompt of `server`) as the portal's clients see it."""
    title = item.title or item.name
    return item.model_copy(update={"title": f"{title} ({server})", **update})
