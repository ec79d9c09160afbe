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
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import unquote

from portal_mcp.catalog.schemas import (
    MAX_DEPTH,
    as_list,
    as_mapping,
    as_strings,
    expand,
    merged,
    refs_in,
    resolve_pointer,
)
from portal_mcp.catalog.stubs.names import camel, singular
from portal_mcp.catalog.stubs.notes import MAX_LITERALS, MAX_OBJECT_VARIANTS, is_objectish, notes, object_variants
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

FIELD_DOC_CHARS = 100

TYPING_NAMES = frozenset({"Any", "Literal", "NotRequired", "TypedDict"})
_RESERVED = TYPING_NAMES | {"str", "int", "float", "bool", "list", "dict", "None", "True", "False", "object"}
_STRUCTURAL = ("type", "properties", "items", "prefixItems", "additionalProperties", "enum", "const", "$ref")


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
        self._recursive: set[str] = set()
        self._named: dict[tuple[str, tuple[Field, ...]], str] = {}

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
        if schema is root and _is_plain_object(schema) and "#" in refs_in(schema):
            return self._ref("#", root, hint, depth)  # the same TypedDict as its own recursive references
        if "const" in schema:
            return literal([schema["const"]])
        values = as_list(schema.get("enum"))
        if values:
            return literal(values) if len(values) <= MAX_LITERALS else union(map(_base_type, values))
        for keyword_ in ("anyOf", "oneOf"):
            branches = [branch for branch in as_list(schema.get(keyword_)) if _is_mapping(branch)]
            if not branches:
                continue
            if not any(_structural(branch) for branch in branches):
                # Variants that only switch `required` on and off constrain values, they don't change the type.
                rest = {key: value for key, value in schema.items() if key != keyword_}
                return self.convert(rest, root=root, hint=hint, depth=depth + 1)
            siblings = {key: schema[key] for key in _STRUCTURAL if key in schema}
            too_many = object_variants(branches) > MAX_OBJECT_VARIANTS
            return union(
                DictOf(ANY)
                if too_many and is_objectish(branch)
                else self.convert(
                    branch if "$ref" in branch else {**siblings, **branch}, root=root, hint=hint, depth=depth + 1
                )
                for branch in branches
            )
        if as_list(schema.get("allOf")):
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
        prefix = as_list(schema.get("prefixItems")) or as_list(items)  # a list under `items` is draft-4 tuple syntax
        item_hint = singular(camel(hint))
        if prefix:
            members = [self.convert(item, root=root, hint=item_hint, depth=depth + 1) for item in prefix]
            if isinstance(items, Mapping):
                members.append(self.convert(items, root=root, hint=item_hint, depth=depth + 1))
            return union(members)
        return self.convert(items, root=root, hint=item_hint, depth=depth + 1) if _is_mapping(items) else ANY

    def _object(self, schema: Mapping[str, Any], root: Mapping[str, Any], hint: str, depth: int) -> PyType:
        if as_mapping(schema.get("properties")):
            # Keyed by fields alone: real schemas repeat one inline shape under many names (`profile`, `author`),
            # and one definition is cheaper to read. Its description is not kept: it is already on the field or
            # parameter that holds the object, and would be wrong for the other places the shape is reused.
            fields = self._fields(schema, root, depth)
            base = _title_name(schema) or camel(hint) or "Object"
            name = self._same_shape(base, fields)
            if name is None:
                name = self.reserve(base)
                self._definitions[name] = TypedDictDef(name, fields)
                self._remember(base, fields, name)
            return Named(name)
        extra = schema.get("additionalProperties")
        if _is_mapping(extra):
            return DictOf(self.convert(extra, root=root, hint=camel(hint) + "Value", depth=depth + 1))
        patterns = list(as_mapping(schema.get("patternProperties")).values())
        if patterns:
            value_hint = camel(hint) + "Value"
            return DictOf(union(self.convert(p, root=root, hint=value_hint, depth=depth + 1) for p in patterns))
        return DictOf(ANY)

    def _fields(self, schema: Mapping[str, Any], root: Mapping[str, Any], depth: int) -> tuple[Field, ...]:
        required = set(as_strings(schema.get("required")))
        fields: list[Field] = []
        for key, sub in as_mapping(schema.get("properties")).items():
            doc = _text(sub.get("description")) if isinstance(sub, Mapping) else ""
            extra = notes(sub, root)
            text = one_line(doc, FIELD_DOC_CHARS)
            if extra:
                text = f"{text} ({'; '.join(extra)})" if text else "; ".join(extra)
            expr = self.convert(sub, root=root, hint=camel(str(key)), depth=depth + 1)
            fields.append(Field(str(key), expr, key in required, text))
        return tuple(fields)

    def _same_shape(self, base: str, fields: tuple[Field, ...]) -> str | None:
        """The TypedDict already defined for these fields, or for the same keys and types under the same name
        (`S3Configuration` from two tools whose field descriptions differ: not worth a second `S3Configuration2`)."""
        return self._shapes.get(fields) or self._named.get((base, _bare(fields)))

    def _remember(self, base: str, fields: tuple[Field, ...], name: str) -> None:
        self._shapes.setdefault(fields, name)
        self._named.setdefault((base, _bare(fields)), name)

    def _ref(self, ref: object, root: Mapping[str, Any], hint: str, depth: int) -> PyType:
        target = resolve_pointer(root, ref) if isinstance(ref, str) else None
        if target is None or not isinstance(ref, str):
            return ANY
        key = self._closure_key(root, ref)
        if key in self._refs:
            return self._refs[key]
        if key in self._pending:
            pending = self._pending[key]
            if pending:
                self._recursive.add(pending)
            return Named(pending) if pending else ANY
        def_name = camel(unquote(ref.rsplit("/", 1)[-1])) or _title_name(target) or camel(hint)
        result: PyType
        if _is_plain_object(target):
            # Named after its definition and reserved before its fields, so that recursion can refer to it.
            base = def_name or "Object"
            name = self.reserve(base)
            self._pending[key] = name
            fields = self._fields(target, root, depth + 1)
            shared = self._same_shape(base, fields)
            if shared is not None and name not in self._recursive:
                # The same shape is defined already (another tool's copy of this $def, or an inline object).
                self._taken.discard(name)
                result = Named(shared)
            else:
                doc = one_line(_text(target.get("description")), FIELD_DOC_CHARS)
                self._definitions[name] = TypedDictDef(name, fields, doc)
                self._remember(base, fields, name)
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
            stack.extend(refs_in(target))
        key = json.dumps([ref, sorted(seen.items(), key=lambda item: item[0])], sort_keys=True, default=str)
        self._closure_keys[(id(root), ref)] = (root, key)
        return key

    def _merge_all_of(self, schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
        members: list[Mapping[str, Any]] = [member for member in as_list(schema.get("allOf")) if _is_mapping(member)]
        rest = {key: value for key, value in schema.items() if key != "allOf"}
        if len(members) == 1 and not any(key in rest for key in _STRUCTURAL):
            return members[0]  # `allOf: [{$ref}]` + description is how pydantic annotates a reference
        return merged([rest, *(expand(member, root) for member in members)])


def _bare(fields: tuple[Field, ...]) -> tuple[Field, ...]:
    return tuple(replace(field, doc="") for field in fields)


def _structural(schema: Mapping[str, Any]) -> bool:
    return any(key in schema for key in (*_STRUCTURAL, "anyOf", "oneOf", "allOf"))


def _is_plain_object(schema: Mapping[str, Any]) -> bool:
    """An object with its own properties and nothing that would make it a union."""
    has_variants = as_list(schema.get("anyOf")) or as_list(schema.get("oneOf"))
    return bool(as_mapping(schema.get("properties"))) and not has_variants and schema.get("type", "object") == "object"


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


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _is_mapping(value: object) -> bool:
    return isinstance(value, Mapping)
