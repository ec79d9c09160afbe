"""Python type expressions as small values, and the TypedDicts they name.

Schemas are converted into these values first (not straight into text) so that unions can be simplified, defaults
checked against the declared type, and forward references to TypedDicts detected when the source is rendered.
"""

from __future__ import annotations

import keyword
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

LiteralValue = str | int | bool | None

Spelling = Mapping[str, str]
"""How to spell a builtin or typing name in a module where a tool function shadows it (`list` -> `builtins.list`)."""
PLAIN: Spelling = MappingProxyType({})


class PyType:
    """A Python type expression."""

    def render(self, spelling: Spelling = PLAIN) -> str:
        raise NotImplementedError

    def names(self) -> frozenset[str]:
        """The TypedDict names this expression refers to."""
        return frozenset()

    def accepts(self, value: object) -> bool:
        """Whether a JSON value belongs to this type (used to decide if a default can be shown)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Builtin(PyType):
    """`str`, `int`, `float`, `bool`, `None` or `Any`."""

    name: str

    def render(self, spelling: Spelling = PLAIN) -> str:
        return spelling.get(self.name, self.name)

    def accepts(self, value: object) -> bool:
        match self.name:
            case "Any":
                return True
            case "None":
                return value is None
            case "bool":
                return isinstance(value, bool)
            case "int":
                return isinstance(value, int) and not isinstance(value, bool)
            case "float":
                return isinstance(value, int | float) and not isinstance(value, bool)
            case _:
                return isinstance(value, str)


ANY = Builtin("Any")
NONE = Builtin("None")
STR = Builtin("str")
INT = Builtin("int")
FLOAT = Builtin("float")
BOOL = Builtin("bool")


@dataclass(frozen=True)
class Named(PyType):
    """A TypedDict defined alongside the stub."""

    name: str

    def render(self, spelling: Spelling = PLAIN) -> str:
        # `spelling` renames a shared result type, or inlines one a signature-only stub does not define.
        return spelling.get(self.name, self.name)

    def names(self) -> frozenset[str]:
        return frozenset({self.name})

    def accepts(self, value: object) -> bool:
        return isinstance(value, dict)


@dataclass(frozen=True)
class ListOf(PyType):
    item: PyType

    def render(self, spelling: Spelling = PLAIN) -> str:
        return f"{spelling.get('list', 'list')}[{self.item.render(spelling)}]"

    def names(self) -> frozenset[str]:
        return self.item.names()

    def accepts(self, value: object) -> bool:
        return isinstance(value, list) and all(self.item.accepts(item) for item in value)


@dataclass(frozen=True)
class DictOf(PyType):
    value: PyType

    def render(self, spelling: Spelling = PLAIN) -> str:
        return f"{spelling.get('dict', 'dict')}[{spelling.get('str', 'str')}, {self.value.render(spelling)}]"

    def names(self) -> frozenset[str]:
        return self.value.names()

    def accepts(self, value: object) -> bool:
        return isinstance(value, dict) and all(self.value.accepts(item) for item in value.values())


@dataclass(frozen=True)
class LiteralOf(PyType):
    values: tuple[LiteralValue, ...]

    def render(self, spelling: Spelling = PLAIN) -> str:
        return f"{spelling.get('Literal', 'Literal')}[{', '.join(repr(value) for value in self.values)}]"

    def accepts(self, value: object) -> bool:
        return any(type(value) is type(option) and value == option for option in self.values)


@dataclass(frozen=True)
class UnionOf(PyType):
    members: tuple[PyType, ...]

    def render(self, spelling: Spelling = PLAIN) -> str:
        return " | ".join(member.render(spelling) for member in self.members)

    def names(self) -> frozenset[str]:
        return frozenset().union(*(member.names() for member in self.members))

    def accepts(self, value: object) -> bool:
        return any(member.accepts(value) for member in self.members)


def is_literal_value(value: object) -> bool:
    """Whether `value` may appear inside `Literal[...]` (floats, lists and dicts may not)."""
    return value is None or isinstance(value, str | int | bool)


def literal(values: Iterable[object]) -> PyType:
    """`Literal[...]` of the literal-able values, unioned with the plain types of any others."""
    members: list[PyType] = []
    for value in values:
        if value is None or isinstance(value, str | int | bool):
            members.append(LiteralOf((value,)))
        else:
            members.append(type_of_value(value))
    return union(members)


def type_of_value(value: object) -> PyType:
    """The plain type of a JSON value, for `const`/`enum` values that `Literal` cannot hold."""
    if isinstance(value, float):
        return FLOAT
    if isinstance(value, list):
        return ListOf(ANY)
    if isinstance(value, dict):
        return DictOf(ANY)
    return ANY


def union(types: Iterable[PyType]) -> PyType:
    """A simplified union: flattened, deduplicated, literals merged and absorbed by their base type, None last."""
    flat: list[PyType] = []
    for member in types:
        flat.extend(member.members if isinstance(member, UnionOf) else (member,))
    if not flat or ANY in flat:
        return ANY
    has = set(flat)
    literal_values: dict[tuple[type, LiteralValue], LiteralValue] = {}
    others: list[PyType] = []
    for member in flat:
        if isinstance(member, LiteralOf):
            for value in member.values:
                if value is None:
                    others.append(NONE)
                elif not _absorbed(value, has):
                    literal_values.setdefault((type(value), value), value)
        elif member == INT and FLOAT in has:
            continue  # a type checker accepts an int wherever a float is expected
        else:
            others.append(member)
    merged: list[PyType] = [LiteralOf(tuple(literal_values.values()))] if literal_values else []
    merged.extend(others)
    unique = [member for member in dict.fromkeys(merged) if member != NONE]
    if NONE in merged:
        unique.append(NONE)
    return unique[0] if len(unique) == 1 else UnionOf(tuple(unique))


def _absorbed(value: LiteralValue, present: set[PyType]) -> bool:
    if isinstance(value, bool):
        return BOOL in present
    if isinstance(value, int):
        return INT in present or FLOAT in present
    return isinstance(value, str) and STR in present


def optional(base: PyType) -> PyType:
    return union([base, NONE])


def python_literal(value: object, *, max_chars: int = 40) -> str | None:
    """`value` as Python source when it is a short JSON value, else None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if not (is_literal_value(value) or isinstance(value, float | list | dict)):
        return None
    text = repr(value)
    return text if len(text) <= max_chars else None


