"""Check agent code against the catalog before it runs, so a wrong call fails before any tool is called.

`check_code(code, catalog)` parses the code with `ast` (never compiles or runs it) and reports, with the line and
column in the agent code:

```
unknown_tool         `server.tool` where `server` is a catalog server without that tool ("did you mean ...?")
unknown_server       `sevrer.tool(...)` where `sevrer` is undefined in the code and close to a server name
positional_argument  `server.tool("x")`: tools take keyword arguments only
unknown_argument     a keyword the tool's inputSchema does not declare (nearest parameter names)
missing_argument     a required keyword that is not passed
invalid_value        a literal argument (constants, list/dict literals of constants) the schema rejects
not_awaited          a tool call whose pending result is dropped or used as a value without `await`
```

A false report blocks code that would have worked, so every rule only speaks when it is sure:
- a server name bound anywhere in the code (assigned, imported, a parameter, a loop target, ...) is the code's own
  object, not the server, everywhere in the code; a star import turns the check off (names become unknowable);
- an unknown name is only called a server when it is undefined in the code, is no builtin and no stdlib module
  (`json.dumps`, `re.sub`, `asyncio.gather` without their import are left to the sandbox) and looks like a server;
- `**mapping` splats hide keys, so they turn off the missing-argument rule (a `**{"odd-name": v}` literal does not);
- unknown keywords are only reported when the schema declares its properties and does not accept other keys;
- values are only checked when they are literals, with the bridge's own validation (after its None-means-omit rule),
  and only when the schema passes `check_schema` (the bridge does not validate against a broken schema either);
- "not awaited" is only reported where the pending call cannot be awaited later: a bare statement, or an operand
  that a pending call refuses (attribute, item, iteration, truth value, arithmetic, f-string, `print(...)`, ...).
Anything the checker does not understand is not reported; the sandbox and the bridge still check at run time.
"""

from __future__ import annotations

import ast
import builtins
import difflib
import json
import keyword
import logging
import math
import re
import sys
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Final, Literal, get_args

import jsonschema
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.protocols import Validator

from portal_mcp.bridge import describe_validation_error, drop_omitted
from portal_mcp.catalog import Catalog, ToolEntry
from portal_mcp.errors import ArgumentError, UnknownToolError
from portal_mcp.naming import python_name
from portal_mcp.sandbox.host import MAX_CODE_CHARS
from portal_mcp.stubs.schema import ObjectShape, object_shape, resolve_pointer

__all__ = ["Problem", "Rule", "check_code", "render"]

logger = logging.getLogger(__name__)

Rule = Literal[
    "unknown_tool", "unknown_server", "positional_argument", "unknown_argument", "missing_argument",
    "invalid_value", "not_awaited",
]  # fmt: skip

_RULE_ORDER: Final = {rule: index for index, rule in enumerate(get_args(Rule))}

MAX_PROBLEMS: Final = 100
"""The check stops after this many problems: code with more needs rewriting, not a longer list."""
MAX_RENDERED: Final = 20
"""Problems listed in a reply; the rest are counted. Twenty is plenty to fix before the next attempt."""
_MAX_LITERAL_DEPTH: Final = 32
_MAX_NAMES_SHOWN: Final = 12
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
_UNKNOWN: Final = object()
"""What `_literal` returns for an expression whose value is not known before the code runs."""


@dataclass(frozen=True)
class Problem:
    """One problem in agent code: where it is (1-based line and column) and what to do about it."""

    line: int
    column: int
    message: str
    rule: Rule

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.message}"


def render(problems: Sequence[Problem]) -> str:
    """The error text `execute_code` returns when the check finds problems: one line per problem, then the fix."""
    count = len(problems)
    noun = "problem" if count == 1 else "problems"
    lines = [f"The code was not run: checking it against the tool stubs found {count} {noun} (no tool was called):"]
    lines.extend(f"- {problem}" for problem in problems[:MAX_RENDERED])
    if count > MAX_RENDERED:
        lines.append(f"- ... and {count - MAX_RENDERED} more")
    lines.append("Fix the code and run it again; search_api shows each tool's stub with its exact parameters.")
    return "\n".join(lines)


