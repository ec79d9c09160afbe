"""Typed Python stubs of downstream tools, in the form agent code calls them.

Agent code calls `await server.python_name(key=value, ...)` with the JSON property names as keyword arguments, so a
tool renders as a keyword-only `async def` whose parameters are its input properties (required first) and whose
return type comes from its `outputSchema`. Property names that cannot be keyword arguments (`from`, `odd-name`) get
a sanitised parameter name and a docstring note saying to pass them as `**{"odd-name": value}`.

Stubs are shown to a model and counted in tokens: one line per signature, trimmed descriptions, and TypedDict
definitions only at the `full` detail level.
"""

from __future__ import annotations

import json
import keyword
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from portal_mcp.catalog.model import ToolEntry
from portal_mcp.catalog.schemas import object_shape
from portal_mcp.catalog.shapes import Observed
from portal_mcp.catalog.stubs.names import camel, shared_result_renames
from portal_mcp.catalog.stubs.notes import notes
from portal_mcp.catalog.stubs.pytypes import ANY, PLAIN, PyType, Spelling, optional, python_literal, render_typeddicts
from portal_mcp.catalog.stubs.schema import TYPING_NAMES, TypeBuilder
from portal_mcp.catalog.stubs.text import docstring, one_line, summary, trim
from portal_mcp.naming import python_name, unique_name

Detail = Literal["name", "signature", "full"]

DESCRIPTION_CHARS = 600
MAX_PARAMS = 30
"""In search replies, optional parameters past this many fold into `**kwargs` (one real tool takes 205)."""
PARAM_DOC_CHARS = 200
SUMMARY_CHARS = 120
INLINE_DICT = "dict"
"""How a signature-only stub spells a TypedDict it does not define: one token, where the name took several."""
_BUILTIN_NAMES = frozenset({"str", "int", "float", "bool", "list", "dict"})


@dataclass(frozen=True)
class Param:
    """One keyword argument of a tool stub."""

    name: str
    """The Python parameter name (the JSON key unless that is not a valid keyword argument)."""
    key: str
    """The JSON property name the tool expects."""
    type: PyType
    required: bool
    default: str | None
    """Python source of the default shown in the signature (`None` when the parameter is required)."""
    description: str
    facts: tuple[str, ...] = ()
    """What the type cannot say: format, range, a default not shown in the signature."""

    def render(self, spelling: Spelling = PLAIN) -> str:
        text = f"{self.name}: {self.type.render(spelling)}"
        return text if self.default is None else f"{text} = {self.default}"

    def doc(self, tool_doc: str) -> str:
        """The `Args:` line text, without the description when `tool_doc` already lists this parameter."""
        parts: list[str] = []
        if self.name != self.key:
            parts.append(f"Pass as **{{{json.dumps(self.key)}: value}}.")
        # Descriptions written as Python docstrings (FastMCP servers) already carry an `Args:` section.
        listed = re.search(rf"(?m)^[\s*-]*`?{re.escape(self.key)}`?\s*(\([^)]*\))?\s*:", tool_doc)
        if self.description and not listed:
            parts.append(self.description)
        if self.facts:
            parts.append(f"({'; '.join(self.facts)})")
        return " ".join(parts)


