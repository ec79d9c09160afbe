"""What agent code may say and touch, per language level: the tables the compiler and the guards share.

Two levels. `open` (the default where the OS confines the worker's files and network) is the Python models
write: harmless dunder reads, the usual special methods, `super()`, `type()`, `match`, annotated assignments,
private `_names` on the code's own objects, and the stdlib facades. `strict` is the language RestrictedPython
alone was trusted with before: no `_` names at all, no `type`/`super`/`object`, ten modules. `choose_language`
picks one from the layers the worker reports (see docs/sandbox.md, "Language levels").
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Final, Literal

__all__ = [
    "AGENT_MODULE",
    "DEFINABLE_SPECIAL_METHODS",
    "NAMEDTUPLE_API",
    "READABLE_DUNDERS",
    "REFUSED_NAMES",
    "Language",
    "choose_language",
    "is_reserved_name",
]

Language = Literal["open", "strict"]
Setting = Literal["auto", "open", "strict"]

AGENT_MODULE: Final = "__main__"  # the code's `__name__`, so `if __name__ == "__main__":` runs

# The layers that must each have a kernel mechanism before `auto` opens the language: without them a policy
# escape reaches files or the network, so only the strict language is offered.
REQUIRED_LAYERS: Final = ("network", "filesystem reads", "filesystem writes")

# Dunder attributes the code may read on any object (values are checked: only str/None, or a class for
# `__class__`). Everything else starting with `__` stays refused: `__globals__`, `__code__`, `__closure__`,
# `__subclasses__`, `__bases__`, `__mro__`, `__dict__` of others, `__getattribute__`, `__annotations__`
# (dataclasses build source from its keys), `__traceback__`, `__context__`, `__cause__`, `__self__`, ...
READABLE_DUNDERS: Final = frozenset(
    {"__name__", "__qualname__", "__doc__", "__module__", "__class__", "__cause__", "__slots__"}
)  # `__cause__` is set by `raise ... from`; `__context__` (implicit, may hold a trusted error's `.obj`) is not

# Special methods a class may define, and which the code may read (to call `super().__init__(...)`,
# `Base.__repr__(self)`). Not `__del__` (runs at an unknown time), `__getattribute__`/`__setattr__` reads
# (C-level attribute access past the guards), `__init_subclass__`, `__class_getitem__`, `__set_name__`,
# `__reduce__` and friends, `__match_args__` (the C code of `match` reads those names past the guards).
DEFINABLE_SPECIAL_METHODS: Final = frozenset(
    {
        "__init__", "__post_init__", "__new__", "__repr__", "__str__", "__format__", "__bytes__", "__hash__",
        "__bool__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__len__", "__length_hint__",
        "__iter__", "__next__", "__reversed__", "__contains__", "__getitem__", "__setitem__", "__delitem__",
        "__missing__", "__call__", "__enter__", "__exit__", "__aenter__", "__aexit__", "__aiter__", "__anext__",
        "__await__", "__add__", "__radd__", "__iadd__", "__sub__", "__rsub__", "__isub__", "__mul__",
        "__rmul__", "__imul__", "__matmul__", "__truediv__", "__rtruediv__", "__floordiv__", "__rfloordiv__",
        "__mod__", "__rmod__", "__divmod__", "__pow__", "__rpow__", "__neg__", "__pos__", "__abs__",
        "__invert__", "__and__", "__rand__", "__or__", "__ror__", "__xor__", "__rxor__", "__lshift__",
        "__rshift__", "__int__", "__float__", "__complex__", "__index__", "__round__", "__trunc__", "__floor__",
        "__ceil__", "__getattr__", "__get__", "__set__", "__delete__", "__copy__", "__deepcopy__",
    }
)  # fmt: skip
# Not `__await__`: a tool call's awaitable would hand out the channel's futures.
_READABLE_METHODS: Final = DEFINABLE_SPECIAL_METHODS - {"__getattr__", "__get__", "__set__", "__delete__", "__await__"}

# The public API of namedtuples, which happens to start with `_`.
NAMEDTUPLE_API: Final = frozenset({"_replace", "_asdict", "_fields", "_make", "_field_defaults"})

_RESERVED: Final = re.compile(r"_.*_|_print|_tmp\d*|_portal_value_")  # guard hooks and the compiler's names

# Builtins left out on purpose, with what to write instead (appended to NameError and refusal messages).
REFUSED_NAMES: Final[Mapping[str, str]] = {
    "open": "there are no files in the sandbox; get data from tool results, or use io.StringIO for text in memory",
    "eval": "evaluating source is not available; parse data with json.loads or ast-free code",
    "exec": "running source is not available; write the code directly",
    "compile": "compiling source is not available; write the code directly",
    "globals": "globals() is not available; keep values in a dict of your own",
    "locals": "locals() is not available; keep values in a dict of your own",
    "breakpoint": "there is no debugger; print what you need",
    "input": "there is no user input; pass values in the code",
    "exit": "end the code normally, or raise an exception",
    "quit": "end the code normally, or raise an exception",
    "memoryview": "use bytes or bytearray",
    "__import__": "use an import statement",
    "help": "use search_api for tools; print(x.__doc__) for a docstring",
}


def choose_language(setting: str, layers: Mapping[str, Sequence[str]]) -> Language:
    """The language level for a worker with these layers in force: `auto` opens it only when every layer of
    `REQUIRED_LAYERS` has a kernel mechanism (rlimits do not count: they do not stop reading or connecting)."""
    if setting in ("open", "strict"):
        return setting  # type: ignore[return-value]
    for layer in REQUIRED_LAYERS:
        if not [mechanism for mechanism in layers.get(layer, ()) if mechanism != "rlimit"]:
            return "strict"
    return "open"


def is_reserved_name(name: str) -> bool:
    """Names the guards and the compiler use (`_getattr_`, `_print`, `_tmp0`, ...): never the code's."""
    return _RESERVED.fullmatch(name) is not None and not is_dunder(name)


def readable_dunder(name: str) -> bool:
    """A `__name__`-style attribute the code may read in the open language."""
    return name in READABLE_DUNDERS or name in _READABLE_METHODS


def is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")
