"""The compile-time and run-time policy for agent code: the only module that imports RestrictedPython.

RestrictedPython is one layer (it rewrites the AST so every attribute, item, iteration and write goes
through a guard, and rejects names starting with `_`); the process boundary in `host.py` is the real one.
On top of RestrictedPython this module:

- allows `async def`, `await`, `async for`, `async with` and top-level `await` (all guards still apply);
- allows `d[k] += 1` / `obj.n += 1` by expanding them into guarded reads and writes;
- captures the value of a final expression statement, like a REPL;
- provides guards that also refuse modules, frames, code objects, tracebacks and event loops as values,
  a capped `print`, and builtins without `SystemExit`, `KeyboardInterrupt`, `type`, `object`, `vars`, ...
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import operator
import time
import traceback
import types
from collections import Counter, OrderedDict, defaultdict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence, safe_builtins
from RestrictedPython.transformer import INSPECT_ATTRIBUTES, RestrictingNodeTransformer, copy_locations

from portal_mcp.sandbox.facades import FacadeImporter

__all__ = [
    "AGENT_FILENAME",
    "AgentSyntaxError",
    "CompiledCode",
    "Printer",
    "agent_line",
    "compile_agent_code",
    "describe_exception",
    "final_value",
    "is_awaitable",
    "make_globals",
]

AGENT_FILENAME: Final = "<agent>"
_VALUE_NAME: Final = "_portal_value_"  # agent code cannot name it: names starting with `_` are rejected
_CO_COROUTINE: Final = 0x80  # inspect.CO_COROUTINE, without importing inspect into every worker


class AgentSyntaxError(Exception):
    """The code does not parse or breaks the policy; `str()` is the user-facing message."""


class _AsyncPolicy(RestrictingNodeTransformer):
    """RestrictedPython's transformer, extended to async syntax and augmented item/attribute assignment."""

    def error(self, node: ast.AST, info: str) -> None:
        line, column = getattr(node, "lineno", None), getattr(node, "col_offset", None)
        where = f"line {line}" if column is None else f"line {line}, column {column + 1}"
        self.errors.append(f"{where}: {info}")

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AST:
        # The same checks RestrictedPython applies to `def`.
        self.check_name(node, node.name, allow_magic_methods=True)
        self.check_function_argument_names(node)
        with self.print_info.new_print_scope():
            node = self.node_contents_visit(node)
            self.inject_print_collector(node)  # type: ignore[arg-type]
        return node

    def visit_Await(self, node: ast.Await) -> ast.AST:
        return self.node_contents_visit(node)

    def visit_AsyncWith(self, node: ast.AsyncWith) -> Any:
        return self.visit_With(node)  # type: ignore[arg-type]

    def visit_AsyncFor(self, node: ast.AsyncFor) -> ast.AST:
        node = self.node_contents_visit(node)
        node.iter = _call("_getaiter_", node.iter, like=node.iter)
        if isinstance(node.target, ast.Tuple):
            tmp_target, unpack = self.gen_unpack_wrapper(node, node.target)
            node.target = tmp_target
            node.body.insert(0, unpack)
        return node

    def visit_comprehension(self, node: ast.comprehension) -> Any:
        if not node.is_async:
            return super().visit_comprehension(node)
        # A tuple target here is unpacked natively; that equals the guarded unpack because `_getiter_` is `iter`.
        node = self.node_contents_visit(node)
        node.iter = _call("_getaiter_", node.iter, like=node.iter)
        return node

    def visit_AugAssign(self, node: ast.AugAssign) -> Any:
        target = node.target
        if not isinstance(target, ast.Attribute | ast.Subscript):
            return super().visit_AugAssign(node)
        # `a[k] op= v`  ->  t0 = a; t1 = k; _write_(t0)[t1] = _inplacevar_("op=", _getitem_(t0, t1), v)
        # evaluating `a` and `k` once, as Python does; RestrictedPython alone rejects the statement.
        operator_name = ast.Constant(_IOPERATORS[type(node.op)])
        holder = self.gen_tmp_name()
        obj = ast.Name(holder, ast.Load())
        setup: list[ast.stmt] = [ast.Assign([ast.Name(holder, ast.Store())], self.visit(target.value))]
        cleanup: list[ast.stmt] = [ast.Delete([ast.Name(holder, ast.Del())])]
        if isinstance(target, ast.Attribute):
            self._check_attribute_name(target)
            current: ast.expr = _call("_getattr_", obj, ast.Constant(target.attr), like=target)
            store: ast.expr = ast.Attribute(_call("_write_", obj, like=target), target.attr, ast.Store())
        else:
            key = self.gen_tmp_name()
            setup.append(ast.Assign([ast.Name(key, ast.Store())], self.visit(target.slice)))
            cleanup.append(ast.Delete([ast.Name(key, ast.Del())]))
            current = _call("_getitem_", obj, ast.Name(key, ast.Load()), like=target)
            store = ast.Subscript(_call("_write_", obj, like=target), ast.Name(key, ast.Load()), ast.Store())
        value = _call("_inplacevar_", operator_name, current, self.visit(node.value), like=node)
        assign = ast.Assign([store], value)
        statement = ast.Try(body=[*setup, assign], handlers=[], orelse=[], finalbody=cleanup)
        for new in (*setup, assign, *cleanup, statement):
            copy_locations(new, node)
        return statement

    def _check_attribute_name(self, node: ast.Attribute) -> None:
        if node.attr.startswith("_") and node.attr != "_":
            self.error(node, f'"{node.attr}" is an invalid attribute name because it starts with "_".')
        if node.attr.endswith("__roles__") or node.attr in INSPECT_ATTRIBUTES:
            self.error(node, f'"{node.attr}" is a restricted name, that is forbidden to access in RestrictedPython.')


