"""What every facade builder gets and returns."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Builder", "Services", "public"]


@dataclass(frozen=True)
class Services:
    """What facades may use of the run: its output, its error text, the guarded `getattr`, and the names of its
    servers (for the hint when `import time` hides the server `time`)."""

    write: Callable[[str], None]
    describe: Callable[[BaseException], str]
    getattr: Callable[..., Any]
    servers: frozenset[str] = frozenset()


Builder = Callable[[Services], dict[str, Any]]


def public(module_name: str, names: tuple[str, ...] | str) -> dict[str, Any]:
    """The named members of a real module (`names` may be one space-separated string)."""
    module = importlib.import_module(module_name)
    if isinstance(names, str):
        names = tuple(names.split())
    return {name: getattr(module, name) for name in names}
