"""The argument rules' helpers: literal values and `**{...}` keys read from the AST, what a schema accepts, the
messages for unknown and missing arguments, and the nearest names to suggest."""

from __future__ import annotations

import ast
import difflib
import json
import keyword
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

from jsonschema.protocols import Validator

from portal_mcp.catalog.stubs.schema import resolve_pointer
from portal_mcp.errors import ArgumentError
from portal_mcp.naming import python_name

_MAX_LITERAL_DEPTH: Final = 32
_MAX_NAMES_SHOWN: Final = 12
UNKNOWN: Final = object()
"""What `literal_value` returns for an expression whose value is not known before the code runs."""


def literal_keys(node: ast.expr) -> dict[str, tuple[ast.AST, ast.expr]] | None:
    """The keys of a `**{"key": value}` literal (each with its key node), or None if they are not all known."""
    if not isinstance(node, ast.Dict):
        return None
    keys: dict[str, tuple[ast.AST, ast.expr]] = {}
    for key, value in zip(node.keys, node.values, strict=True):
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
            return None  # `**{**other}` or a computed key
        keys[key.value] = (key, value)
    return keys


def literal_value(node: ast.expr, depth: int = 0) -> Any:
    """The JSON value `node` evaluates to when it is a literal, else `UNKNOWN`."""
    if depth > _MAX_LITERAL_DEPTH:
        return UNKNOWN
    if isinstance(node, ast.Constant):
        value = node.value
        if value is None or isinstance(value, str | int) or (isinstance(value, float) and math.isfinite(value)):
            return value
        return UNKNOWN  # bytes, complex, Ellipsis: not JSON; the sandbox says so at the call
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = node.operand
        number = operand.value if isinstance(operand, ast.Constant) else None
        if isinstance(number, int | float) and not isinstance(number, bool) and math.isfinite(number):
            return -number if isinstance(node.op, ast.USub) else number
        return UNKNOWN
    if isinstance(node, ast.List | ast.Tuple):
        items = [literal_value(item, depth + 1) for item in node.elts]
        return UNKNOWN if any(item is UNKNOWN for item in items) else items
    if isinstance(node, ast.Dict):
        result: dict[str, Any] = {}
        for key, item_node in zip(node.keys, node.values, strict=True):
            if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                return UNKNOWN
            item = literal_value(item_node, depth + 1)
            if item is UNKNOWN:
                return UNKNOWN
            result[key.value] = item
        return result
    return UNKNOWN


def accepts_key(schema: Mapping[str, Any], key: str, declares_properties: bool) -> bool:
    """Whether an undeclared `key` may be passed: the schema says other keys are fine, or says nothing at all."""
    if not declares_properties:
        # No declared parameters and no explicit `additionalProperties: false`: too vague to call a key unknown.
        return any(part.get("additionalProperties", True) is not False for part in _object_parts(schema))
    for part in _object_parts(schema):
        extra = part.get("additionalProperties", False)
        if extra is not False or part.get("unevaluatedProperties", False) is not False:
            return True
        patterns = part.get("patternProperties")
        if isinstance(patterns, Mapping) and any(_matches(pattern, key) for pattern in patterns):
            return True
    return False


def _object_parts(schema: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """The root schema and the object schemas it is made of (`$ref`, `allOf`, `anyOf`, `oneOf`), one level deep."""
    yield schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and (target := resolve_pointer(schema, ref)) is not None:
        yield target
    for combinator in ("allOf", "anyOf", "oneOf"):
        parts = schema.get(combinator)
        if isinstance(parts, list):
            yield from (part for part in parts if isinstance(part, Mapping))


def _matches(pattern: object, key: str) -> bool:
    try:
        return isinstance(pattern, str) and re.search(pattern, key) is not None
    except re.error:
        return True  # a pattern we cannot read might match: do not call the key unknown


def unknown_argument(qualified: str, key: str, properties: Mapping[str, Any]) -> tuple[str, list[str]]:
    """The message for an undeclared keyword, and the parameters it suggests instead (best first)."""
    keys = list(properties)
    # Stubs rename keys that are not keyword arguments (`from` -> `from_`) and say to pass them as `**{...}`.
    suggested = [prop for prop in keys if not _is_keyword_name(prop) and python_name(prop) == key]
    if suggested:
        problem = f"pass the parameter {suggested[0]!r} as `**{{{json.dumps(suggested[0])}: value}}`"
    elif suggested := nearest(key, keys):
        problem = f"is not a parameter of this tool; did you mean {', '.join(_spelled(name) for name in suggested)}?"
    else:
        shown = ", ".join(keys[:_MAX_NAMES_SHOWN]) + (", ..." if len(keys) > _MAX_NAMES_SHOWN else "")
        problem = f"is not a parameter of this tool (parameters: {shown or 'none'})"
    return ArgumentError(qualified, key, problem).message, suggested


def missing_arguments(qualified: str, missing: list[str]) -> str:
    if len(missing) == 1:
        return ArgumentError(qualified, missing[0], "is required but was not passed").message
    names = ", ".join(repr(name) for name in missing)
    return f"{qualified}: arguments {names}: are required but were not passed"


def schema_is_valid(cls: type[Validator], schema: Mapping[str, Any]) -> bool:
    """As the bridge decides it: a schema failing `check_schema` is not validated against. Slow: error path only."""
    try:
        cls.check_schema(dict(schema))
    except Exception:
        return False
    return True


def nearest(name: str, candidates: Iterable[str], *, limit: int = 3, cutoff: float = 0.6) -> list[str]:
    """Candidates that look like `name`: the same words in another case or separator style first, then the most
    similar ones (only those about as similar as the best, so `titel` suggests `title` and not also `state`)."""
    options = list(candidates)
    folded = _fold(name)
    same = [option for option in options if _fold(option) == folded]
    matcher = difflib.SequenceMatcher()
    matcher.set_seq2(name)
    scored: list[tuple[float, str]] = []
    for option in options:
        matcher.set_seq1(option)
        if matcher.real_quick_ratio() >= cutoff and matcher.quick_ratio() >= cutoff and matcher.ratio() >= cutoff:
            scored.append((matcher.ratio(), option))
    scored.sort(key=lambda item: -item[0])
    close = [option for score, option in scored if score >= scored[0][0] - 0.1]
    return list(dict.fromkeys(same + close))[:limit]


def _fold(name: str) -> str:
    return re.sub(r"[\W_]+", "", name).lower()


def _is_keyword_name(key: str) -> bool:
    """Whether `key` can be written as `key=value` in a call (`type=` can, `from=` cannot)."""
    return key.isidentifier() and not keyword.iskeyword(key)


def _spelled(key: str) -> str:
    return repr(key) if _is_keyword_name(key) else f"`**{{{json.dumps(key)}: value}}`"
