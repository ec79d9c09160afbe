"""The globals and builtins of one run: the guards wired in, the safe builtins, and the open language's extras.

Builtins left out (`open`, `eval`, `globals`, ...) are simply absent: the NameError gets a hint from
`report.py`. `type` is a stand-in class (one argument only, never a metaclass), `dir` lists public names,
`vars` answers for the code's own objects.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from typing import Any, Final

from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence, safe_builtins

from portal_mcp.sandbox.facades import FacadeImporter, Services
from portal_mcp.sandbox.language import AGENT_MODULE, Language
from portal_mcp.sandbox.output import Printer
from portal_mcp.sandbox.policy.guards import (
    ClassMaker,
    Guards,
    TypeOf,
    apply,
    guarded_getaiter,
    guarded_getitem,
    inplacevar,
)

__all__ = ["make_globals"]

# SystemExit / KeyboardInterrupt are in safe_builtins; a host catching only Exception would die of them.
_FROM_SAFE_BUILTINS: Final = frozenset(safe_builtins) - {
    "SystemExit",
    "KeyboardInterrupt",
    "setattr",
    "delattr",
    "_getattr_",
}
_EXTRA_BUILTINS: Final[dict[str, Any]] = {
    name: getattr(builtins, name)
    for name in (
        "all", "any", "ascii", "bin", "bytes", "bytearray", "dict", "enumerate", "filter", "format",
        "frozenset", "iter", "list", "map", "max", "min", "next", "reversed", "set", "sorted", "sum",
        "tuple", "zip", "aiter", "anext", "classmethod", "staticmethod", "property", "NotImplemented",
        "TimeoutError", "RecursionError", "StopAsyncIteration", "ConnectionError",
    )
}  # fmt: skip
_OPEN_BUILTINS: Final[dict[str, Any]] = {
    name: getattr(builtins, name)
    for name in (
        "super", "object", "ExceptionGroup", "BaseExceptionGroup", "ModuleNotFoundError", "FileNotFoundError",
        "NotADirectoryError", "IsADirectoryError", "FileExistsError", "ConnectionRefusedError",
        "ConnectionResetError", "BrokenPipeError", "ResourceWarning", "EncodingWarning",
    )
}  # fmt: skip


def _make_dir(guards: Guards) -> Callable[..., list[str]]:
    def dir_(*args: Any) -> list[str]:
        if len(args) != 1:
            raise TypeError("dir() needs an object in the sandbox: dir(x); your own names are your variables")
        names = builtins.dir(args[0])
        return [name for name in names if not name.startswith("_") or _readable(guards, args[0], name)]

    dir_.__name__ = dir_.__qualname__ = "dir"
    return dir_


def _readable(guards: Guards, obj: Any, name: str) -> bool:
    try:
        guards.check_attribute(obj, name)
    except AttributeError:
        return False
    return not name.startswith("__") or name in ("__init__", "__name__", "__doc__", "__class__")


def _make_vars(guards: Guards) -> Callable[..., dict[str, Any]]:
    def vars_(*args: Any) -> dict[str, Any]:
        if len(args) != 1:
            raise TypeError("vars() needs an object in the sandbox: vars(x); keep your own values in a dict")
        obj = args[0]
        if guards.is_agent_object(obj) and not isinstance(obj, type) and hasattr(obj, "__dict__"):
            namespace: dict[str, Any] = obj.__dict__
            return namespace
        raise TypeError(
            f"vars() of a {type(obj).__name__!r} is not available in the sandbox; it works for instances of "
            "classes the code defines (for a dataclass, use dataclasses.asdict)"
        )

    vars_.__name__ = vars_.__qualname__ = "vars"
    return vars_


def make_globals(
    *,
    printer: Printer,
    names: Mapping[str, Any],
    extra_builtins: Mapping[str, Any],
    level: Language = "open",
    describe: Callable[[BaseException], str] | None = None,
) -> dict[str, Any]:
    """A fresh globals dict for one run: guards, safe builtins, the import allow-list, and `names`."""
    guards = Guards(level)
    allowed: dict[str, Any] = {name: safe_builtins[name] for name in _FROM_SAFE_BUILTINS}
    allowed.update(_EXTRA_BUILTINS)
    services = Services(
        write=printer.write,
        describe=describe or (lambda exc: f"{type(exc).__name__}: {exc}"),
        getattr=guards.getattr,
        servers=frozenset(names),
    )
    allowed.update(
        getattr=guards.getattr,
        hasattr=guards.hasattr,
        setattr=guards.setattr,
        delattr=guards.delattr,
        __import__=FacadeImporter(level, services),
    )
    if level == "open":
        allowed.update(_OPEN_BUILTINS, type=TypeOf, dir=_make_dir(guards), vars=_make_vars(guards))
    allowed.update(extra_builtins)
    hooks: dict[str, Any] = {
        "__builtins__": allowed,
        "__name__": AGENT_MODULE if level == "open" else "agent",
        "__metaclass__": ClassMaker(guards),
        "_getattr_": guards.getattr,
        "_getitem_": guarded_getitem,
        "_getiter_": iter,
        "_getaiter_": guarded_getaiter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_write_": guards.write,
        "_inplacevar_": inplacevar,
        "_apply_": apply,
        "_print_": printer.bind,
    }
    return {**names, **hooks}