_IOPERATORS: Final[dict[type[ast.operator], str]] = {
    ast.Add: "+=", ast.Sub: "-=", ast.Mult: "*=", ast.Div: "/=", ast.Mod: "%=", ast.Pow: "**=",
    ast.LShift: "<<=", ast.RShift: ">>=", ast.BitOr: "|=", ast.BitXor: "^=", ast.BitAnd: "&=",
    ast.FloorDiv: "//=", ast.MatMult: "@=",
}  # fmt: skip


def _call(function: str, *args: ast.expr, like: ast.AST) -> ast.Call:
    node = ast.Call(ast.Name(function, ast.Load()), list(args), [])
    copy_locations(node, like)  # type: ignore[arg-type]
    return node


@dataclass(frozen=True)
class CompiledCode:
    """Agent code ready to `eval` with `make_globals()`; `is_async` means eval returns a coroutine."""

    code: types.CodeType
    source_lines: tuple[str, ...]

    @property
    def is_async(self) -> bool:
        return bool(self.code.co_flags & _CO_COROUTINE)


def compile_agent_code(source: str) -> CompiledCode:
    """Parse, check and transform agent code; raises AgentSyntaxError with line and column."""
    lines = tuple(source.splitlines())
    try:
        tree = ast.parse(source, AGENT_FILENAME, "exec")
        transformer = _AsyncPolicy()
        tree = transformer.visit(tree)
        if transformer.errors:
            raise AgentSyntaxError(
                "SyntaxError: the code is not allowed in the sandbox:\n  " + "\n  ".join(transformer.errors)
            )
        _capture_final_value(tree)
        code = compile(tree, AGENT_FILENAME, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    except SyntaxError as exc:
        raise AgentSyntaxError(_describe_syntax_error(exc, lines)) from None
    except (RecursionError, MemoryError):
        raise AgentSyntaxError("SyntaxError: the code is nested too deeply to compile") from None
    return CompiledCode(code, lines)


def _capture_final_value(tree: ast.Module) -> None:
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = tree.body[-1]
        assign = ast.Assign([ast.Name(_VALUE_NAME, ast.Store())], last.value)
        copy_locations(assign, last)
        tree.body[-1] = assign


def _describe_syntax_error(exc: SyntaxError, lines: tuple[str, ...]) -> str:
    where = f"line {exc.lineno}" if exc.lineno else "unknown line"
    if exc.offset:
        where += f", column {exc.offset}"
    message = f"{type(exc).__name__}: {exc.msg} ({where})"
    if exc.lineno and 0 < exc.lineno <= len(lines):
        text = lines[exc.lineno - 1]
        message += f"\n  {text.strip()}"
        if exc.offset:
            indent = len(text) - len(text.lstrip())
            message += "\n  " + " " * max(exc.offset - 1 - indent, 0) + "^"
    return message


def final_value(globals_: Mapping[str, Any]) -> tuple[bool, Any]:
    """(has_value, value) of the final expression statement of a finished run."""
    if _VALUE_NAME in globals_:
        return True, globals_[_VALUE_NAME]
    return False, None


def describe_exception(exc: BaseException, compiled: CompiledCode, *, max_frames: int = 6) -> str:
    """`Type: message` plus the agent-code lines that led to it; portal frames are never shown.

    Repeats of one line (recursion) are folded into one entry; past `max_frames` entries the outermost two and
    the innermost ones are kept, so both where it started and where it failed stay visible.
    """
    entries: list[list[Any]] = []  # [name, line, times]
    for frame, line in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename != AGENT_FILENAME:
            continue
        if entries and entries[-1][:2] == [frame.f_code.co_name, line]:
            entries[-1][2] += 1
        else:
            entries.append([frame.f_code.co_name, line, 1])
    try:
        text = str(exc)
    except Exception:  # a hostile __str__ must not take the report down with it
        text = ""
    parts = [f"{type(exc).__name__}: {text}" if text else type(exc).__name__]
    if len(entries) > max_frames:
        hidden = len(entries) - max_frames
        entries = [*entries[:2], [None, hidden, 0], *entries[len(entries) - max_frames + 2 :]]
    for name, line, times in entries:
        if name is None:
            parts.append(f"  ... {line} more calls ...")
            continue
        source = compiled.source_lines[line - 1].strip() if 0 < line <= len(compiled.source_lines) else ""
        where = f"line {line}" if name == "<module>" else f"line {line}, in {name}"
        repeated = f"  (repeated {times} times)" if times > 1 else ""
        parts.append(f"  {where}: {source}{repeated}")
    return "\n".join(parts)


def agent_line(frame: types.FrameType | None) -> int | None:
    """The line of the innermost agent-code frame at or above `frame`."""
    while frame is not None:
        if frame.f_code.co_filename == AGENT_FILENAME:
            return frame.f_lineno
        frame = frame.f_back
    return None


class Printer:
    """The `print` of agent code: keeps up to `limit` UTF-8 bytes, counts the rest, streams via `flush_to`."""

    def __init__(self, limit: int, flush_to: Callable[[str], None], *, interval: float = 0.05) -> None:
        self.limit = limit
        self.kept = 0
        self.dropped = 0
        self._flush_to = flush_to
        self._interval = interval
        self._pending: list[str] = []
        self._pending_bytes = 0
        self._last_flush = 0.0
        self._all: list[str] = []

    def bind(self, _getattr_: object = None) -> Printer:
        """`_print_`: RestrictedPython runs `_print = _print_(_getattr_)` per scope; all scopes share one buffer."""
        return self

    def __call__(self) -> str:
        """RestrictedPython's `printed`: everything kept so far."""
        return "".join(self._all)

    def _call_print(
        self, *objects: object, sep: str | None = " ", end: str | None = "\n", file: object = None, flush: bool = False
    ) -> None:
        if file is not None:
            raise TypeError("print(file=...) is not available in the sandbox; print to the output")
        if not isinstance(sep, str | None) or not isinstance(end, str | None):
            raise TypeError("sep and end must be strings or None")
        self.write(("" if sep is None else sep).join(map(str, objects)) + ("\n" if end is None else end))

    def write(self, text: str) -> None:
        """Append printed text, cutting it at the byte limit."""
        if self.kept >= self.limit:
            self.dropped += len(text.encode(errors="replace"))
            return
        data = text.encode(errors="replace")
        room = self.limit - self.kept
        if len(data) > room:
            self.dropped += len(data) - room
            text = data[:room].decode(errors="ignore")
            data = text.encode()
        self.kept += len(data)
        self._all.append(text)
        self._pending.append(text)
        self._pending_bytes += len(data)
        now = time.monotonic()
        if self._pending_bytes >= 8192 or now - self._last_flush >= self._interval:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        """Send buffered text now (before tool calls and at the end, so a killed run keeps its output)."""
        if self._pending:
            text, self._pending, self._pending_bytes = "".join(self._pending), [], 0
            self._flush_to(text)
        self._last_flush = time.monotonic() if now is None else now


_BLOCKED_VALUE_TYPES: Final = (
    types.ModuleType, types.FrameType, types.CodeType, types.TracebackType, asyncio.AbstractEventLoop,
)  # fmt: skip
# Public names that hand out an event loop, a coroutine or frames (`Future.get_loop()`, `Task.get_stack()`),
# or walk up to `object` (`mro()`), which no agent code needs.
_BLOCKED_NAMES: Final = frozenset({"get_loop", "get_stack", "print_stack", "get_coro", "mro"})
_MISSING: Final = object()


def _check_value(value: Any, what: str) -> Any:
    if isinstance(value, _BLOCKED_VALUE_TYPES):
        raise AttributeError(f"{what} is not available in the sandbox")
    return value


def _check_attribute(obj: Any, name: Any) -> None:
    if type(name) is not str:
        raise TypeError("attribute name must be a string")
    if name.startswith("_") or name in INSPECT_ATTRIBUTES or name.endswith("__roles__") or name in _BLOCKED_NAMES:
        raise AttributeError(f"attribute {name!r} is not available in the sandbox")
    # str.format walks attributes of its arguments in C, past every guard (CVE-2023-41039).
    if name in ("format", "format_map") and (isinstance(obj, str) or (isinstance(obj, type) and issubclass(obj, str))):
        raise AttributeError("str.format is not available in the sandbox; use an f-string or %-formatting")


def guarded_getattr(obj: Any, name: str, default: Any = _MISSING) -> Any:
    """`_getattr_` and the `getattr` builtin: name checks, then a check of what comes back."""
    _check_attribute(obj, name)
    try:
        value = getattr(obj, name)
    except AttributeError as exc:
        if default is not _MISSING:
            return default
        # A fresh error: the original's `.obj` would hand the inspected object back (CVE-2024-47532).
        raise AttributeError(str(exc)) from None
    return _check_value(value, f"attribute {name!r}")


def guarded_hasattr(obj: Any, name: str) -> bool:
    """`hasattr` that answers False for names the guard refuses."""
    try:
        guarded_getattr(obj, name)
    except AttributeError:
        return False
    return True


def guarded_getitem(obj: Any, key: Any) -> Any:
    """`_getitem_`: plain indexing, refusing forbidden values."""
    return _check_value(obj[key], "this item")


def guarded_getaiter(obj: Any) -> Any:
    """`_getaiter_` for `async for`: nothing to restrict beyond the attribute guards; a hook kept for symmetry."""
    return obj


class _ReadOnly:
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


_WRITABLE_TYPES: Final = frozenset({dict, list, set, bytearray, Counter, OrderedDict, defaultdict, deque})


class WriteGuard:
    """`_write_`: containers and instances (or classes) created by the agent code are writable, nothing else."""

    def __init__(self) -> None:
        self.agent_classes: set[type] = set()

    def make_class(self, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any) -> type:
        """RestrictedPython's `__metaclass__`: record classes the agent defines."""
        cls = type(name, bases, namespace, **kwargs)
        self.agent_classes.add(cls)
        return cls

    def __call__(self, obj: Any) -> Any:
        kind = type(obj)
        if (
            kind in _WRITABLE_TYPES
            or kind in self.agent_classes
            or (isinstance(obj, type) and obj in self.agent_classes)
        ):
            return obj
        return _ReadOnly(obj)

    def setattr(self, obj: Any, name: str, value: Any) -> None:
        """The `setattr` builtin, with the attribute-name rules of `getattr`."""
        _check_attribute(obj, name)
        setattr(self(obj), name, value)

    def delattr(self, obj: Any, name: str) -> None:
        """The `delattr` builtin."""
        _check_attribute(obj, name)
        delattr(self(obj), name)


_INPLACE: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "%=": operator.imod, "**=": operator.ipow, "<<=": operator.ilshift, ">>=": operator.irshift,
    "|=": operator.ior, "^=": operator.ixor, "&=": operator.iand, "//=": operator.ifloordiv,
    "@=": operator.imatmul,
}  # fmt: skip


