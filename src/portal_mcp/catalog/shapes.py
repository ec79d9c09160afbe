"""Observed result shapes: what a tool without an `outputSchema` returns, learned from its calls, as structure only.

A shape is a JSON value of nested dicts, one node per place in a result, keyed by the JSON kinds seen there:
```
{"object": {"n": 3, "keys": {"id": {"int": 3}, "title": {"str": 3}, "labels": {"list": {"n": 2, "items": ...}}}}}
```
`n` and the scalar counts are how many values were seen, so a key seen fewer times than its object is optional.
Values are never kept: no strings, numbers or enum members, only kinds. Keys are kept only while they look like
field names; an object whose keys look like data (an email, an id, a date, a path), that has more than
`MAX_KEYS` keys, or whose many keys all hold one scalar kind is recorded as a `map` (`dict[str, V]`), its keys
dropped; so is an object whose keys keep changing from call to call, once that shows (`_varying`). The residual
risk, stated in the README: a data key that looks like a field name (`{"alice": 3}`) in an object with few keys is
kept until later calls show the keys vary, or for good when they never do.

The work per result is bounded (`MAX_NODES` values visited, the first `MAX_ITEMS` items of a list, `MAX_DEPTH`
levels; beyond that a value is `any`: not looked at, typed `Any` unless other calls saw more), so observing a large
result costs about the same as a small one, and a merged shape is pruned to `MAX_SHAPE_NODES` nodes by cutting its
deepest levels to `any`.

`ShapeBook` holds the merged shape of every tool in memory for the stubs and hands each call's shape (a delta) to
a store that persists it (`control/audit_store/shapes.py`); without one, shapes live as long as the process.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from portal_mcp.catalog.model import ToolEntry

Shape = dict[str, Any]
"""A node: JSON kind -> a count (scalars), or `{"n": count, ...}` (object, map, list)."""

MAX_DEPTH = 6
MAX_ITEMS = 20
MAX_NODES = 1_000
MAX_KEYS = 40
UNIFORM_KEYS = 16
"""An object with at least this many keys, all holding the same scalar kind, is a map (`{"alice": 3, ...}`)."""
VARYING_AFTER = 3
VARYING_KEYS = 8
MAX_SHAPE_NODES = 2_000
MAX_STUB_NODES = 200
"""A return type shown in a stub is cut to this many nodes (deepest levels typed `Any`): a GitHub issue list is
about 80, and a search reply should not carry thousands of tokens for one result type."""
MAX_KEY_CHARS = 40

_SCALARS = ("null", "bool", "int", "float", "str", "any")
_FIELD_NAME = re.compile(r"[@$]?[A-Za-z_][A-Za-z0-9_]*(?:[-.:][A-Za-z0-9_]+)*")
_DATA_PARTS = re.compile(r"\d{4,}|[0-9a-fA-F]{12,}")


def data_key(key: str) -> bool:
    """Whether a dict key looks like data (`a@b.com`, `2024-01-01`, `/tmp/x`, an id) rather than a field name."""
    return len(key) > MAX_KEY_CHARS or not _FIELD_NAME.fullmatch(key) or bool(_DATA_PARTS.search(key))


def shape_of(value: object) -> Shape:
    """The shape of one result (one call), visiting at most `MAX_NODES` values."""
    return _Observer().node(value, 0)


class _Observer:
    def __init__(self) -> None:
        self.budget = MAX_NODES

    def node(self, value: object, depth: int) -> Shape:
        self.budget -= 1
        if self.budget < 0 or depth > MAX_DEPTH:
            return {"any": 1}
        if value is None:
            return {"null": 1}
        if isinstance(value, bool):
            return {"bool": 1}
        if isinstance(value, int):
            return {"int": 1}
        if isinstance(value, float):
            return {"float": 1}
        if isinstance(value, str):
            return {"str": 1}
        if isinstance(value, list | tuple):
            items: Shape | None = None
            for item in value[:MAX_ITEMS]:
                if items is not None and self.budget <= 0:
                    break  # the items seen so far stand for the rest
                items = merge(items, self.node(item, depth + 1))
            return {"list": {"n": 1, "items": items}}
        if isinstance(value, dict):
            keys = [key for key in value if isinstance(key, str)]
            if len(keys) > MAX_KEYS or any(data_key(key) for key in keys):
                values: Shape | None = None
                for key in keys[:MAX_ITEMS]:
                    if values is not None and self.budget <= 0:
                        break
                    values = merge(values, self.node(value[key], depth + 1))
                return {"map": {"n": 1, "values": values}}
            fields = {key: self.node(value[key], depth + 1) for key in keys}
            return _as_map_if_uniform({"object": {"n": 1, "keys": fields}})
        return {"any": 1}


def merge(a: Shape | None, b: Shape | None) -> Shape | None:
    """The shape of the values of `a` and of `b` together (counts added, keys united, maps absorbing objects)."""
    if a is None or b is None:
        return a if b is None else b
    merged: Shape = {}
    for kind in {*a, *b}:
        x, y = a.get(kind), b.get(kind)
        if x is None or y is None:
            merged[kind] = x if y is None else y
        elif kind in _SCALARS:
            merged[kind] = x + y
        elif kind == "list":
            merged[kind] = {"n": x["n"] + y["n"], "items": merge(x.get("items"), y.get("items"))}
        elif kind == "map":
            merged[kind] = {"n": x["n"] + y["n"], "values": merge(x.get("values"), y.get("values"))}
        else:
            keys = dict(x["keys"])
            for key, sub in y["keys"].items():
                keys[key] = merge(keys.get(key), sub)
            merged[kind] = {"n": x["n"] + y["n"], "keys": keys}
    if "object" in merged and (len(merged["object"]["keys"]) > MAX_KEYS or "map" in merged or _varying(merged)):
        merged = _fold_into_map(merged)
    return _as_map_if_uniform(merged)


def _varying(node: Shape) -> bool:
    """Whether an object's keys look like data because they keep changing: seen at least `VARYING_AFTER` times, with
    at least `VARYING_KEYS` keys, three quarters of them seen only once (`{"alice": 3}`, then `{"bob": 1}`, ...)."""
    obj = node["object"]
    keys = obj["keys"]
    if obj["n"] < VARYING_AFTER or len(keys) < VARYING_KEYS:
        return False
    return sum(1 for sub in keys.values() if calls(sub) == 1) * 4 > len(keys) * 3


def _fold_into_map(node: Shape) -> Shape:
    """`node` with its object kind folded into a map kind (its keys dropped, their shapes merged)."""
    node = dict(node)
    obj = node.pop("object")
    values: Shape | None = None
    for sub in obj["keys"].values():
        values = merge(values, sub)
    mapped = node.get("map", {"n": 0, "values": None})
    node["map"] = {"n": mapped["n"] + obj["n"], "values": merge(mapped["values"], values)}
    return node


def _as_map_if_uniform(node: Shape) -> Shape:
    obj = node.get("object")
    if obj is None or len(obj["keys"]) < UNIFORM_KEYS:
        return node
    kinds = {frozenset(sub) for sub in obj["keys"].values()}
    if len(kinds) == 1 and next(iter(kinds)) <= set(_SCALARS):
        return _fold_into_map(node)
    return node


def is_shape(value: object, depth: int = 0) -> bool:
    """Whether `value` (read back from a store) is a well-formed shape: a damaged row is skipped, not rendered."""
    if not isinstance(value, dict) or not value or depth > MAX_DEPTH + 1:
        return False
    for kind, payload in value.items():
        if kind in _SCALARS:
            ok = type(payload) is int
        elif kind in ("list", "map", "object") and isinstance(payload, dict) and type(payload.get("n")) is int:
            if kind == "object":
                keys = payload.get("keys")
                ok = isinstance(keys, dict) and all(is_shape(sub, depth + 1) for sub in keys.values())
            else:
                sub = payload.get("items" if kind == "list" else "values")
                ok = sub is None or is_shape(sub, depth + 1)
        else:
            ok = False
        if not ok:
            return False
    return True


def calls(node: Shape) -> int:
    """How many values a node was seen with (for the root: how many calls)."""
    return sum(value if isinstance(value, int) else value["n"] for value in node.values())


def size(node: Shape | None) -> int:
    if node is None:
        return 0
    total = 1
    for kind, value in node.items():
        if kind == "list":
            total += size(value.get("items"))
        elif kind == "map":
            total += size(value.get("values"))
        elif kind == "object":
            total += sum(size(sub) for sub in value["keys"].values())
    return total


def bounded(node: Shape, limit: int = MAX_SHAPE_NODES) -> Shape:
    """`node` cut to at most `limit` nodes, deepest levels first (they become `any`)."""
    depth = MAX_DEPTH
    while size(node) > limit and depth > 0:
        depth -= 1
        node = _cut(node, depth)
    return node


def _cut(node: Shape, depth: int) -> Shape:
    if depth <= 0 and any(kind not in _SCALARS for kind in node):
        return {"any": calls(node)}
    cut: Shape = {}
    for kind, value in node.items():
        if kind == "list":
            items = value.get("items")
            cut[kind] = {"n": value["n"], "items": None if items is None else _cut(items, depth - 1)}
        elif kind == "map":
            values = value.get("values")
            cut[kind] = {"n": value["n"], "values": None if values is None else _cut(values, depth - 1)}
        elif kind == "object":
            cut[kind] = {"n": value["n"], "keys": {key: _cut(sub, depth - 1) for key, sub in value["keys"].items()}}
        else:
            cut[kind] = value
    return cut


def to_schema(node: Shape | None) -> dict[str, Any]:
    """A JSON Schema for the values a shape describes (what the stubs convert to Python types)."""
    if node is None:
        return {}
    branches: list[dict[str, Any]] = []
    # `any` is a value not looked at (past a bound): it says nothing when other kinds were seen there.
    kinds = [kind for kind in node if kind != "any"]
    if not kinds:
        return {}
    for kind in sorted(kinds, key=_KIND_ORDER.index):
        value = node[kind]
        if kind == "list":
            items = value.get("items")
            branches.append({"type": "array", "items": to_schema(items)} if items is not None else {"type": "array"})
        elif kind == "map":
            branches.append({"type": "object", "additionalProperties": to_schema(value.get("values"))})
        elif kind == "object":
            keys: Mapping[str, Shape] = value["keys"]
            required = [key for key, sub in keys.items() if calls(sub) >= value["n"]]
            properties = {key: to_schema(sub) for key, sub in keys.items()}
            branches.append({"type": "object", "properties": properties, "required": required})
        else:
            branches.append({"type": _JSON_TYPES[kind]})
    return branches[0] if len(branches) == 1 else {"anyOf": branches}


_KIND_ORDER = ("object", "map", "list", "str", "int", "float", "bool", "any", "null")
_JSON_TYPES = {"null": "null", "bool": "boolean", "int": "integer", "float": "number", "str": "string"}


@dataclass(frozen=True)
class Observed:
    """A tool's return type as learned from calls: a JSON Schema and how many calls it comes from."""

    schema: Mapping[str, Any]
    calls: int


