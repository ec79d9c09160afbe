"""The run-time guards of agent code: what `_getattr_`, `_getitem_`, `_write_` and friends allow.

Every attribute read of agent code goes through `Guards.getattr`: names are checked (per language level,
`language.py`), then the value that comes back (never a module, frame, code object, traceback, event loop or
metaclass). Writes go through `Guards.write`: only containers and objects of classes the code defined are
writable. Private `_names` are readable only on the code's own objects (and namedtuples' public `_asdict` and
friends); a class the code defines is recorded by `make_class`.
"""

from __future__ import annotations

import asyncio
import operator
import types
from collections import Counter, OrderedDict, defaultdict, deque
from collections.abc import Callable
from typing import Any, Final

from portal_mcp.sandbox import language
from portal_mcp.sandbox.language import AGENT_MODULE, Language
from portal_mcp.sandbox.policy.formatting import GuardedFormatter
from portal_mcp.sandbox.policy.transform import BLOCKED_NAMES, dunder_refusal

__all__ = ["Guards", "ReadOnly", "TypeOf"]

_BLOCKED_VALUE_TYPES: Final = (
    types.ModuleType, types.FrameType, types.CodeType, types.TracebackType, asyncio.AbstractEventLoop,
)  # fmt: skip
_MISSING: Final = object()
_WRITABLE_TYPES: Final = frozenset(
    {dict, list, set, bytearray, Counter, OrderedDict, defaultdict, deque, types.SimpleNamespace}
)


def check_value(value: Any, what: str) -> Any:
    """Refuse values no agent code may hold."""
    if isinstance(value, _BLOCKED_VALUE_TYPES):
        raise AttributeError(f"{what} is not available in the sandbox")
    if isinstance(value, type) and issubclass(value, type):
        raise AttributeError(f"{what} is a metaclass, which is not available in the sandbox")
    return value


class ReadOnly:
    """What `_write_` returns for objects the code may not modify: every write raises TypeError."""

    def __init__(self, obj: Any) -> None:
        object.__setattr__(self, "_kind", type(obj).__name__)

    def _refuse(self) -> None:
        kind = object.__getattribute__(self, "_kind")
        raise TypeError(f"{kind!r} objects cannot be modified in the sandbox; build a new value instead")

    def __setattr__(self, name: str, value: Any) -> None:
        self._refuse()

    def __delattr__(self, name: str) -> None:
        self._refuse()

    def __setitem__(self, key: Any, value: Any) -> None:
        self._refuse()

    def __delitem__(self, key: Any) -> None:
        self._refuse()