@dataclass(frozen=True)
class Signature:
    """A tool as a Python function: parameters, extra keyword arguments, return type."""

    entry: ToolEntry
    params: tuple[Param, ...]
    extra: tuple[str, PyType] | None
    returns: PyType
    folded: tuple[str, ...] = ()
    """JSON keys of optional parameters left out of the signature (past `max_params`), accepted via `**kwargs`."""
    observed_calls: int = 0
    """How many calls the return type was learned from (0: it is declared, or unknown)."""

    @classmethod
    def build(
        cls,
        entry: ToolEntry,
        builder: TypeBuilder,
        *,
        max_params: int | None = None,
        observed: Observed | None = None,
    ) -> Signature:
        """Convert the entry's schemas with `builder`, which collects the TypedDicts they need; without an
        `outputSchema`, the return type is the `observed` one when there is one."""
        root = entry.input_schema
        shape = object_shape(root)
        names = _param_names(list(shape.properties))
        # Required first, each group in listing order; optional ones past `max_params` are only named in the doc.
        keys = sorted(shape.properties, key=lambda key: key not in shape.required)
        cut = len(keys) if max_params is None else max(max_params, len(shape.required))
        params = [
            _param(names[key], key, shape.properties[key], key in shape.required, root, builder) for key in keys[:cut]
        ]
        folded = tuple(keys[cut:])
        extra: tuple[str, PyType] | None = None
        extra_name = "kwargs" if "kwargs" not in names.values() else "extra_kwargs"
        if folded:
            extra = (extra_name, ANY)
        elif shape.extra is not None:
            extra = (extra_name, builder.convert(shape.extra, root=root, hint="ExtraValue"))
        returns: PyType = ANY
        out = entry.output_schema or (observed.schema if observed is not None else None)
        if out:
            returns = builder.convert(out, root=out, hint=camel(entry.python_name) + "Result")
        seen = observed.calls if observed is not None and not entry.output_schema else 0
        return cls(entry, tuple(params), extra, returns, folded, seen)

    def types(self) -> list[PyType]:
        extra = [self.extra[1]] if self.extra else []
        return [*(param.type for param in self.params), *extra, self.returns]

    def render(self, *, full: bool, spelling: Spelling = PLAIN) -> str:
        """`async def ...` with a one-line summary, or with the trimmed description and `Args:` when `full`."""
        args = [param.render(spelling) for param in self.params]
        if self.extra:
            args.append(f"**{self.extra[0]}: {self.extra[1].render(spelling)}")
        star = "*, " if self.params else ""
        returns = self.returns.render(spelling)
        head = f"async def {self.entry.python_name}({star}{', '.join(args)}) -> {returns}:"
        text = self._doc() if full else summary(self.entry.description, SUMMARY_CHARS)
        body = f"{head}\n{docstring(text, '    ')}" if text else f"{head} ..."
        if self.observed_calls:
            # Learned from results, not declared by the server: the model should expect keys to vary.
            plural = "s" if self.observed_calls != 1 else ""
            first, newline, rest = body.partition("\n")
            body = f"{first}  # return type observed over {self.observed_calls} call{plural}{newline}{rest}"
        return body

    def _doc(self) -> str:
        body = trim(self.entry.description, DESCRIPTION_CHARS)
        documented = [f"    {param.name}: {doc}" for param in self.params if (doc := param.doc(body))]
        if self.folded:
            shown = ", ".join(json.dumps(key) for key in self.folded[:8])
            more = ", ..." if len(self.folded) > 8 else ""
            documented.append(
                f"    **{self.extra[0] if self.extra else 'kwargs'}: {len(self.folded)} more optional: {shown}{more}"
            )
        if not documented:
            return body
        # A description written as a docstring has its own `Args:`; ours then only adds to it.
        heading = "More on args:" if re.search(r"(?m)^\s*Args:\s*$", body) else "Args:"
        args = heading + "\n" + "\n".join(documented)
        return f"{body}\n\n{args}" if body else args


def render_stub(entry: ToolEntry, *, detail: Detail = "full") -> str:
    """Python source for one tool: its qualified name and summary, its signature, or its full typed stub."""
    return render_stubs([entry], detail=detail)


def render_stubs(
    entries: Sequence[ToolEntry],
    *,
    detail: Detail = "full",
    full_first: int | None = None,
    observed: Mapping[str, Observed] | None = None,
) -> str:
    """Stubs for several tools in one text (a search reply), TypedDict names shared and unique across them.

    With `detail="full"` and `full_first=N`, only the first N tools get full docs and the rest signatures: the
    best hits are usually the ones called, and a later one is a search for its exact name away. `observed` holds
    the return types learned from calls, by qualified name (`ShapeBook.observed`).
    """
    observed = observed or {}
    if detail == "name":
        return "".join(_name_line(entry) + "\n" for entry in entries)
    builder = TypeBuilder(reserved=[entry.python_name for entry in entries])
    signatures = [
        Signature.build(entry, builder, max_params=MAX_PARAMS, observed=observed.get(entry.qualified_name))
        for entry in entries
    ]
    renames = shared_result_renames(builder, ((sig.entry.python_name, sig.returns) for sig in signatures))
    defined: set[str] = set()
    blocks: list[str] = []
    for position, signature in enumerate(signatures):
        full = detail == "full" and (full_first is None or position < full_first)
        parts: list[str] = []
        spelling: Spelling = renames
        if full:
            fresh = [d for d in builder.definitions_for(signature.types()) if d.name not in defined]
            if fresh:
                parts.append(render_typeddicts(fresh, defined=defined, spelling=renames))
        else:
            # A signature-only stub defines nothing: a TypedDict no earlier stub defined is shown as the dict it is.
            mentioned = frozenset().union(*(expr.names() for expr in signature.types()))
            spelling = {**renames, **dict.fromkeys(mentioned - defined, INLINE_DICT)}
        parts.append(f"# {signature.entry.qualified_name}\n{signature.render(full=full, spelling=spelling)}")
        blocks.append("\n".join(parts))
    return "\n\n".join(blocks) + "\n" if blocks else ""


