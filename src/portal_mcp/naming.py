"""The one place that knows how a server and a tool name become `server.python_name`, and back.

Rule (ARCHITECTURE.md): every character not valid in a Python identifier becomes `_`; a leading digit gets a
leading `_`; a keyword (or soft keyword / builtin constant) gets a trailing `_`. When two tools of one server
sanitise to the same name, the first in the server's listing order keeps it and the others get `_2`, `_3`, ...
in listing order, so names are stable as long as the server lists its tools in a stable order.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterable

_INVALID = re.compile(r"\W", re.ASCII)
_RESERVED = (frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | {"None", "True", "False"}) - {"_"}

SERVER_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
"""Server names are namespaces in agent code, so they must already be identifiers (checked at config load)."""


def python_name(tool_name: str) -> str:
    """Turn a tool name into a Python identifier per the naming contract."""
    name = _INVALID.sub("_", tool_name) or "_"
    if name[0].isdigit():
        name = "_" + name
    if name in _RESERVED:
        name += "_"
    return name


def assign_python_names(tool_names: Iterable[str]) -> dict[str, str]:
    """Map each tool name of one server to a unique python name, resolving collisions with `_2`, `_3`, ..."""
    taken: set[str] = set()
    return {tool: unique_name(python_name(tool), taken) for tool in tool_names}


def unique_name(base: str, taken: set[str]) -> str:
    """`base`, or `base_2`, `base_3`, ... : the first not in `taken`, which is then added to it."""
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}_{n}"
    taken.add(candidate)
    return candidate


def qualified_name(server: str, python_tool_name: str) -> str:
    """`server.python_name`, the name search results and agent code use."""
    return f"{server}.{python_tool_name}"


def split_qualified(name: str) -> tuple[str, str]:
    """Split `server.python_name`; raises ValueError when there is no dot."""
    server, dot, tool = name.partition(".")
    if not dot or not server or not tool:
        raise ValueError(f"{name!r} is not a qualified tool name of the form `server.tool`")
    return server, tool


def plural(count: int, noun: str) -> str:
    """A count and its noun, singular or plural: `1 tool`, `2 tools`, `0 servers`."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


RESOURCE_METHODS = ("resources", "resource_templates", "read_resource")
"""What agent code calls on a server besides its tools (`await server.read_resource(uri)`); a tool of the same
name wins."""

PORTAL_SCHEME = "portal"
"""The portal's own resources are `portal:NAME`; a server's resource `URI` is `portal://server/URI`."""


def resource_uri(server: str, uri: str) -> str:
    """The namespaced URI (or URI template) clients of the portal see for `server`'s resource `uri`."""
    return f"{PORTAL_SCHEME}://{server}/{uri}"


def split_resource_uri(uri: str) -> tuple[str, str] | None:
    """(server, the server's own URI) of a namespaced resource URI, or None if `uri` is not one."""
    rest = uri.removeprefix(f"{PORTAL_SCHEME}://")
    server, slash, own = rest.partition("/")
    if rest == uri or not slash or not own or re.match(SERVER_NAME_PATTERN, server) is None:
        return None
    return server, own