class Guards:
    """The guards of one run (one worker): the language level and the classes the code has defined."""

    def __init__(self, level: Language) -> None:
        self.level = level
        self.agent_classes: set[type] = set()
        self._formatter = GuardedFormatter(self.getattr, guarded_getitem)

    # --- whose object is it ---

    def is_agent_class(self, cls: Any) -> bool:
        if not isinstance(cls, type):
            return False
        if cls in self.agent_classes:
            return True
        # Classes made for the code by the stdlib (namedtuple, Enum('X', ...), dataclass(slots=True)) carry
        # the code's module name; a module name cannot be written by agent code.
        return type.__getattribute__(cls, "__module__") == AGENT_MODULE and self.level == "open"

    def is_agent_object(self, obj: Any) -> bool:
        return self.is_agent_class(obj) or self.is_agent_class(type(obj))

    # --- reading ---

    def check_attribute(self, obj: Any, name: Any, *, writing: bool = False) -> None:
        if type(name) is not str:
            raise TypeError("attribute name must be a string")
        if name.endswith("__roles__") or name in BLOCKED_NAMES:
            raise AttributeError(f"attribute {name!r} is not available in the sandbox")
        if name.startswith("_") and name != "_":
            self._check_private(obj, name, writing)
        # str.format walks attributes of its arguments in C, past every guard (CVE-2023-41039): the open
        # language gets the guarded one instead (`getattr` below), the strict one none.
        if name in ("format", "format_map") and _is_str(obj) and (writing or self.level == "strict"):
            raise AttributeError("str.format is not available in the sandbox; use an f-string or %-formatting")

    def _check_private(self, obj: Any, name: str, writing: bool) -> None:
        if self.level == "strict":
            raise AttributeError(f"attribute {name!r} is not available in the sandbox")
        if language.is_dunder(name):
            if writing or not language.readable_dunder(name):
                if name == "__dict__" and not writing and self.is_agent_object(obj) and not isinstance(obj, type):
                    return
                raise AttributeError(f"attribute {name!r} is not available in the sandbox; " + dunder_refusal(name))
            return
        if self.is_agent_object(obj):
            return
        if not writing and name in language.NAMEDTUPLE_API and isinstance(obj, tuple | type):
            return
        raise AttributeError(
            f"attribute {name!r} is not available in the sandbox: names starting with '_' are private, readable "
            "only on objects of classes the code defines"
        )

    def getattr(self, obj: Any, name: str, default: Any = _MISSING) -> Any:
        """`_getattr_` and the `getattr` builtin: name checks, then a check of what comes back."""
        self.check_attribute(obj, name)
        if name in ("format", "format_map") and _is_str(obj):
            return self._formatter.method(obj, name)
        try:
            value = getattr(obj, name)
        except AttributeError as exc:
            if default is not _MISSING:
                return default
            # A fresh error: the original's `.obj` would hand the inspected object back (CVE-2024-47532).
            raise AttributeError(str(exc)) from None
        if name in ("__name__", "__qualname__", "__doc__", "__module__") and not (
            value is None or isinstance(value, str)
        ):
            raise AttributeError(f"attribute {name!r} of this object is not a string, so it is not available")
        return check_value(value, f"attribute {name!r}")

    def hasattr(self, obj: Any, name: str) -> bool:
        """`hasattr` that answers False for names the guard refuses."""
        try:
            self.getattr(obj, name)
        except AttributeError:
            return False
        return True

    # --- writing ---

    def make_class(self, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any) -> type:
        """RestrictedPython's `__metaclass__`: record classes the agent defines; no metaclasses."""
        for base in bases:
            if isinstance(base, type) and (issubclass(base, type) or isinstance(base, _TypeOf)):
                raise TypeError("metaclasses are not available in the sandbox; use a plain class or a decorator")
        cls = type(name, bases, namespace, **kwargs)
        self.agent_classes.add(cls)
        return cls

    def prepare_class(self, name: str, bases: tuple[type, ...], **kwargs: Any) -> Any:
        """`__prepare__` of `__metaclass__`: the namespace the bases' metaclass wants (Enum's, for one)."""
        return types.prepare_class(name, bases, kwargs)[1]

    def write(self, obj: Any) -> Any:
        """`_write_`: containers and instances (or classes) created by the agent code are writable, nothing else."""
        if type(obj) in _WRITABLE_TYPES or self.is_agent_object(obj):
            return obj
        return ReadOnly(obj)

    def setattr(self, obj: Any, name: str, value: Any) -> None:
        """The `setattr` builtin, with the attribute-name rules of `getattr`."""
        self.check_attribute(obj, name, writing=True)
        setattr(self.write(obj), name, value)

    def delattr(self, obj: Any, name: str) -> None:
        """The `delattr` builtin."""
        self.check_attribute(obj, name, writing=True)
        delattr(self.write(obj), name)


class _TypeOf(type):
    """The metaclass of the `type` stand-in (trusted; agent code never gets hold of it: metaclasses are refused)."""

    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, type)

    def __subclasscheck__(cls, sub: type) -> bool:
        return issubclass(sub, type)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if len(args) != 1 or kwargs:
            raise TypeError(
                "type(name, bases, namespace) is not available in the sandbox; define the class with `class`"
            )
        result = type(args[0])
        if issubclass(result, type):
            raise TypeError(
                "type() of a class is its metaclass, which is not available in the sandbox; "
                "use isinstance(x, type) or compare classes directly"
            )
        return result


class TypeOf(metaclass=_TypeOf):
    """type(x): the class of x (`type(x).__name__`, `type(x) is dict`); `isinstance(c, type)` works too."""


TypeOf.__name__ = TypeOf.__qualname__ = "type"
TypeOf.__module__ = "builtins"


class ClassMaker:
    """The `__metaclass__` of agent code: `class` statements end up in `Guards.make_class`, with the namespace the
    bases' own metaclass prepares (so `class Color(Enum)` works)."""

    def __init__(self, guards: Guards) -> None:
        self._guards = guards

    def __prepare__(self, name: str, bases: tuple[type, ...], **kwargs: Any) -> Any:
        return self._guards.prepare_class(name, bases, **kwargs)

    def __call__(self, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any) -> type:
        return self._guards.make_class(name, bases, namespace, **kwargs)


def _is_str(obj: Any) -> bool:
    return isinstance(obj, str) or (isinstance(obj, type) and issubclass(obj, str))


def guarded_getitem(obj: Any, key: Any) -> Any:
    """`_getitem_`: plain indexing, refusing forbidden values."""
    return check_value(obj[key], "this item")


def guarded_getaiter(obj: Any) -> Any:
    """`_getaiter_` for `async for`: nothing to restrict beyond the attribute guards; a hook kept for symmetry."""
    return obj


_INPLACE: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "%=": operator.imod, "**=": operator.ipow, "<<=": operator.ilshift, ">>=": operator.irshift,
    "|=": operator.ior, "^=": operator.ixor, "&=": operator.iand, "//=": operator.ifloordiv,
    "@=": operator.imatmul,
}  # fmt: skip


def inplacevar(op: str, target: Any, value: Any) -> Any:
    return _INPLACE[op](target, value)


def apply(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return function(*args, **kwargs)
