"""The JSON Schema rules every reader of a tool's inputSchema shares: the stubs, the pre-run check and the bridge.

```
shape = object_shape(entry.input_schema)            # the parameters: properties, required, **kwargs
arguments = drop_omitted(schema, {"limit": None})   # `= None` in a stub means "leave it out"
validators.check(entry.qualified_name, schema, arguments)   # raises ArgumentError, worded for the agent
```
A broken schema (one failing `check_schema`) must not make its tool uncallable: it is validated only as "an
object". The pre-run check and the bridge word a rejected argument the same way (`argument_error`), so the agent
reads the same message whether its code was stopped before it ran or at the call.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import jsonschema
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.protocols import Validator

from portal_mcp.errors import ArgumentError

__all__ = [
    "MAX_DEPTH",
    "ObjectShape",
    "Validators",
    "accepts_null",
    "argument_error",
    "as_list",
    "as_mapping",
    "as_strings",
    "describe_validation_error",
    "drop_omitted",
    "expand",
    "merged",
    "object_shape",
    "refs_in",
    "resolve_pointer",
]

MAX_DEPTH = 32
"""How deep `$ref` chains and nested schemas are followed before giving up (schemas can be recursive)."""
_ANY_OBJECT: Mapping[str, Any] = {"type": "object"}


@dataclass(frozen=True)
class ObjectShape:
    """The keys of an object schema, as a function signature needs them."""

    properties: Mapping[str, Any]
    required: frozenset[str]
    extra: Mapping[str, Any] | None = None
    """The schema of additional keys, when the object declares one (they become `**kwargs`)."""


def resolve_pointer(root: Mapping[str, Any], ref: str) -> Mapping[str, Any] | None:
    """The subschema a local `$ref` (`#`, `#/$defs/X`, any JSON pointer) points to, or None."""
    if not ref.startswith("#"):
        return None
    node: Any = root
    pointer = unquote(ref[1:])
    for raw in pointer.split("/")[1:] if pointer else []:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node if isinstance(node, Mapping) else None


def object_shape(schema: Mapping[str, Any], root: Mapping[str, Any] | None = None) -> ObjectShape:
    """The properties of an object schema after following `$ref`, merging `allOf` and folding `anyOf` variants.

    Keys of `anyOf`/`oneOf` variants are all offered; only keys every variant requires stay required.
    """
    root = schema if root is None else root
    schema = expand(schema, root)
    properties: dict[str, Any] = dict(as_mapping(schema.get("properties")))
    required = set(as_strings(schema.get("required")))
    variants = [
        expand(v, root) for v in as_list(schema.get("anyOf")) + as_list(schema.get("oneOf")) if isinstance(v, Mapping)
    ]
    variants = [variant for variant in variants if as_mapping(variant.get("properties"))]
    if variants:
        shared: set[str] | None = None
        for variant in variants:
            for key, sub in as_mapping(variant.get("properties")).items():
                properties.setdefault(key, sub)
            needed = set(as_strings(variant.get("required")))
            shared = needed if shared is None else shared & needed
        required |= shared or set()
    extra = schema.get("additionalProperties")
    return ObjectShape(
        properties=properties,
        required=frozenset(key for key in required if key in properties),
        extra=extra if isinstance(extra, Mapping) and extra else None,
    )


def expand(schema: Mapping[str, Any], root: Mapping[str, Any], depth: int = 0) -> Mapping[str, Any]:
    """Follow a top-level `$ref` and merge `allOf`, so an object's properties can be read directly."""
    if depth > MAX_DEPTH:
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = resolve_pointer(root, ref)
        return expand(target, root, depth + 1) if target is not None else {}
    members = [member for member in as_list(schema.get("allOf")) if isinstance(member, Mapping)]
    if not members:
        return schema
    rest = {key: value for key, value in schema.items() if key != "allOf"}
    return merged([rest, *(expand(member, root, depth + 1) for member in members)])