def check_code(code: str, catalog: Catalog) -> list[Problem]:
    """Problems in `code`'s tool calls, in source order; [] when there are none or the code does not parse.

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
        return _Checker(code, catalog).check(tree)
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

    def __init__(self, code: str, catalog: Catalog) -> None:
        self.code = code
        self.catalog = catalog
        self.problems: set[Problem] = set()
        self.bound: set[str] = set()
        self.parents: dict[int, ast.AST] = {}
        """id(call) -> parent node, for every call (the not-awaited rule looks one level up)."""
        self.validators: dict[int, Validator] = {}
        """id(input schema) -> its validator; schemas are owned by the catalog, so ids are stable during a check."""
        self.shapes: dict[str, ObjectShape] = {}
        self.schema_valid: dict[int, bool] = {}
        """id(input schema) -> whether it passes `check_schema` (slow, so asked once per schema and check)."""

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
        return sorted(self.problems, key=lambda p: (p.line, p.column, _RULE_ORDER[p.rule], p.message))

    def _check_accesses(self, accesses: list[_Access]) -> None:
        for access in accesses:
            if access.name in self.bound:
                continue
            entry = self.catalog.get(f"{access.name}.{access.attr}")
            if entry is None and access.name not in self.servers:
                if access.call is not None:
                    self._unknown_server(access)
                continue
            if entry is None:
                self._unknown_tool(access)
            if access.call is not None:
                qualified = entry.qualified_name if entry else f"{access.name}.{access.attr}"
                self._not_awaited(access.call, qualified)
                if entry is not None:
                    self._arguments(access.call, entry)

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
        suggestions = [f"{access.name}.{name}" for name in _nearest(access.attr, tools)]
        if not suggestions:
            # The right tool name on the wrong server is a common slip with many servers.
            suggestions = [entry.qualified_name for entry in self.catalog if entry.python_name == access.attr][:3]
        self._report(access.node, "unknown_tool", UnknownToolError(qualified, suggestions).message)

    def _unknown_server(self, access: _Access) -> None:
        name = access.name
        if name in _KNOWN_NAMES or name.startswith("_"):
            return
        servers = _nearest(name, self.servers, cutoff=0.8)
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
            spread = _literal_keys(argument.value)
            if spread is None:
                hidden = True
            else:
                passed.update(spread)
        meant: set[str] = set()
        for key, (node, _value) in passed.items():
            if key not in shape.properties and not _accepts_key(schema, key, bool(shape.properties)):
                message, suggested = _unknown_argument(qualified, key, shape.properties)
                self._report(node, "unknown_argument", message)
                meant.update(suggested[:1])
        # A required key the code misspelt is already named by the unknown-argument problem ("did you mean").
        missing = [key for key in shape.properties if key in shape.required and key not in passed and key not in meant]
        if missing and not hidden and not call.args:
            self._report(call, "missing_argument", _missing(qualified, missing))
        literals = {key: value for key, (_node, expr) in passed.items() if (value := _literal(expr)) is not _UNKNOWN}
        if literals:
            for key, message in self._invalid_values(qualified, schema, literals).items():
                self._report(passed[key][0], "invalid_value", message)

    def _invalid_values(self, qualified: str, schema: Mapping[str, Any], literals: dict[str, Any]) -> dict[str, str]:
        """key -> message for each literal argument the tool's inputSchema rejects, in the bridge's wording."""
        instance = drop_omitted(schema, literals)
        if not instance:
            return {}
        try:
            validator = self.validators.get(id(schema))
            if validator is None:
                cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
                validator = self.validators[id(schema)] = cls(schema)
            errors = list(validator.iter_errors(instance))
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
        valid = self.schema_valid.get(id(schema))
        if valid is None:
            valid = self.schema_valid[id(schema)] = _schema_is_valid(type(validator), schema)
        if not valid:
            return {}
        messages: dict[str, str] = {}
        for key, key_errors in by_key.items():
            error = best_match(key_errors)
            if error is not None:
                messages[key] = ArgumentError(qualified, *describe_validation_error(error)).message
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


def _literal_keys(node: ast.expr) -> dict[str, tuple[ast.AST, ast.expr]] | None:
    """The keys of a `**{"key": value}` literal (each with its key node), or None if they are not all known."""
    if not isinstance(node, ast.Dict):
        return None
    keys: dict[str, tuple[ast.AST, ast.expr]] = {}
    for key, value in zip(node.keys, node.values, strict=True):
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
            return None  # `**{**other}` or a computed key
        keys[key.value] = (key, value)
    return keys


def _literal(node: ast.expr, depth: int = 0) -> Any:
    """The JSON value `node` evaluates to when it is a literal, else `_UNKNOWN`."""
    if depth > _MAX_LITERAL_DEPTH:
        return _UNKNOWN
    if isinstance(node, ast.Constant):
        value = node.value
        if value is None or isinstance(value, str | int) or (isinstance(value, float) and math.isfinite(value)):
            return value
        return _UNKNOWN  # bytes, complex, Ellipsis: not JSON; the sandbox says so at the call
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = node.operand
        number = operand.value if isinstance(operand, ast.Constant) else None
        if isinstance(number, int | float) and not isinstance(number, bool) and math.isfinite(number):
            return -number if isinstance(node.op, ast.USub) else number
        return _UNKNOWN
    if isinstance(node, ast.List | ast.Tuple):
        items = [_literal(item, depth + 1) for item in node.elts]
        return _UNKNOWN if any(item is _UNKNOWN for item in items) else items
    if isinstance(node, ast.Dict):
        result: dict[str, Any] = {}
        for key, item_node in zip(node.keys, node.values, strict=True):
            if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                return _UNKNOWN
            item = _literal(item_node, depth + 1)
            if item is _UNKNOWN:
                return _UNKNOWN
            result[key.value] = item
        return result
    return _UNKNOWN


def _accepts_key(schema: Mapping[str, Any], key: str, declares_properties: bool) -> bool:
    """Whether an undeclared `key` may be passed: the schema says other keys are fine, or says nothing at all."""
    if not declares_properties:
        # No declared parameters and no explicit `additionalProperties: false`: too vague to call a key unknown.
        return any(part.get("additionalProperties", True) is not False for part in _object_parts(schema))
    for part in _object_parts(schema):
        extra = part.get("additionalProperties", False)
        if extra is not False or part.get("unevaluatedProperties", False) is not False:
            return True
        patterns = part.get("patternProperties")
        if isinstance(patterns, Mapping) and any(_matches(pattern, key) for pattern in patterns):
            return True
    return False


def _object_parts(schema: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """The root schema and the object schemas it is made of (`$ref`, `allOf`, `anyOf`, `oneOf`), one level deep."""
    yield schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and (target := resolve_pointer(schema, ref)) is not None:
        yield target
    for combinator in ("allOf", "anyOf", "oneOf"):
        parts = schema.get(combinator)
        if isinstance(parts, list):
            yield from (part for part in parts if isinstance(part, Mapping))


def _matches(pattern: object, key: str) -> bool:
    try:
        return isinstance(pattern, str) and re.search(pattern, key) is not None
    except re.error:
        return True  # a pattern we cannot read might match: do not call the key unknown


def _unknown_argument(qualified: str, key: str, properties: Mapping[str, Any]) -> tuple[str, list[str]]:
    """The message for an undeclared keyword, and the parameters it suggests instead (best first)."""
    keys = list(properties)
    # Stubs rename keys that are not keyword arguments (`from` -> `from_`) and say to pass them as `**{...}`.
    suggested = [prop for prop in keys if not _is_keyword_name(prop) and python_name(prop) == key]
    if suggested:
        problem = f"pass the parameter {suggested[0]!r} as `**{{{json.dumps(suggested[0])}: value}}`"
    elif suggested := _nearest(key, keys):
        problem = f"is not a parameter of this tool; did you mean {', '.join(_spelled(name) for name in suggested)}?"
    else:
        shown = ", ".join(keys[:_MAX_NAMES_SHOWN]) + (", ..." if len(keys) > _MAX_NAMES_SHOWN else "")
        problem = f"is not a parameter of this tool (parameters: {shown or 'none'})"
    return ArgumentError(qualified, key, problem).message, suggested


def _missing(qualified: str, missing: list[str]) -> str:
    if len(missing) == 1:
        return ArgumentError(qualified, missing[0], "is required but was not passed").message
    names = ", ".join(repr(name) for name in missing)
    return f"{qualified}: arguments {names}: are required but were not passed"


def _schema_is_valid(cls: type[Validator], schema: Mapping[str, Any]) -> bool:
    """As the bridge decides it: a schema failing `check_schema` is not validated against. Slow: error path only."""
    try:
        cls.check_schema(dict(schema))
    except Exception:
        return False
    return True


def _nearest(name: str, candidates: Iterable[str], *, limit: int = 3, cutoff: float = 0.6) -> list[str]:
    """Candidates that look like `name`: the same words in another case or separator style first, then the most
    similar ones (only those about as similar as the best, so `titel` suggests `title` and not also `state`)."""
    options = list(candidates)
    folded = _fold(name)
    same = [option for option in options if _fold(option) == folded]
    matcher = difflib.SequenceMatcher()
    matcher.set_seq2(name)
    scored: list[tuple[float, str]] = []
    for option in options:
        matcher.set_seq1(option)
        if matcher.real_quick_ratio() >= cutoff and matcher.quick_ratio() >= cutoff and matcher.ratio() >= cutoff:
            scored.append((matcher.ratio(), option))
    scored.sort(key=lambda item: -item[0])
    close = [option for score, option in scored if score >= scored[0][0] - 0.1]
    return list(dict.fromkeys(same + close))[:limit]


def _fold(name: str) -> str:
    return re.sub(r"[\W_]+", "", name).lower()


def _is_keyword_name(key: str) -> bool:
    """Whether `key` can be written as `key=value` in a call (`type=` can, `from=` cannot)."""
    return key.isidentifier() and not keyword.iskeyword(key)


def _spelled(key: str) -> str:
    return repr(key) if _is_keyword_name(key) else f"`**{{{json.dumps(key)}: value}}`"