class ShapeBook:
    """The merged result shape of every observed tool, in memory; each call's shape also goes to `persist`.

    `skip(server)` says whether a server's results are not to be observed (its `observe_results: false`).
    Tools with an `outputSchema` are not observed: the server already says what they return.
    """

    def __init__(
        self,
        known: Mapping[str, Shape] | None = None,
        *,
        persist: Callable[[str, Shape], None] | None = None,
        skip: Callable[[str], bool] = lambda server: False,
    ) -> None:
        self._shapes: dict[str, Shape] = dict(known or {})
        self._persist = persist
        self._skip = skip

    def observe(self, entry: ToolEntry, value: object) -> None:
        """Learn from one successful call of `entry` that returned `value` (bounded work, never raises on a value)."""
        if entry.output_schema is not None or self._skip(entry.server):
            return
        delta = shape_of(value)
        tool = entry.qualified_name
        self._shapes[tool] = bounded(merge(self._shapes.get(tool), delta) or delta)
        if self._persist is not None:
            self._persist(tool, delta)

    def observed(self, entries: Iterable[ToolEntry]) -> dict[str, Observed]:
        """What is known of the given tools' results (by qualified name), for `render_stubs`."""
        found: dict[str, Observed] = {}
        for entry in entries:
            shape = self._shapes.get(entry.qualified_name)
            if shape is not None and entry.output_schema is None and not self._skip(entry.server):
                found[entry.qualified_name] = Observed(to_schema(bounded(shape, MAX_STUB_NODES)), calls(shape))
        return found

    def shape(self, tool: str) -> Shape | None:
        return self._shapes.get(tool)
