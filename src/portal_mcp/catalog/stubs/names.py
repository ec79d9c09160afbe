"""Names of the TypedDicts in stubs: the singular of a plural hint, and a name for a shape several tools return.

A model reads `entities: list[Entity]` and `-> StrResult` as it would read hand-written code, so a list's item type
is named in the singular (`Entitie` was a plain `s` cut), and a result shape shared by several tools is named for
its keys rather than for whichever tool happened to be converted first (`echo -> HangOutput`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Protocol

from portal_mcp.catalog.stubs.pytypes import Builtin, DictOf, Field, ListOf, Named, PyType, TypedDictDef

_IRREGULAR = {
    "aliases": "alias",
    "analyses": "analysis",
    "axes": "axis",
    "biases": "bias",
    "caches": "cache",
    "children": "child",
    "ids": "id",
    "criteria": "criterion",
    "indices": "index",
    "matrices": "matrix",
    "people": "person",
    "statuses": "status",
    "vertices": "vertex",
}
_SAME = frozenset({"series", "species", "news", "data", "metadata", "media", "settings"})
"""Words whose singular is not a cut (`series`) or that name one thing (`metadata`): they get an `Item` suffix."""
_IES_KEEP = frozenset({"movies", "cookies", "zombies", "calories", "pies", "ties", "lies", "rookies", "selfies"})
_LAST_WORD = re.compile(r"[A-Z]?[a-z0-9]+$|[A-Z]+s?$")
_WORD = re.compile(r"[0-9A-Za-z]+")


def camel(text: str) -> str:
    """`get_current_time`, `get current time` -> `GetCurrentTime`; '' when `text` has no ASCII letters or digits."""
    name = "".join(word[0].upper() + word[1:] for word in _WORD.findall(text))
    return "T" + name if name[:1].isdigit() else name


def singular(name: str) -> str:
    """The item type of a list named `name` (CamelCase): `Entities` -> `Entity`, `Indexes` -> `Index`,
    `Addresses` -> `Address`, `Data` -> `DataItem`; a name that is not a plural gets `Item` appended."""
    if not name:
        return "Item"
    match = _LAST_WORD.search(name)
    if match is None:
        return name + "Item"
    head, word = name[: match.start()], match.group()
    if len(word) > 2 and word.endswith("s") and word[:-1].isupper():
        return head + word[:-1]  # `IDs`, `URLs`
    lower = word.lower()
    single = None if lower in _SAME else _singular_word(lower)
    return name + "Item" if single is None else head + word[0] + single[1:]


def _singular_word(word: str) -> str | None:
    """The singular of one lower-case word, or None when it does not look like a plural."""
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if len(word) <= 3 or not word.endswith("s") or word.endswith(("ss", "us", "is")):
        return None
    if word.endswith("ies") and word not in _IES_KEEP:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes", "zzes")):
        return word[:-2]
    return word[:-1]


class Definitions(Protocol):
    """What renaming needs of a `TypeBuilder` (schema.py imports this module, so not the class itself)."""

    def definitions_for(self, types: Iterable[PyType]) -> list[TypedDictDef]: ...

    def reserve(self, base: str) -> str: ...


def shared_result_renames(builder: Definitions, returns: Iterable[tuple[str, PyType]]) -> dict[str, str]:
    """New names for result TypedDicts named for one tool (`HangOutput`) that other tools of the same text return
    too (`returns`: python name and return type of each tool): named for their keys instead (`StrResult`).

    Call once per text, after every schema in it is converted; render with the result as (part of) the spelling.
    """
    tools: dict[str, set[str]] = {}
    for tool, expr in returns:
        if isinstance(expr, Named):
            tools.setdefault(expr.name, set()).add(tool)
    renamed: dict[str, str] = {}
    for name, users in tools.items():
        if len(users) > 1 and any(name.startswith(camel(tool)) for tool in users):
            definition = next(d for d in builder.definitions_for([Named(name)]) if d.name == name)
            renamed[name] = builder.reserve(shared_result_name(definition.fields))
    return renamed


def shared_result_name(fields: Sequence[Field]) -> str:
    """A name for a result shape that several tools return, from its keys: `{"result": str}` -> `StrResult`,
    `{"success": bool, "message": str}` -> `SuccessMessageResult`."""
    if len(fields) == 1:
        only = fields[0]
        kind = only.type
        if isinstance(kind, Builtin):
            prefix = camel(kind.name)
        elif isinstance(kind, Named):
            prefix = kind.name
        else:
            prefix = "List" if isinstance(kind, ListOf) else "Dict" if isinstance(kind, DictOf) else ""
        return prefix + (camel(only.key) or "Result")
    keys = "".join(camel(field.key) for field in fields[:2])
    return (keys or "Shared") + "Result"
