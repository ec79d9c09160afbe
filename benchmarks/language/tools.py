"""The tools the language corpus calls: four small in-process servers with fixed, realistic data.

The same async functions back three runners: the portal (as MCP servers), plain CPython and Monty (as namespace
objects), so a snippet sees the same results everywhere. Every tool returns a JSON object.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.mcpserver import MCPServer

Tool = Callable[..., Awaitable[dict[str, Any]]]

_ISSUES = [
    {"number": 101 + i, "title": title, "state": state, "labels": labels, "user": {"login": user},
     "comments": comments, "created_at": f"2026-11-{10 + i:02d}T09:{i * 7 % 60:02d}:00Z"}
    for i, (title, state, labels, user, comments) in enumerate([
        ("Crash when config file is empty", "open", ["bug", "p1"], "ana", 4),
        ("Add dark mode", "open", ["enhancement"], "bo", 12),
        ("Typo in README", "closed", ["docs"], "cy", 0),
        ("Memory leak in worker pool", "open", ["bug", "p0"], "ana", 9),
        ("Support Python 3.13", "open", ["enhancement", "good first issue"], "dee", 2),
        ("Flaky test_sync on CI", "closed", ["bug", "ci"], "bo", 5),
        ("Timeouts not honoured for uploads", "open", ["bug"], "eli", 1),
        ("Document the retry policy", "open", ["docs"], "cy", 3),
    ])
]  # fmt: skip
_PULLS = [
    {"number": 201, "title": "Fix empty config crash", "state": "open", "draft": False, "user": {"login": "ana"},
     "additions": 40, "deletions": 3, "requested_reviewers": ["bo"]},
    {"number": 202, "title": "Dark mode (WIP)", "state": "open", "draft": True, "user": {"login": "bo"},
     "additions": 512, "deletions": 88, "requested_reviewers": []},
    {"number": 203, "title": "Bump dependencies", "state": "closed", "draft": False, "user": {"login": "dependabot"},
     "additions": 12, "deletions": 12, "requested_reviewers": ["cy", "dee"]},
]  # fmt: skip
_CHANNELS = [
    {"id": "C01", "name": "general", "num_members": 120, "is_archived": False},
    {"id": "C02", "name": "eng", "num_members": 35, "is_archived": False},
    {"id": "C03", "name": "random", "num_members": 98, "is_archived": False},
    {"id": "C04", "name": "old-project", "num_members": 4, "is_archived": True},
]
_MESSAGES = [
    {"user": "ana", "text": "deploy is done :rocket:", "ts": "1764900000.0001"},
    {"user": "bo", "text": "who owns the billing alerts?", "ts": "1764900360.0002"},
    {"user": "cy", "text": "PR #201 needs a review", "ts": "1764900720.0003"},
    {"user": "ana", "text": "standup in 5", "ts": "1764901080.0004"},
]
_CUSTOMERS = [
    {"id": "cus_1", "name": "Acme Corp", "email": "ops@acme.test", "tier": "gold", "country": "US", "mrr": 4200.0},
    {"id": "cus_2", "name": "Globex", "email": "it@globex.test", "tier": "silver", "country": "DE", "mrr": 1300.5},
    {"id": "cus_3", "name": "Initech", "email": "bill@initech.test", "tier": "gold", "country": "US", "mrr": 2950.0},
    {"id": "cus_4", "name": "Umbrella", "email": "sec@umbrella.test", "tier": "bronze", "country": "FR", "mrr": 310.0},
]
_ORDERS = {
    "cus_1": [{"id": "o1", "total": 1200.0, "status": "paid", "date": "2026-10-02"},
              {"id": "o2", "total": 800.0, "status": "refunded", "date": "2026-11-14"}],
    "cus_2": [{"id": "o3", "total": 99.9, "status": "paid", "date": "2026-11-20"}],
    "cus_3": [],
    "cus_4": [{"id": "o4", "total": 45.0, "status": "pending", "date": "2026-12-01"}],
}  # fmt: skip


async def search_issues(
    query: str = "", state: str = "all", label: str | None = None, limit: int = 30
) -> dict[str, Any]:
    """Search issues of the repository; `state` is open, closed or all."""
    found = [
        issue for issue in _ISSUES
        if (state == "all" or issue["state"] == state)
        and (label is None or label in issue["labels"])
        and query.lower() in issue["title"].lower()
    ]  # fmt: skip
    return {"total_count": len(found), "items": found[:limit]}


async def get_issue(number: int) -> dict[str, Any]:
    """One issue by number."""
    for issue in _ISSUES:
        if issue["number"] == number:
            return dict(issue, body=f"Details of #{number}.")
    raise ValueError(f"issue {number} not found")


async def list_pull_requests(state: str = "open") -> dict[str, Any]:
    """Pull requests of the repository."""
    return {"pull_requests": [pr for pr in _PULLS if state == "all" or pr["state"] == state]}


async def create_issue(title: str, body: str = "", labels: list[str] | None = None) -> dict[str, Any]:
    """Open an issue; returns its number and URL."""
    return {"number": 109, "title": title, "labels": labels or [], "url": "https://example.test/issues/109"}


async def list_channels(exclude_archived: bool = True) -> dict[str, Any]:
    """Slack channels."""
    return {"channels": [c for c in _CHANNELS if not (exclude_archived and c["is_archived"])]}


async def channel_history(channel: str, limit: int = 20) -> dict[str, Any]:
    """Recent messages of a channel (by id or name)."""
    return {"channel": channel, "messages": _MESSAGES[:limit]}


async def post_message(channel: str, text: str) -> dict[str, Any]:
    """Post a message to a channel."""
    return {"ok": True, "channel": channel, "ts": "1764902000.0005", "text": text}


async def get_forecast(city: str, days: int = 3) -> dict[str, Any]:
    """Daily forecast for a city: temperatures in °C, precipitation in mm."""
    base = sum(map(ord, city)) % 15
    daily = [
        {"date": f"2026-12-{5 + d:02d}", "min_c": base - 3 + d, "max_c": base + 4 + d % 2, "precip_mm": (d * 3) % 7,
         "summary": ["sunny", "cloudy", "rain", "showers"][(base + d) % 4]}
        for d in range(days)
    ]  # fmt: skip
    return {"city": city, "timezone": "Europe/Paris" if city in ("Paris", "Lyon") else "UTC", "daily": daily}


async def search_customers(query: str = "", tier: str | None = None) -> dict[str, Any]:
    """Customers whose name or email contains `query`."""
    found = [
        c for c in _CUSTOMERS
        if (query.lower() in c["name"].lower() or query.lower() in c["email"]) and (tier is None or c["tier"] == tier)
    ]  # fmt: skip
    return {"customers": found, "count": len(found)}


async def get_orders(customer_id: str) -> dict[str, Any]:
    """Orders of one customer."""
    return {"customer_id": customer_id, "orders": _ORDERS.get(customer_id, [])}


SERVERS: dict[str, dict[str, Tool]] = {
    "github": {
        "search_issues": search_issues, "get_issue": get_issue, "list_pull_requests": list_pull_requests,
        "create_issue": create_issue,
    },
    "slack": {"list_channels": list_channels, "channel_history": channel_history, "post_message": post_message},
    "weather": {"get_forecast": get_forecast},
    "crm": {"search_customers": search_customers, "get_orders": get_orders},
}  # fmt: skip


def mcp_servers() -> dict[str, MCPServer]:
    """The servers as in-process MCP servers, for `Portal.open(..., local=...)`."""
    servers = {}
    for name, tools in SERVERS.items():
        server = MCPServer(name)
        for tool in tools.values():
            server.tool()(tool)
        servers[name] = server
    return servers
