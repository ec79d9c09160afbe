"""JSON Schema -> `PyType`, collecting the TypedDicts those types name.

One `TypeBuilder` serves one rendered text (a search reply, a `.pyi` module), so TypedDict names are unique within
it and identical definitions are emitted once. The builder never raises on a schema: whatever it does not
understand (remote `$ref`, `not`, `if`/`then`, a malformed keyword) becomes `Any`, because a stub that is a little
loose is useful and a stub that is missing is not.

Supported: the JSON types, `enum`/`const` (as `Literal`), `anyOf`/`oneOf` (unions), type lists, `nullable`,
`items`/`prefixItems`, `properties`/`required` (TypedDicts), `additionalProperties`/`patternProperties` (dicts),
`allOf` (merged), and local `$ref`s (JSON pointers into the same document, recursion included).
"""

from __future__ import annotations

import json
import keyword
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from portal_mcp.catalog.stubs.pytypes import (
    ANY,
    BOOL,
    FLOAT,
    INT,
    NONE,
    STR,
    DictOf,
    Field,
    ListOf,
    Named,
    PyType,
    TypedDictDef,
    literal,
    optional,
    type_of_value,
    union,
)
from portal_mcp.catalog.stubs.text import one_line

MAX_LITERALS = 30
"""Enums longer than this are typed by their base type and described instead: a 300-value Literal costs more
tokens than it is worth to the model reading it."""

MAX_OBJECT_VARIANTS = 12
"""A union of more object shapes than this (one real schema has 146) is typed `dict[str, Any]`: spelled out it would
cost thousands of tokens for one parameter."""

MAX_DEPTH = 32
FIELD_DOC_CHARS = 100

TYPING_NAMES = frozenset({"Any", "Literal", "NotRequired", "TypedDict"})
_RESERVED = TYPING_NAMES | {"str", "int", "float", "bool", "list", "dict", "None", "True", "False", "object"}
_STRUCTURAL = ("type", "properties", "items", "prefixItems", "additionalProperties", "enum", "const", "$ref")
# Formats that only restate the Python type (`int32` on an integer); not worth the tokens.
_NUMERIC_FORMATS = frozenset({"int32", "int64", "float", "double", "decimal", "integer", "number"})
_WORD = re.compile(r"[0-9A-Za-z]+")


@dataclass(frozen=True)
class ObjectShape:
    """The keys of an object schema, as a function signature needs them."""

    properties: Mapping[str, Any]
    required: frozenset[str]
    extra: Mapping[str, Any] | None = None
    """The schema of additional keys, when the object declares one (they become `**kwargs`)."""


def camel(text: str) -> str:
    """`get_current_time`, `get current time` -> `GetCurrentTime`; '' when `text` has no ASCII letters or digits."""
    name = "".join(word[0].upper() + word[1:] for word in _WORD.findall(text))
    return "T" + name if name[:1].isdigit() else name


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
    schema = _expand(schema, root)
    properties: dict[str, Any] = dict(_mapping(schema.get("properties")))
    required = set(_strings(schema.get("required")))
    variants = [_expand(v, root) for v in _list(schema.get("anyOf")) + _list(schema.get("oneOf")) if _is_map(v)]
    variants = [variant for variant in variants if _mapping(variant.get("properties"))]
    if variants:
        shared: set[str] | None = None
        for variant in variants:
            for key, sub in _mapping(variant.get("properties")).items():
                properties.setdefault(key, sub)
            needed = set(_strings(variant.get("required")))
            shared = needed if shared is None else shared & needed
        required |= shared or set()
    extra = schema.get("additionalProperties")
    return ObjectShape(
        properties=properties,
        required=frozenset(key for key in required if key in properties),
        extra=extra if isinstance(extra, Mapping) and extra else None,
    )


