"""`str.format` and `str.format_map` for agent code, with every field lookup going through the guards.

CPython's own `str.format` walks `{0.attr[key]}` in C, past every guard (CVE-2023-41039, CVE-2026-76825), so
the guards never hand it out. This is `string.Formatter` with `get_field` doing each step with the sandbox's
`getattr` and `_getitem_`: `"{0.__class__.__base__}".format(x)` fails exactly as `x.__class__.__base__` would.
"""

from __future__ import annotations

import string
from _string import formatter_field_name_split  # type: ignore[import-not-found]
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["GuardedFormatter"]


class GuardedFormatter(string.Formatter):
    """A formatter whose field lookups use `getattr` and `getitem` (the run's guards)."""

    def __init__(self, getattr_: Callable[[Any, str], Any], getitem: Callable[[Any, Any], Any]) -> None:
        self._getattr = getattr_
        self._getitem = getitem

    def get_field(self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        first, rest = formatter_field_name_split(field_name)
        obj = self.get_value(first, args, kwargs)
        for is_attribute, key in rest:
            obj = self._getattr(obj, key) if is_attribute else self._getitem(obj, key)
        return obj, first

    def method(self, obj: Any, name: str) -> Callable[..., str]:
        """`text.format` / `text.format_map` (or `str.format`, taking the template first) for agent code."""
        if isinstance(obj, type):  # str.format(template, ...)
            if name == "format_map":
                return lambda template, mapping: self.vformat(template, (), mapping)
            return lambda template, *args, **kwargs: self.vformat(template, args, kwargs)
        if name == "format_map":
            return lambda mapping: self.vformat(obj, (), mapping)
        return lambda *args, **kwargs: self.vformat(obj, args, kwargs)
