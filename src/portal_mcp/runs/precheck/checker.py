"""The check itself: one walk over the agent code's AST, then each rule on the `server.tool` accesses it found."""

from __future__ import annotations

import ast
import builtins
import logging
import re
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Final

from jsonschema.exceptions import ValidationError, best_match

from portal_mcp.catalog.model import Catalog, ToolEntry
from portal_mcp.catalog.schemas import ObjectShape, Validators, argument_error, drop_omitted, object_shape
from portal_mcp.errors import UnknownToolError
from portal_mcp.naming import RESOURCE_METHODS
from portal_mcp.runs.precheck.arguments import (
    UNKNOWN,
    accepts_key,
    literal_keys,
    literal_value,
    missing_arguments,
    nearest,
    unknown_argument,
)
from portal_mcp.runs.precheck.problems import MAX_PROBLEMS, RULE_ORDER, Problem, Rule
from portal_mcp.sandbox.facades import server_alias
from portal_mcp.sandbox.host import MAX_CODE_CHARS

logger = logging.getLogger("portal_mcp.runs.precheck")

_KNOWN_NAMES: Final = frozenset(dir(builtins)) | {"ToolError"} | frozenset(sys.stdlib_module_names)
# Callables that use their argument as a value (iterate it, format it, convert it): a pending call there is a bug.
_CONSUMERS: Final = frozenset(
    {"print", "str", "repr", "ascii", "format", "len", "int", "float", "bool", "abs", "round", "hash", "list",
     "tuple", "set", "frozenset", "dict", "sorted", "reversed", "sum", "min", "max", "any", "all", "enumerate",
     "zip", "map", "filter", "iter", "next"}
)  # fmt: skip
_JSON_CONSUMERS: Final = frozenset({"dumps", "loads"})
_BINDING_NAME_NODES: Final = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_SCOPE_CHANGERS: Final = (ast.Global, ast.Nonlocal)
_CHILD_FIELDS: Final[dict[type[ast.AST], tuple[str, ...]]] = {
    cls: tuple(field for field in cls._fields if field not in ("ctx", "op", "ops"))
    for cls in vars(ast).values()
    if isinstance(cls, type) and issubclass(cls, ast.AST)
}
"""The fields of each node type that can hold child nodes worth visiting."""
_SCANNED: Final = frozenset(
    {ast.Attribute, ast.Subscript, ast.Call, ast.arg, ast.alias, ast.ExceptHandler, ast.MatchAs, ast.MatchStar,
     ast.MatchMapping, *_BINDING_NAME_NODES, *_SCOPE_CHANGERS}
    | {getattr(ast, name) for name in ("TypeVar", "ParamSpec", "TypeVarTuple") if hasattr(ast, name)}
)  # fmt: skip
"""Node types `_scan` looks at (besides `Name`); the rest it only walks through."""


def check_code(
    code: str,
    catalog: Catalog,
    refused: Mapping[str, str] | None = None,
    unavailable: Mapping[str, str] | None = None,
    *,
    validators: Validators | None = None,
) -> list[Problem]:
    """Problems in `code`'s tool calls, in source order; [] when there are none or the code does not parse.

    `catalog` is what the caller may use; `refused` names tools the policy keeps from them (qualified name -> why),
    reported as such when the code names one exactly, and never offered as a suggestion. `unavailable` names
    configured servers whose tools are not known now (server -> why): a call on one is reported with that reason.
    `validators`: the portal's cache shared with the bridge (default: one for this check only).

    Never raises: code that does not parse is left to the sandbox, which reports the syntax error, and a failure
    of the checker itself is logged and treated as "no problems" so it can never block valid code.
    """
    if len(code) > MAX_CODE_CHARS:
        return []  # the sandbox refuses it with its own message
    try:
        # Agent code like `re.findall("\d+", s)` makes the parser warn; the warnings are the sandbox's to show, and
        # under `-W error` they would turn into a SyntaxError here and switch the check off.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(code, "<agent>", "exec")
    except Exception:  # SyntaxError, and ValueError / RecursionError / MemoryError on null bytes or deep nesting
        return []
    try:
        return _Checker(code, catalog, refused or {}, unavailable or {}, validators or Validators()).check(tree)
    except Exception:
        logger.exception("the pre-run check of agent code failed; running the code unchecked")
        return []