def _inplacevar(op: str, target: Any, value: Any) -> Any:
    return _INPLACE[op](target, value)


def _apply(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return function(*args, **kwargs)


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


def make_globals(*, printer: Printer, names: Mapping[str, Any], extra_builtins: Mapping[str, Any]) -> dict[str, Any]:
    """A fresh globals dict for one run: guards, safe builtins, the import allow-list, and `names`."""
    write_guard = WriteGuard()
    allowed: dict[str, Any] = {name: safe_builtins[name] for name in _FROM_SAFE_BUILTINS}
    allowed.update(_EXTRA_BUILTINS)
    allowed.update(
        getattr=guarded_getattr,
        hasattr=guarded_hasattr,
        setattr=write_guard.setattr,
        delattr=write_guard.delattr,
        __import__=FacadeImporter(),
    )
    allowed.update(extra_builtins)
    guards: dict[str, Any] = {
        "__builtins__": allowed,
        "__name__": "agent",
        "__metaclass__": write_guard.make_class,
        "_getattr_": guarded_getattr,
        "_getitem_": guarded_getitem,
        "_getiter_": iter,
        "_getaiter_": guarded_getaiter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_write_": write_guard,
        "_inplacevar_": _inplacevar,
        "_apply_": _apply,
        "_print_": printer.bind,
    }
    return {**names, **guards}


def is_awaitable(value: object) -> bool:
    """Whether a final value is something the code forgot to await."""
    return isinstance(value, Awaitable)
