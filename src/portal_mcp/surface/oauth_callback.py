"""`/oauth/callback`: where a user's browser comes back from a downstream's authorization server (`oauth:` servers
with `redirect_uri`). Public (a browser has no bearer token): the flow is found by its random `state`, which only
the authorization URL handed to that user carries, and a state is used once."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from portal_mcp.downstream import DownstreamPool, complete_from

PATH = "/oauth/callback"


def callback_route(pool: DownstreamPool) -> Route:
    async def callback(request: Request) -> Response:
        connector = pool.accounts.connector
        if connector is None:
            return HTMLResponse("<!doctype html><p>No server here connects users' accounts.</p>", 404)
        status, page = await complete_from(connector, request.url.query)
        return HTMLResponse(page, status, headers={"cache-control": "no-store", "referrer-policy": "no-referrer"})

    return Route(PATH, callback, methods=["GET"])