class _Enough(Exception):
    """MAX_PROBLEMS were found; stop looking."""


@dataclass(frozen=True)
class _Access:
    """`name.attr` or `name["attr"]`, and the call it is the callee of (if any)."""

    node: ast.Attribute | ast.Subscript
    name: str
    attr: str
    call: ast.Call | None


class _Checker:
    """One check of one piece of code against one catalog."""

    def __init__(
        self,
        code: str,
        catalog: Catalog,
        refused: Mapping[str, str],
        unavailable: Mapping[str, str],
        validators: Validators,
    ) -> None:
        self.code = code
        self.catalog = catalog
        self.refused = refused
        self.unavailable = unavailable
        self.problems: set[Problem] = set()
        self.bound: set[str] = set()
        self.parents: dict[int, ast.AST] = {}
        """id(call) -> parent node, for every call (the not-awaited rule looks one level up)."""
        self.validators = validators
        self.shapes: dict[str, ObjectShape] = {}

    @cached_property
    def servers(self) -> dict[str, None]:
        """The catalog's server names (an ordered set), computed only when a name is not a known tool's server."""
        return dict.fromkeys(self.catalog.servers())

    @cached_property
    def lines(self) -> list[str]:
        return re.split(r"\r\n|\r|\n", self.code)

    def check(self, tree: ast.Module) -> list[Problem]:
        accesses, star_import = self._scan(tree)
        if star_import:
            return []
        try:
            self._check_accesses(accesses)
        except _Enough:
            pass  # accesses go in source order, so the problems kept are the first ones
        # Source order; on one spot, the name before its arguments and its `await`.
        return sorted(self.problems, key=lambda p: (p.line, p.column, RULE_ORDER[p.rule], p.message))

    def _check_accesses(self, accesses: list[_Access]) -> None:
        for access in accesses:
            if access.name in self.bound:
                continue
            access = self._unaliased(access)
            qualified = f"{access.name}.{access.attr}"
            if qualified in self.refused:
                self._report(access.node, "not_allowed", self.refused[qualified])
                continue
            entry = self.catalog.get(qualified)
            if entry is None and access.name not in self.servers:
                if access.call is not None:
                    self._unknown_server(access)
                continue
            if entry is None and access.attr not in RESOURCE_METHODS:  # `server.read_resource(uri)`: runs/resources.py
                self._unknown_tool(access)
            if access.call is not None:
                qualified = entry.qualified_name if entry else f"{access.name}.{access.attr}"
                self._not_awaited(access.call, qualified)
                if entry is not None:
                    self._arguments(access.call, entry)

    def _unaliased(self, access: _Access) -> _Access:
        """`time_.tool` is the server `time`'s tool: a server named like an importable module has that alias."""
        name, server = access.name, access.name[:-1]
        if name not in self.servers and server in self.servers and server_alias(server) == name:
            return replace(access, name=server)
        return access

    def _scan(self, tree: ast.Module) -> tuple[list[_Access], bool]:
        """One pass over the tree: names the code binds, accesses to `name.attr`, parents of calls."""
        found: list[ast.Attribute | ast.Subscript] = []
        callee_of: dict[int, ast.Call] = {}
        parents = self.parents
        star_import = False
        bound = self.bound
        # An explicit stack, not recursion: agent code can nest deeper than Python's recursion limit.
        stack: list[ast.AST] = [tree]
        while stack:
            node = stack.pop()
            if isinstance(node, ast.Name):
                if not isinstance(node.ctx, ast.Load):
                    bound.add(node.id)
                continue
            if isinstance(node, ast.Constant):
                continue
            if type(node) not in _SCANNED:
                pass
            elif isinstance(node, ast.Attribute | ast.Subscript):
                if isinstance(node.value, ast.Name) and isinstance(node.ctx, ast.Load):
                    found.append(node)
            elif isinstance(node, ast.Call):
                callee_of[id(node.func)] = node
            elif isinstance(node, ast.arg):
                bound.add(node.arg)
            elif isinstance(node, ast.alias):
                star_import = star_import or node.name == "*"
                bound.add(node.asname or node.name.partition(".")[0])
            elif isinstance(node, _BINDING_NAME_NODES):
                bound.add(node.name)
            elif isinstance(node, _SCOPE_CHANGERS):
                bound.update(node.names)
            elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar):
                if node.name:
                    bound.add(node.name)
            elif isinstance(node, ast.MatchMapping):
                if node.rest:
                    bound.add(node.rest)
            elif hasattr(node, "name"):  # 3.12 generics: TypeVar, ParamSpec, TypeVarTuple
                bound.add(str(node.name))
            # Inlined `ast.iter_child_nodes`, skipping operator and context fields: this loop is most of the check.
            for field in _CHILD_FIELDS.get(type(node), node._fields):
                value = getattr(node, field, None)
                if isinstance(value, list):
                    for item in value:
                        if isinstance(item, ast.AST):
                            stack.append(item)
                            if isinstance(item, ast.Call):
                                parents[id(item)] = node
                elif isinstance(value, ast.AST):
                    stack.append(value)
                    if isinstance(value, ast.Call):
                        parents[id(value)] = node
        found.sort(key=lambda node: (node.lineno, node.col_offset))
        accesses = [access for node in found if (access := _access(node, callee_of.get(id(node)))) is not None]
        return accesses, star_import

    def _report(self, node: ast.AST, rule: Rule, message: str) -> None:
        line = getattr(node, "lineno", 1)
        offset = getattr(node, "col_offset", 0)
        self.problems.add(Problem(line, self._column(line, offset), message, rule))
        if len(self.problems) >= MAX_PROBLEMS:
            raise _Enough

    def _column(self, line: int, offset: int) -> int:
        """The 1-based character column of a UTF-8 byte offset (what `ast` gives) on `line`."""
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        if text.isascii():
            return offset + 1
        return len(text.encode("utf-8", "surrogatepass")[:offset].decode("utf-8", "ignore")) + 1

    def _unknown_tool(self, access: _Access) -> None:
        qualified = f"{access.name}.{access.attr}"
        tools = [entry.python_name for entry in self.catalog.by_server(access.name)]
        suggestions = [f"{access.name}.{name}" for name in nearest(access.attr, tools)]
        if not suggestions:
            # The right tool name on the wrong server is a common slip with many servers.
            suggestions = [entry.qualified_name for entry in self.catalog if entry.python_name == access.attr][:3]
        self._report(access.node, "unknown_tool", UnknownToolError(qualified, suggestions).message)

    def _unknown_server(self, access: _Access) -> None:
        name = access.name
        if name in self.unavailable:
            self._report(access.node, "unavailable", self.unavailable[name])
            return
        if name in _KNOWN_NAMES or name.startswith("_"):
            return
        servers = nearest(name, self.servers, cutoff=0.8)
        if not servers:
            return
        having = [server for server in servers if f"{server}.{access.attr}" in self.catalog]
        hint = f"{having[0]}.{access.attr}" if having else " or ".join(servers)
        message = f"unknown server {name!r} in `{name}.{access.attr}(...)`; did you mean {hint}?"
        self._report(access.node, "unknown_server", message)

    def _not_awaited(self, call: ast.Call, qualified: str) -> None:
        parent = self.parents.get(id(call))
        if isinstance(parent, ast.Expr):
            message = (
                f"`{qualified}(...)` is not awaited, so the tool would not be called; write `await {qualified}(...)`"
            )
            self._report(call, "not_awaited", message)
        elif parent is not None and self._uses_as_value(parent, call):
            message = (
                f"`{qualified}(...)` is used as a value without `await` (it is a pending call, not the tool's "
                f"result); write `(await {qualified}(...))`"
            )
            self._report(call, "not_awaited", message)

    def _uses_as_value(self, parent: ast.AST, call: ast.Call) -> bool:
        """True when `parent` uses `call`'s pending value in a way a pending call refuses (or never awaits)."""
        if isinstance(parent, ast.Attribute | ast.Subscript):
            return parent.value is call
        if isinstance(parent, ast.If | ast.While | ast.IfExp | ast.Assert):
            return parent.test is call
        if isinstance(parent, ast.For | ast.AsyncFor | ast.comprehension):
            return parent.iter is call
        if isinstance(parent, ast.FormattedValue | ast.BinOp | ast.UnaryOp | ast.BoolOp):
            return True
        if isinstance(parent, ast.Call) and parent.func is not call:
            func = parent.func
            if isinstance(func, ast.Name):
                return func.id in _CONSUMERS and func.id not in self.bound
            return (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id == "json"
                and func.attr in _JSON_CONSUMERS
            )
        return False

    def _arguments(self, call: ast.Call, entry: ToolEntry) -> None:
        qualified = entry.qualified_name
        schema = entry.input_schema
        shape = self.shapes.get(qualified)
        if shape is None:
            shape = self.shapes[qualified] = object_shape(schema)
        if call.args:
            required = [key for key in shape.properties if key in shape.required and key.isidentifier()]
            example = ", ".join(f"{key}=..." for key in required) or "name=value, ..."
            message = f"{qualified}() takes keyword arguments only; write `{qualified}({example})`"
            self._report(call.args[0], "positional_argument", message)
        passed: dict[str, tuple[ast.AST, ast.expr]] = {}
        hidden = False
        for argument in call.keywords:
            if argument.arg is not None:
                passed[argument.arg] = (argument, argument.value)
                continue
            spread = literal_keys(argument.value)
            if spread is None:
                hidden = True
            else:
                passed.update(spread)
        meant: set[str] = set()
        for key, (node, _value) in passed.items():
            if key not in shape.properties and not accepts_key(schema, key, bool(shape.properties)):
                message, suggested = unknown_argument(qualified, key, shape.properties)
                self._report(node, "unknown_argument", message)
                meant.update(suggested[:1])
        # A required key the code misspelt is already named by the unknown-argument problem ("did you mean").
        missing = [key for key in shape.properties if key in shape.required and key not in passed and key not in meant]
        if missing and not hidden and not call.args:
            self._report(call, "missing_argument", missing_arguments(qualified, missing))
        literals = {
            key: value for key, (_node, expr) in passed.items() if (value := literal_value(expr)) is not UNKNOWN
        }
        if literals:
            for key, message in self._invalid_values(qualified, schema, literals).items():
                self._report(passed[key][0], "invalid_value", message)

    def _invalid_values(self, qualified: str, schema: Mapping[str, Any], literals: dict[str, Any]) -> dict[str, str]:
        """key -> message for each literal argument the tool's inputSchema rejects, in the bridge's wording."""
        instance = drop_omitted(schema, literals)
        if not instance:
            return {}
        try:
            errors = list(self.validators.build(schema).iter_errors(instance))
        except Exception:
            return {}  # a schema the validator cannot apply (bad $ref, malformed keyword): the bridge decides at run time
        by_key: dict[str, list[ValidationError]] = {}
        for error in errors:
            # Errors about the whole object (required, additionalProperties, anyOf of shapes) need all the arguments,
            # and only some are literals here; those are the other rules' business or the bridge's.
            path = error.absolute_path
            if path and path[0] in instance:
                by_key.setdefault(str(path[0]), []).append(error)
        if not by_key:
            return {}
        if not self.validators.is_valid(schema):  # slow, so only asked on this error path
            return {}
        messages: dict[str, str] = {}
        for key, key_errors in by_key.items():
            error = best_match(key_errors)
            if error is not None:
                messages[key] = argument_error(qualified, error).message
        return messages


def _access(node: ast.Attribute | ast.Subscript, call: ast.Call | None) -> _Access | None:
    """`name.attr` / `name["attr"]` being read, with the call it is the callee of."""
    if not isinstance(node.value, ast.Name):
        return None
    if isinstance(node, ast.Attribute):
        attr = node.attr
    elif isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
        attr = node.slice.value  # `server["_odd_name"]`, how agent code reaches a tool whose name starts with `_`
    else:
        return None
    return _Access(node, node.value.id, attr, call)
