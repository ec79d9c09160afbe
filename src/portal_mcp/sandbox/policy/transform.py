"""The compile-time policy: RestrictedPython's transformer, extended to the Python models write.

RestrictedPython rewrites the AST so every attribute, item, iteration and write goes through a guard
(`guards.py`) and rejects names it does not trust. On top of it this module:

- allows `async def`, `await`, `async for`, `async with` and top-level `await` (all guards still apply), and
  turns a top-level `asyncio.run(main())` into `await main()` (the code already runs in an event loop);
- allows `d[k] += 1` / `obj.n += 1` by expanding them into guarded reads and writes;
- allows annotated assignments, `nonlocal` and `match` (class patterns name only public attributes);
- in the open language (`language.py`): `_private` names and attributes (the guards decide per object at run
  time), the readable dunders, the usual special methods, name-mangled `self.__x`; never the guards' own names;
- captures the value of a final expression statement, like a REPL.
"""

from __future__ import annotations

import ast
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from RestrictedPython.transformer import INSPECT_ATTRIBUTES, RestrictingNodeTransformer, copy_locations

from portal_mcp.sandbox import language
from portal_mcp.sandbox.language import Language

__all__ = ["AGENT_FILENAME", "AgentSyntaxError", "CompiledCode", "compile_agent_code", "final_value"]

AGENT_FILENAME: Final = "<agent>"
_VALUE_NAME: Final = "_portal_value_"  # agent code cannot name it: reserved in both languages
_CO_COROUTINE: Final = 0x80  # inspect.CO_COROUTINE, without importing inspect into every worker
# Attribute names refused even where `_` names are allowed: they hand out frames, loops or the class tree.
BLOCKED_NAMES: Final = frozenset({"get_loop", "get_stack", "print_stack", "get_coro", "mro"}) | INSPECT_ATTRIBUTES


class AgentSyntaxError(Exception):
    """The code does not parse or breaks the policy; `str()` is the user-facing message."""


def dunder_refusal(name: str) -> str:
    return (
        f'"{name}" is not available in the sandbox: of the names starting with "__" only __name__, __qualname__, '
        "__doc__, __module__, __class__ and special methods such as __init__ may be used"
    )


