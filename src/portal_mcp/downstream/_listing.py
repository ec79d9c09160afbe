"""What a link lists from its server: every page of each paginated list (tools, resources, resource templates,
prompts), with credentials taken out of it, and a digest that says whether anything a client can see changed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mcp.client import Client
from mcp_types import Prompt, Resource, ResourceTemplate, Tool
from pydantic import BaseModel

from portal_mcp.control.credentials import Redactor
from portal_mcp.naming import plural

MAX_PAGES = 1000
"""List pages followed before giving up on a paginator that never ends."""

Warn = Callable[[str], Awaitable[None]]
"""Reports a problem with the listing (the link turns it into a warning event)."""

M = TypeVar("M", bound=BaseModel)
Page = Callable[[str | None], Awaitable[tuple[Sequence[M], str | None]]]
"""Fetches one page from a cursor: its items and the next cursor."""


@dataclass(frozen=True)
class Extras:
    """What a server offers besides tools: resources, resource templates and prompts (empty when it offers none)."""

    resources: tuple[Resource, ...] = ()
    templates: tuple[ResourceTemplate, ...] = ()
    prompts: tuple[Prompt, ...] = ()
    digest: str = field(default="", compare=False)

    def __len__(self) -> int:
        return len(self.resources) + len(self.templates) + len(self.prompts)


async def list_pages(what: str, page: Page[M], key: Callable[[M], str], redactor: Redactor, warn: Warn) -> list[M]:
    """Every page of `what` (at most `MAX_PAGES`, stopping at a repeated cursor); the first item of a `key` wins;
    credential values taken out of every item."""
    items: dict[str, M] = {}
    cursor: str | None = None
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        found, cursor = await page(cursor)
        for item in found:
            items.setdefault(key(item), item)
        if cursor is None:
            return redacted(list(items.values()), redactor)
        if cursor in seen:
            await warn(f"{what} repeats cursor {cursor!r}; using the items so far")
            return redacted(list(items.values()), redactor)
        seen.add(cursor)
    await warn(f"{what} did not end after {MAX_PAGES} pages; using those")
    return redacted(list(items.values()), redactor)


async def list_tools(client: Client, redactor: Redactor, warn: Warn) -> list[Tool]:
    async def page(cursor: str | None) -> tuple[list[Tool], str | None]:
        result = await client.list_tools(cursor=cursor)
        return result.tools, result.next_cursor

    return await list_pages("tools/list", page, lambda tool: tool.name, redactor, warn)


async def list_extras(client: Client, redactor: Redactor, warn: Warn) -> Extras:
    """Resources, resource templates and prompts, each only when the server's capabilities say it has them."""
    capabilities = client.server_capabilities
    resources: list[Resource] = []
    templates: list[ResourceTemplate] = []
    prompts: list[Prompt] = []

    async def resource_page(cursor: str | None) -> tuple[list[Resource], str | None]:
        result = await client.list_resources(cursor=cursor)
        return result.resources, result.next_cursor

    async def template_page(cursor: str | None) -> tuple[list[ResourceTemplate], str | None]:
        result = await client.list_resource_templates(cursor=cursor)
        return result.resource_templates, result.next_cursor

    async def prompt_page(cursor: str | None) -> tuple[list[Prompt], str | None]:
        result = await client.list_prompts(cursor=cursor)
        return result.prompts, result.next_cursor

    if capabilities.resources is not None:
        resources = await list_pages("resources/list", resource_page, lambda r: r.uri, redactor, warn)
        templates = await list_pages(
            "resources/templates/list", template_page, lambda t: t.uri_template, redactor, warn
        )
    if capabilities.prompts is not None:
        prompts = await list_pages("prompts/list", prompt_page, lambda p: p.name, redactor, warn)
    return Extras(tuple(resources), tuple(templates), tuple(prompts), digest(resources, templates, prompts))


def redacted(items: list[M], redactor: Redactor) -> list[M]:
    """The items with any credential value taken out of their names, descriptions and schemas."""
    if not redactor:
        return items
    return [
        item
        if (dumped := _dumped(item)) == redactor.value(dumped)
        else type(item).model_validate(redactor.value(dumped))
        for item in items
    ]


def differ(old: Sequence[Tool], new: Sequence[Tool]) -> bool:
    """Whether two listings differ in anything a client can see."""
    return digest(old) != digest(new)


def digest(*listings: Sequence[BaseModel]) -> str:
    """A SHA-256 of what a client can see of `listings`: equal digests, nothing to rebuild."""
    dumped = [[_dumped(item) for item in listing] for listing in listings]
    return hashlib.sha256(json.dumps(dumped, sort_keys=True, default=str).encode()).hexdigest()


def lists(count: int, extras: Extras | None = None) -> str:
    """`lists 3 tools` (and `, 2 resources, 1 prompt` when it has extras), for events."""
    text = f"lists {plural(count, 'tool')}"
    if extras:
        parts = [
            (len(extras.resources), "resource"),
            (len(extras.templates), "template"),
            (len(extras.prompts), "prompt"),
        ]
        text += "".join(f", {plural(n, word)}" for n, word in parts if n)
    return text


def _dumped(item: BaseModel) -> dict[str, Any]:
    return item.model_dump(mode="json", by_alias=True, exclude_none=True)
