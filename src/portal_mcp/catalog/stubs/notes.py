"""What a stub's docs say about a schema that its Python type cannot: formats, ranges, enums too long for `Literal`,
unions of too many object shapes. The limits here decide where `TypeBuilder` stops spelling a type out."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from portal_mcp.catalog.schemas import as_list, expand

MAX_LITERALS = 30
"""Enums longer than this are typed by their base type and described instead: a 300-value Literal costs more
tokens than it is worth to the model reading it."""

MAX_OBJECT_VARIANTS = 12
"""A union of more object shapes than this (one real schema has 146) is typed `dict[str, Any]`: spelled out it would
cost thousands of tokens for one parameter."""

# Formats that only restate the Python type (`int32` on an integer); not worth the tokens.
_NUMERIC_FORMATS = frozenset({"int32", "int64", "float", "double", "decimal", "integer", "number"})


def notes(schema: object, root: Mapping[str, Any], depth: int = 0) -> list[str]:
    """Facts a type cannot carry (format, range, an enum too long for `Literal`), for the docs."""
    if not isinstance(schema, Mapping) or depth > 3:
        return []
    schema = expand(schema, root)
    found: list[str] = []
    if isinstance(schema.get("format"), str) and schema["format"] not in _NUMERIC_FORMATS:
        found.append(f"format: {schema['format']}")
    low, high = schema.get("minimum"), schema.get("maximum")
    if _is_number(low) and _is_number(high):
        found.append(f"{low}..{high}")
    elif _is_number(low):
        found.append(f">= {low}")
    elif _is_number(high):
        found.append(f"<= {high}")
    values = as_list(schema.get("enum"))
    if len(values) > MAX_LITERALS:
        shown = ", ".join(json.dumps(value) for value in values[:8])
        found.append(f"one of {len(values)} values: {shown}, ...")
    branches = [
        b
        for b in as_list(schema.get("anyOf")) + as_list(schema.get("oneOf"))
        if isinstance(b, Mapping) and not _is_null(b)
    ]
    if object_variants(branches) > MAX_OBJECT_VARIANTS:
        found.append(f"one of {object_variants(branches)} object shapes")
    if len(branches) == 1 and not found:
        found.extend(notes(branches[0], root, depth + 1))  # `X | None` from pydantic: the facts live on the X branch
    items = schema.get("items")
    if isinstance(items, Mapping) and "properties" not in items:
        found.extend(f"items {note}" for note in notes(items, root, depth + 1))
    return found


def object_variants(branches: Iterable[object]) -> int:
    return sum(1 for branch in branches if isinstance(branch, Mapping) and is_objectish(branch))


def _is_null(schema: Mapping[str, Any]) -> bool:
    return schema.get("type") == "null"


def is_objectish(schema: Mapping[str, Any]) -> bool:
    return "properties" in schema or "$ref" in schema


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