@dataclass(frozen=True)
class Field:
    """One key of a TypedDict."""

    key: str
    type: PyType
    required: bool
    doc: str = ""


@dataclass(frozen=True)
class TypedDictDef:
    name: str
    fields: tuple[Field, ...]
    doc: str = ""

    def names(self) -> frozenset[str]:
        return frozenset().union(*(field.type.names() for field in self.fields))


def annotation(expr: PyType, defined: Iterable[str], spelling: Spelling = PLAIN) -> str:
    """`expr` as an annotation, quoted when it names a TypedDict that is not defined yet (a forward reference)."""
    text = expr.render(spelling)
    return repr(text) if expr.names() - set(defined) else text


def render_typeddicts(
    definitions: Sequence[TypedDictDef],
    *,
    defined: set[str] | None = None,
    comments: bool = True,
    spelling: Spelling = PLAIN,
) -> str:
    """Source for TypedDicts in order; references to ones not in `defined` yet (later or recursive) are quoted.

    `defined` holds the names already emitted earlier in the same text and is updated with the new ones.
    """
    defined = set() if defined is None else defined
    blocks: list[str] = []
    for definition in definitions:
        blocks.append(_render_typeddict(definition, defined, comments=comments, spelling=spelling))
        defined.add(definition.name)
    return "\n".join(blocks)


def _render_typeddict(definition: TypedDictDef, defined: set[str], *, comments: bool, spelling: Spelling) -> str:
    total = any(field.required for field in definition.fields)
    mixed = total and not all(field.required for field in definition.fields)
    typed_dict = spelling.get("TypedDict", "TypedDict")
    name = spelling.get(definition.name, definition.name)
    not_required = spelling.get("NotRequired", "NotRequired")

    def value(field: Field) -> str:
        text = annotation(field.type, defined, spelling)
        return f"{not_required}[{text}]" if mixed and not field.required else text

    if not all(_class_field_name(field.key) for field in definition.fields):
        # Keys like `from` or `odd-name` cannot be class attributes; the call syntax of TypedDict takes any string.
        items = ", ".join(f"{field.key!r}: {value(field)}" for field in definition.fields)
        total_arg = "" if total else ", total=False"
        return f"{name} = {typed_dict}({name!r}, {{{items}}}{total_arg})\n"
    head = f"class {name}({typed_dict}{'' if total else ', total=False'}):"
    lines = [head]
    if definition.doc:
        lines.append(f"    # {definition.doc}")
    for field in definition.fields:
        comment = f"  # {field.doc}" if comments and field.doc else ""
        lines.append(f"    {field.key}: {value(field)}{comment}")
    if len(lines) == 1:
        lines.append("    pass")
    return "\n".join(lines) + "\n"


def _class_field_name(key: str) -> bool:
    # A leading double underscore would be name-mangled inside a class body.
    return key.isidentifier() and not keyword.iskeyword(key) and not key.startswith("__")