def notes(schema: object, root: Mapping[str, Any], depth: int = 0) -> list[str]:
    """Facts a type cannot carry (format, range, an enum too long for `Literal`), for the docs."""
    if not isinstance(schema, Mapping) or depth > 3:
        return []
    schema = _expand(schema, root)
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
    values = _list(schema.get("enum"))
    if len(values) > MAX_LITERALS:
        shown = ", ".join(json.dumps(value) for value in values[:8])
        found.append(f"one of {len(values)} values: {shown}, ...")
    branches = [b for b in _list(schema.get("anyOf")) + _list(schema.get("oneOf")) if _is_map(b) and not _is_null(b)]
    if _object_variants(branches) > MAX_OBJECT_VARIANTS:
        found.append(f"one of {_object_variants(branches)} object shapes")
    if len(branches) == 1 and not found:
        found.extend(notes(branches[0], root, depth + 1))  # `X | None` from pydantic: the facts live on the X branch
    items = schema.get("items")
    if isinstance(items, Mapping) and "properties" not in items:
        found.extend(f"items {note}" for note in notes(items, root, depth + 1))
    return found


class TypeBuilder:
    """Converts schemas to `PyType`s and remembers the TypedDicts they need, in definition order."""

    def __init__(self, reserved: Iterable[str] = ()) -> None:
        self._definitions: dict[str, TypedDictDef] = {}
        self._taken: set[str] = {*_RESERVED, *reserved}
        self._shapes: dict[tuple[Field, ...], str] = {}
        self._refs: dict[str, PyType] = {}
        # A $ref being converted right now; meeting it again means recursion, answered with its reserved name.
        self._pending: dict[str, str | None] = {}
        self._closure_keys: dict[tuple[int, str], tuple[Mapping[str, Any], str]] = {}

    def convert(self, schema: object, *, root: Mapping[str, Any], hint: str, depth: int = 0) -> PyType:
        """The Python type of values matching `schema`; `hint` names a TypedDict when the schema has no name."""
        if depth > MAX_DEPTH or not isinstance(schema, Mapping):
            return ANY
        result = self._convert(schema, root, hint, depth)
        return optional(result) if schema.get("nullable") is True else result

    def reserve(self, base: str) -> str:
        """A free top-level name based on `base` (`Item`, `Item2`, ...), now taken."""
        name = base if base.isidentifier() and not keyword.iskeyword(base) else "Object"
        candidate, n = name, 1
        while candidate in self._taken:
            n += 1
            candidate = f"{name}{n}"
        self._taken.add(candidate)
        return candidate

    def definitions_for(self, types: Iterable[PyType]) -> list[TypedDictDef]:
        """Every TypedDict the `types` need (transitively), in definition order."""
        wanted: set[str] = set()
        stack = [name for expr in types for name in expr.names()]
        while stack:
            name = stack.pop()
            if name in wanted or name not in self._definitions:
                continue
            wanted.add(name)
            stack.extend(self._definitions[name].names())
        return [definition for name, definition in self._definitions.items() if name in wanted]

    def _convert(self, schema: Mapping[str, Any], root: Mapping[str, Any], hint: str, depth: int) -> PyType:
        if "$ref" in schema:
            return self._ref(schema["$ref"], root, hint, depth)
        if schema is root and _is_plain_object(schema) and "#" in _refs_in(schema):
            return self._ref("#", root, hint, depth)  # the same TypedDict as its own recursive references
        if "const" in schema:
            return literal([schema["const"]])
        values = _list(schema.get("enum"))
        if values:
            return literal(values) if len(values) <= MAX_LITERALS else union(map(_base_type, values))
        for keyword_ in ("anyOf", "oneOf"):
            branches = [branch for branch in _list(schema.get(keyword_)) if _is_map(branch)]
            if not branches:
                continue
            if not any(_structural(branch) for branch in branches):
                # Variants that only switch `required` on and off constrain values, they don't change the type.
                rest = {key: value for key, value in schema.items() if key != keyword_}
                return self.convert(rest, root=root, hint=hint, depth=depth + 1)
            siblings = {key: schema[key] for key in _STRUCTURAL if key in schema}
            too_many = _object_variants(branches) > MAX_OBJECT_VARIANTS
            return union(
                DictOf(ANY)
                if too_many and _is_objectish(branch)
                else self.convert(
                    branch if "$ref" in branch else {**siblings, **branch}, root=root, hint=hint, depth=depth + 1
                )
                for branch in branches
            )
        if _list(schema.get("allOf")):
            return self.convert(self._merge_all_of(schema, root), root=root, hint=hint, depth=depth + 1)
        declared = schema.get("type")
        if isinstance(declared, list):
            return union(self._typed(schema, kind, root, hint, depth) for kind in declared if isinstance(kind, str))
        if isinstance(declared, str):
            return self._typed(schema, declared, root, hint, depth)
        if any(key in schema for key in ("properties", "additionalProperties", "patternProperties")):
            return self._typed(schema, "object", root, hint, depth)
        if "items" in schema or "prefixItems" in schema:
            return self._typed(schema, "array", root, hint, depth)
        return ANY

    def _typed(self, schema: Mapping[str, Any], kind: str, root: Mapping[str, Any], hint: str, depth: int) -> PyType:
        simple = {"string": STR, "integer": INT, "number": FLOAT, "boolean": BOOL, "null": NONE}.get(kind)
        if simple is not None:
            return simple
        if kind == "array":
            return ListOf(self._items(schema, root, hint, depth))
        if kind == "object":
            return self._object(schema, root, hint, depth)
        return ANY

    def _items(self, schema: Mapping[str, Any], root: Mapping[str, Any], hint: str, depth: int) -> PyType:
        items = schema.get("items")
        prefix = _list(schema.get("prefixItems")) or _list(items)  # a list under `items` is draft-4 tuple syntax
        item_hint = _singular(hint)
        if prefix:
            members = [self.convert(item, root=root, hint=item_hint, depth=depth + 1) for item in prefix]
            if isinstance(items, Mapping):
                members.append(self.convert(items, root=root, hint=item_hint, depth=depth + 1))
            return union(members)
        return self.convert(items, root=root, hint=item_hint, depth=depth + 1) if _is_map(items) else ANY

    def _object(self, schema: Mapping[str, Any], root: Mapping[str, Any], hint: str, depth: int) -> PyType:
        if _mapping(schema.get("properties")):
            # Keyed by fields alone: real schemas repeat one inline shape under many names (`profile`, `author`),
            # and one definition is cheaper to read. Its description is not kept: it is already on the field or
            # parameter that holds the object, and would be wrong for the other places the shape is reused.
            fields = self._fields(schema, root, depth)
            if fields not in self._shapes:
                name = self.reserve(_title_name(schema) or camel(hint) or "Object")
                self._definitions[name] = TypedDictDef(name, fields)
                self._shapes[fields] = name
            return Named(self._shapes[fields])
        extra = schema.get("additionalProperties")
        if _is_map(extra):
            return DictOf(self.convert(extra, root=root, hint=camel(hint) + "Value", depth=depth + 1))
        patterns = list(_mapping(schema.get("patternProperties")).values())
        if patterns:
            value_hint = camel(hint) + "Value"
            return DictOf(union(self.convert(p, root=root, hint=value_hint, depth=depth + 1) for p in patterns))
        return DictOf(ANY)

    def _fields(self, schema: Mapping[str, Any], root: Mapping[str, Any], depth: int) -> tuple[Field, ...]:
        required = set(_strings(schema.get("required")))
        fields: list[Field] = []
        for key, sub in _mapping(schema.get("properties")).items():
            doc = _text(sub.get("description")) if isinstance(sub, Mapping) else ""
            extra = notes(sub, root)
            text = one_line(doc, FIELD_DOC_CHARS)
            if extra:
                text = f"{text} ({'; '.join(extra)})" if text else "; ".join(extra)
            expr = self.convert(sub, root=root, hint=camel(str(key)), depth=depth + 1)
            fields.append(Field(str(key), expr, key in required, text))
        return tuple(fields)

    def _ref(self, ref: object, root: Mapping[str, Any], hint: str, depth: int) -> PyType:
        target = resolve_pointer(root, ref) if isinstance(ref, str) else None
        if target is None or not isinstance(ref, str):
            return ANY
        key = self._closure_key(root, ref)
        if key in self._refs:
            return self._refs[key]
        if key in self._pending:
            pending = self._pending[key]
            return Named(pending) if pending else ANY
        def_name = camel(unquote(ref.rsplit("/", 1)[-1])) or _title_name(target) or camel(hint)
        result: PyType
        if _is_plain_object(target):
            # Named after its definition and reserved before its fields, so that recursion can refer to it.
            name = self.reserve(def_name or "Object")
            self._pending[key] = name
            fields = self._fields(target, root, depth + 1)
            doc = one_line(_text(target.get("description")), FIELD_DOC_CHARS)
            self._definitions[name] = TypedDictDef(name, fields, doc)
            result = Named(name)
        else:
            self._pending[key] = None
            result = self.convert(target, root=root, hint=def_name or hint, depth=depth + 1)
        del self._pending[key]
        self._refs[key] = result
        return result

    def _closure_key(self, root: Mapping[str, Any], ref: str) -> str:
        """Identity of a $ref: its target plus everything the target reaches, so equal definitions are shared."""
        memo = self._closure_keys.get((id(root), ref))
        if memo is not None and memo[0] is root:
            return memo[1]
        seen: dict[str, object] = {}
        stack = [ref]
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            target = resolve_pointer(root, current)
            seen[current] = target
            stack.extend(_refs_in(target))
        key = json.dumps([ref, sorted(seen.items(), key=lambda item: item[0])], sort_keys=True, default=str)
        self._closure_keys[(id(root), ref)] = (root, key)
        return key

    def _merge_all_of(self, schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
        members: list[Mapping[str, Any]] = [member for member in _list(schema.get("allOf")) if _is_map(member)]
        rest = {key: value for key, value in schema.items() if key != "allOf"}
        if len(members) == 1 and not any(key in rest for key in _STRUCTURAL):
            return members[0]  # `allOf: [{$ref}]` + description is how pydantic annotates a reference
        return _merged([rest, *(_expand(member, root) for member in members)])


def _expand(schema: Mapping[str, Any], root: Mapping[str, Any], depth: int = 0) -> Mapping[str, Any]:
    """Follow a top-level `$ref` and merge `allOf`, so an object's properties can be read directly."""
    if depth > MAX_DEPTH:
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = resolve_pointer(root, ref)
        return _expand(target, root, depth + 1) if target is not None else {}
    members = [member for member in _list(schema.get("allOf")) if _is_map(member)]
    if not members:
        return schema
    rest = {key: value for key, value in schema.items() if key != "allOf"}
    return _merged([rest, *(_expand(member, root, depth + 1) for member in members)])


def _merged(schemas: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for part in schemas:
        for key, value in part.items():
            if key == "properties" and isinstance(value, Mapping):
                merged["properties"] = {**merged.get("properties", {}), **value}
            elif key == "required" and isinstance(value, list):
                merged["required"] = [*merged.get("required", []), *value]
            else:
                merged.setdefault(key, value)
    if "properties" in merged:
        merged.setdefault("type", "object")
    return merged


def _refs_in(node: object) -> Iterator[str]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs_in(value)


def _structural(schema: Mapping[str, Any]) -> bool:
    return any(key in schema for key in (*_STRUCTURAL, "anyOf", "oneOf", "allOf"))


def _is_plain_object(schema: Mapping[str, Any]) -> bool:
    """An object with its own properties and nothing that would make it a union."""
    has_variants = _list(schema.get("anyOf")) or _list(schema.get("oneOf"))
    return bool(_mapping(schema.get("properties"))) and not has_variants and schema.get("type", "object") == "object"


def _is_objectish(schema: Mapping[str, Any]) -> bool:
    return "properties" in schema or "$ref" in schema


def _object_variants(branches: Iterable[object]) -> int:
    return sum(1 for branch in branches if isinstance(branch, Mapping) and _is_objectish(branch))


def _is_null(schema: Mapping[str, Any]) -> bool:
    return schema.get("type") == "null"


def _base_type(value: object) -> PyType:
    if value is None:
        return NONE
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return INT
    return STR if isinstance(value, str) else type_of_value(value)


def _title_name(schema: Mapping[str, Any]) -> str:
    """A TypedDict name from `title` when the title looks like a name (pydantic model names do), else ''."""
    title = schema.get("title")
    if not isinstance(title, str) or len(title) > 40 or len(title.split()) > 3:
        return ""
    return camel(title)


def _singular(hint: str) -> str:
    name = camel(hint)
    if name.endswith("s") and not name.endswith(("ss", "us", "is")) and len(name) > 3:
        return name[:-1]
    return name + "Item" if name else "Item"


def _is_map(value: object) -> bool:
    return isinstance(value, Mapping)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _strings(value: object) -> list[str]:
    return [item for item in _list(value) if isinstance(item, str)]


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