def render_module(server: str, entries: Sequence[ToolEntry], observed: Mapping[str, Observed] | None = None) -> str:
    """A complete `.pyi` for one server: typing imports, every TypedDict, then every tool as a function."""
    builder = TypeBuilder(reserved=[entry.python_name for entry in entries])
    observed = observed or {}
    signatures = [Signature.build(entry, builder, observed=observed.get(entry.qualified_name)) for entry in entries]
    definitions = builder.definitions_for(expr for signature in signatures for expr in signature.types())
    # A tool called `list` (dbt has one) shadows the builtin in its module, so annotations spell it `builtins.list`.
    shadowed = {entry.python_name for entry in entries}
    spelling = {name: f"builtins.{name}" for name in _BUILTIN_NAMES & shadowed}
    spelling |= {name: f"typing.{name}" for name in TYPING_NAMES & shadowed}
    modules = {spelled.split(".")[0] for spelled in spelling.values()}
    spelling |= shared_result_renames(builder, ((sig.entry.python_name, sig.returns) for sig in signatures))
    imports = [f"import {module}" for module in sorted(modules)]
    imports.append(f"from typing import {', '.join(sorted(TYPING_NAMES - shadowed))}")
    header = f'"""Tools of the `{server}` server, generated by portal-mcp from their JSON Schemas."""'
    parts = [header, "\n".join(imports)]
    if definitions:
        parts.append(render_typeddicts(definitions, spelling=spelling).rstrip("\n"))
    parts.extend(signature.render(full=True, spelling=spelling) for signature in signatures)
    return "\n\n".join(parts) + "\n"


def _name_line(entry: ToolEntry) -> str:
    text = summary(entry.description, SUMMARY_CHARS)
    return f"# {entry.qualified_name}: {text}" if text else f"# {entry.qualified_name}"


def _param_names(keys: list[str]) -> dict[str, str]:
    """Parameter name per JSON key: the key itself when it is a valid keyword argument, else a sanitised one.

    Not `naming.assign_python_names`: that also renames soft keywords, but `type=` and `match=` are fine keyword
    arguments and the most common parameter names there are.
    """
    names = {key: key for key in keys if key.isidentifier() and not keyword.iskeyword(key)}
    taken = set(names.values())
    for key in keys:
        if key in names:
            continue
        names[key] = unique_name(python_name(key), taken)
    return names


def _param(name: str, key: str, sub: Any, required: bool, root: Mapping[str, Any], builder: TypeBuilder) -> Param:
    expr = builder.convert(sub, root=root, hint=camel(key))
    schema: Mapping[str, Any] = sub if isinstance(sub, Mapping) else {}
    facts = notes(schema, root)
    default: str | None = None
    if not required:
        value = schema.get("default")
        shown = python_literal(value) if "default" in schema else None
        if shown is not None and expr.accepts(value):
            default = shown
        else:
            # Omitting an optional argument is spelled `= None`; a default that can't be shown is documented.
            expr, default = optional(expr), "None"
            if "default" in schema and value is not None:
                facts.append(f"default: {_short_json(value)}")
    description = schema.get("description")
    text = one_line(description, PARAM_DOC_CHARS) if isinstance(description, str) else ""
    return Param(name, key, expr, required, default, text, tuple(facts))


def _short_json(value: object, max_chars: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= max_chars else text[: max_chars - 3] + "..."