def merged(schemas: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """`allOf` members as one schema: properties and required lists add up, other keys: the first one wins."""
    result: dict[str, Any] = {}
    for part in schemas:
        for key, value in part.items():
            if key == "properties" and isinstance(value, Mapping):
                result["properties"] = {**result.get("properties", {}), **value}
            elif key == "required" and isinstance(value, list):
                result["required"] = [*result.get("required", []), *value]
            else:
                result.setdefault(key, value)
    if "properties" in result:
        result.setdefault("type", "object")
    return result


def refs_in(node: object) -> Iterator[str]:
    """Every `$ref` string anywhere in a schema."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs_in(value)


def drop_omitted(schema: Mapping[str, Any], arguments: dict[str, Any]) -> dict[str, Any]:
    """Drop optional arguments passed as None when the schema does not accept null.

    Stubs show optional parameters as `= None` meaning "omit it", so `tool(x=None)` must mean the same as `tool()`.
    """
    properties = schema.get("properties")
    if not isinstance(properties, Mapping) or None not in arguments.values():
        return arguments
    required = schema.get("required") or ()
    return {
        key: value
        for key, value in arguments.items()
        if value is not None or key in required or accepts_null(properties.get(key))
    }


def accepts_null(schema: Any) -> bool:
    """Whether a property schema lets `null` through (an unknown shape does: validation has the last word)."""
    if not isinstance(schema, Mapping):
        return True
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind) or schema.get("nullable") is True:
        return True
    if kind is None and not any(key in schema for key in ("anyOf", "oneOf", "enum", "const", "$ref", "allOf")):
        return True
    return any(accepts_null(option) for key in ("anyOf", "oneOf") for option in schema.get(key) or ())


MAX_ARGUMENT_DEPTH = 200
"""How deeply arguments may nest (objects and lists in one another): the MCP SDK's serializer (pydantic) refuses a
message nested about 255 levels deep, so a deeper call could not be sent and failed as an internal error."""


def nesting(value: Any) -> int:
    """How deeply a JSON value's objects and lists nest (0 for a scalar), without recursion."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            depth += 1
            deepest = max(deepest, depth)
            stack.extend((child, depth) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


class Validators:
    """jsonschema validators per input schema, cached by identity (the catalog owns its schemas and keeps them).

    `build` is cheap and may fail on a malformed keyword when used; `is_valid` runs the slow `check_schema` once per
    schema; `check` validates arguments as the bridge does, broken schemas as "any object"."""

    def __init__(self) -> None:
        self._built: dict[int, tuple[Mapping[str, Any], Validator]] = {}
        self._valid: dict[int, tuple[Mapping[str, Any], bool]] = {}

    def build(self, schema: Mapping[str, Any]) -> Validator:
        """The validator of `schema` as written (not checked against its metaschema)."""
        cached = self._built.get(id(schema))
        if cached is not None and cached[0] is schema:
            return cached[1]
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        validator: Validator = cls(schema)
        self._built[id(schema)] = (schema, validator)
        return validator

    def is_valid(self, schema: Mapping[str, Any]) -> bool:
        """Whether `schema` passes `check_schema`; a schema that does not is not validated against."""
        cached = self._valid.get(id(schema))
        if cached is not None and cached[0] is schema:
            return cached[1]
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        try:
            cls.check_schema(dict(schema))
            valid = True
        except Exception:  # SchemaError, or a keyword the metaschema check itself chokes on
            valid = False
        self._valid[id(schema)] = (schema, valid)
        return valid

    def check(self, qualified: str, schema: Mapping[str, Any], arguments: dict[str, Any]) -> None:
        """Raise `ArgumentError` (the best match of jsonschema's errors) when `arguments` do not fit `schema`, or nest
        deeper than `MAX_ARGUMENT_DEPTH`."""
        depth = nesting(arguments)
        if depth > MAX_ARGUMENT_DEPTH:
            problem = (
                f"they nest {depth} levels deep, over the {MAX_ARGUMENT_DEPTH} a call can carry; send flatter data"
            )
            raise ArgumentError(qualified, "", problem)
        validator = self.build(schema if self.is_valid(schema) else _ANY_OBJECT)
        error = best_match(validator.iter_errors(arguments))
        if error is not None:
            raise argument_error(qualified, error)


def argument_error(qualified: str, error: ValidationError) -> ArgumentError:
    """The agent-facing error for one jsonschema error (the pre-run check and the bridge both raise this)."""
    return ArgumentError(qualified, *describe_validation_error(error))


def describe_validation_error(error: ValidationError) -> tuple[str, str]:
    """(field path, problem) for a jsonschema error, worded for someone fixing a call."""
    path = ".".join(str(part) for part in error.absolute_path)
    expected: Any = error.validator_value
    schema: Any = error.schema
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [name for name in expected if name not in error.instance]
        field = ".".join(filter(None, [path, missing[0] if missing else ""]))
        return field, "is required but was not passed"
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(schema.get("properties", {})) if isinstance(schema, dict) else []
        extra = sorted(set(error.instance) - set(allowed))
        field = ".".join(filter(None, [path, extra[0] if extra else ""]))
        return field, f"is not a parameter of this tool (parameters: {', '.join(allowed) or 'none'})"
    value = json.dumps(error.instance, default=str)
    if len(value) > 60:
        value = value[:57] + "..."
    if error.validator == "type":
        return path, f"expected {expected}, got {value}"
    if error.validator == "enum":
        choices = ", ".join(json.dumps(choice) for choice in expected)
        return path, f"must be one of {choices}, got {value}"
    return path, error.message


def as_mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def as_list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def as_strings(value: object) -> list[str]:
    return [item for item in as_list(value) if isinstance(item, str)]