class _Policy(RestrictingNodeTransformer):
    """RestrictedPython's transformer, extended to async syntax, augmented item/attribute assignment, and the
    open language."""

    def __init__(self, level: Language) -> None:
        super().__init__()
        self.level = level
        self._classes: list[str] = []
        self._depth = 0  # function nesting: `asyncio.run(...)` is rewritten only at the top level

    def error(self, node: ast.AST, info: str) -> None:
        line, column = getattr(node, "lineno", None), getattr(node, "col_offset", None)
        where = f"line {line}" if column is None else f"line {line}, column {column + 1}"
        self.errors.append(f"{where}: {info}")

    # --- names ---

    def check_name(self, node: Any, name: str | None, allow_magic_methods: bool = False) -> None:
        if name is None or self.level == "strict":
            super().check_name(node, name, allow_magic_methods)
            return
        if language.is_dunder(name):
            if not (allow_magic_methods and name in language.DEFINABLE_SPECIAL_METHODS):
                what = "defined" if allow_magic_methods else "used as a name"
                self.error(
                    node,
                    f'"{name}" cannot be {what} in the sandbox; a class may define the usual special methods '
                    "(__init__, __repr__, __eq__, __hash__, __iter__, __enter__, ...)",
                )
        elif language.is_reserved_name(name) or name.startswith("__"):
            self.error(node, f'"{name}" is reserved for the sandbox; choose another name')
        elif not name.startswith("_"):
            super().check_name(node, name, allow_magic_methods)  # `print`, `printed`, `x__roles__`, ...

    def visit_Name(self, node: ast.Name) -> Any:
        if self.level == "open" and node.id == "__name__" and isinstance(node.ctx, ast.Load):
            return node  # the code's module name, "__main__"
        if self.level == "open" and node.id == "__slots__" and isinstance(node.ctx, ast.Store) and self._classes:
            return node  # `__slots__ = ("x", "y")` in a class body
        return super().visit_Name(node)

    def visit_Nonlocal(self, node: ast.Nonlocal) -> Any:
        for name in node.names:
            self.check_name(node, name)
        return node

    def visit_Global(self, node: ast.Global) -> Any:
        for name in node.names:
            self.check_name(node, name)
        return node

    # --- attributes ---

    def _attribute_problem(self, node: ast.Attribute) -> str | None:
        name = node.attr
        if name.endswith("__roles__") or name in INSPECT_ATTRIBUTES:
            return f'"{name}" is a restricted name, that is forbidden to access in RestrictedPython.'
        if not name.startswith("_") or name == "_":
            return None
        if self.level == "strict":
            return f'"{name}" is an invalid attribute name because it starts with "_".'
        if language.is_dunder(name):
            if isinstance(node.ctx, ast.Load) and language.readable_dunder(name):
                return None
            return dunder_refusal(name)
        return None  # a private name: the guards allow it on the code's own objects only

    def _mangled(self, name: str) -> str:
        if name.startswith("__") and not name.endswith("__") and self._classes:
            owner = self._classes[-1].lstrip("_")
            if owner:
                return f"_{owner}{name}"
        return name

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        problem = self._attribute_problem(node)
        if problem is not None:
            self.error(node, problem)
        node = self.node_contents_visit(node)
        if isinstance(node.ctx, ast.Load):
            return _call("_getattr_", node.value, ast.Constant(self._mangled(node.attr)), like=node)
        node.value = _call("_write_", node.value, like=node.value)
        return node

    # --- definitions ---

    def visit_ClassDef(self, node: ast.ClassDef) -> Any:
        self._classes.append(node.name)
        try:
            return super().visit_ClassDef(node)
        finally:
            self._classes.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> Any:
        self._depth += 1
        try:
            return super().visit_FunctionDef(node)
        finally:
            self._depth -= 1

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AST:
        # The same checks RestrictedPython applies to `def`.
        self.check_name(node, node.name, allow_magic_methods=True)
        self.check_function_argument_names(node)
        self._depth += 1
        try:
            with self.print_info.new_print_scope():
                node = self.node_contents_visit(node)
                self.inject_print_collector(node)  # type: ignore[arg-type]
        finally:
            self._depth -= 1
        return node

    def visit_Lambda(self, node: ast.Lambda) -> Any:
        self._depth += 1
        try:
            return super().visit_Lambda(node)
        finally:
            self._depth -= 1

    def visit_AnnAssign(self, node: ast.AnnAssign) -> Any:
        return self.node_contents_visit(node)

    # --- async ---

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

    def visit_Call(self, node: ast.Call) -> Any:
        func = node.func
        if (
            self._depth == 0
            and isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id == "asyncio"
            and func.attr == "run"
            and len(node.args) == 1
            and not node.keywords
            and not isinstance(node.args[0], ast.Starred)
        ):
            # `asyncio.run(main())` at the top level: the code already runs in the event loop.
            awaited = ast.Await(node.args[0])
            copy_locations(awaited, node)
            return self.visit(awaited)
        return super().visit_Call(node)

    def visit_TryStar(self, node: ast.AST) -> Any:
        self.error(
            node,
            "TryStar statements are not allowed: `except*` is not available in the sandbox (CPython 3.11 mishandles "
            "it, CVE-2025-22153); catch ExceptionGroup and look at its `.exceptions`",
        )

    # --- match ---

    def visit_Match(self, node: ast.Match) -> Any:
        node.subject = self.visit(node.subject)
        for case in node.cases:
            self._check_pattern(case.pattern)
            if case.guard is not None:
                case.guard = self.visit(case.guard)
            case.body = [self.visit(statement) for statement in case.body]
        return node

    def _check_pattern(self, pattern: ast.pattern) -> None:
        # Patterns read attributes in C, past the guards: every name in them is checked here instead.
        for child in ast.walk(pattern):
            if isinstance(child, ast.MatchAs | ast.MatchStar) and child.name is not None:
                self.check_name(child, child.name)
            elif isinstance(child, ast.MatchMapping) and child.rest is not None:
                self.check_name(child, child.rest)
            elif isinstance(child, ast.MatchClass):
                for attr in child.kwd_attrs:
                    self._check_public(child, attr)
            elif isinstance(child, ast.Attribute):
                self._check_public(child, child.attr)
            elif isinstance(child, ast.Name):
                self.check_name(child, child.id)
            elif isinstance(child, ast.Call | ast.Subscript | ast.NamedExpr | ast.Lambda):
                self.error(child, "this expression is not allowed in a case pattern")

    def _check_public(self, node: ast.AST, name: str) -> None:
        if name.startswith("_") or name in BLOCKED_NAMES:
            self.error(node, f'"{name}" cannot be matched in the sandbox: case patterns may name public attributes')

    # --- augmented assignment of items and attributes ---

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
            problem = self._attribute_problem(ast.Attribute(target.value, target.attr, ast.Store()))
            if problem is not None:
                self.error(target, problem)
            name = ast.Constant(self._mangled(target.attr))
            current: ast.expr = _call("_getattr_", obj, name, like=target)
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


def compile_agent_code(source: str, level: Language = "open") -> CompiledCode:
    """Parse, check and transform agent code; raises AgentSyntaxError with line and column."""
    lines = tuple(source.splitlines())
    try:
        tree = ast.parse(source, AGENT_FILENAME, "exec")
        transformer = _Policy(level)
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
