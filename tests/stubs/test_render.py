"""Typed stubs of whole tools: signatures, docstrings, TypedDicts, and `.pyi` modules that mypy accepts."""

# Expected stubs hold one-line signatures on purpose (that is the compact form models read), so lines run long.

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from inline_snapshot import snapshot
from mcp_types import Tool

from portal_mcp.catalog.model import Catalog, ToolEntry
from portal_mcp.catalog.stubs import render_module, render_stub, render_stubs
from tests.stubs._mypy import mypy_errors


def tool(name: str, description: str = "", server: str = "demo", **schemas: Any) -> ToolEntry:
    wire = {"name": name, "description": description, "inputSchema": schemas.get("input", {"type": "object"})}
    if "output" in schemas:
        wire["outputSchema"] = schemas["output"]
    return Catalog.build({server: [Tool.model_validate(wire)]}).entries[0]


GET_TIME = tool(
    "get_current_time",
    "Get current time in a specific timezone.",
    server="time",
    input={
        "type": "object",
        "properties": {"timezone": {"type": "string", "description": "IANA timezone name (e.g. 'America/New_York')."}},
        "required": ["timezone"],
    },
    output={
        "type": "object",
        "title": "TimeResult",
        "properties": {"datetime": {"type": "string", "format": "date-time"}, "is_dst": {"type": "boolean"}},
        "required": ["datetime", "is_dst"],
    },
)

SEARCH_ISSUES = tool(
    "searchIssues",
    "Search issues in a repository.\n\nUses the search syntax of the tracker. Results are paginated.",
    server="tracker",
    input={
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "Search text."},
            "state": {"type": "string", "enum": ["open", "closed", "all"], "default": "open"},
            "labels": {"type": "array", "items": {"type": "string"}, "description": "Only issues with all labels."},
            "per_page": {"type": "integer", "minimum": 1, "maximum": 100, "default": 30},
            "since": {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}], "default": None},
            "sort": {"$ref": "#/$defs/Sort"},
            "from": {"type": "string", "description": "Start date."},
            "class": {"type": "integer"},
            "page-token": {"type": ["string", "null"], "description": "Cursor from the previous page."},
            "filters": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "required": ["query"],
        "$defs": {
            "Sort": {
                "type": "object",
                "description": "How to order results.",
                "properties": {"field": {"const": "created"}, "direction": {"enum": ["asc", "desc"]}},
                "required": ["field"],
            }
        },
    },
    output={
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"number": {"type": "integer"}, "title": {"type": "string"}},
                    "required": ["number", "title"],
                },
            },
            "next": {"type": ["string", "null"]},
        },
        "required": ["items"],
    },
)

CREATE_TREE = tool(
    "create_tree",
    "Create a folder tree.",
    server="files",
    input={
        "type": "object",
        "properties": {"root": {"$ref": "#/$defs/Folder"}, "dry_run": {"type": "boolean", "default": False}},
        "required": ["root"],
        "$defs": {
            "Folder": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Folder"}},
                },
                "required": ["name"],
            }
        },
    },
)

NO_ARGS = tool("ping", server="files")


def test_full_stub_has_signature_docstring_and_the_return_typeddict() -> None:
    assert render_stub(GET_TIME) == snapshot('''\
class TimeResult(TypedDict):
    datetime: str  # format: date-time
    is_dst: bool

# time.get_current_time
async def get_current_time(*, timezone: str) -> TimeResult:
    """Get current time in a specific timezone.

    Args:
        timezone: IANA timezone name (e.g. 'America/New_York').
    """
''')


def test_full_stub_covers_enums_defaults_refs_and_awkward_parameter_names() -> None:
    assert render_stub(SEARCH_ISSUES) == snapshot('''\
class Sort(TypedDict):
    # How to order results.
    field: Literal['created']
    direction: NotRequired[Literal['asc', 'desc']]

class Item(TypedDict):
    number: int
    title: str

class SearchIssuesResult(TypedDict):
    items: list[Item]
    next: NotRequired[str | None]

# tracker.searchIssues
async def searchIssues(*, query: str, state: Literal['open', 'closed', 'all'] = 'open', labels: list[str] | None = None, per_page: int = 30, since: str | None = None, sort: Sort | None = None, from_: str | None = None, class_: int | None = None, page_token: str | None = None, filters: dict[str, str] | None = None) -> SearchIssuesResult:
    """Search issues in a repository.

    Uses the search syntax of the tracker. Results are paginated.

    Args:
        query: Search text.
        labels: Only issues with all labels.
        per_page: (1..100)
        since: (format: date-time)
        from_: Pass as **{"from": value}. Start date.
        class_: Pass as **{"class": value}.
        page_token: Pass as **{"page-token": value}. Cursor from the previous page.
    """
''')


def test_recursive_input_types_are_defined_before_the_function() -> None:
    assert render_stub(CREATE_TREE) == snapshot('''\
class Folder(TypedDict):
    name: str
    children: NotRequired['list[Folder]']

# files.create_tree
async def create_tree(*, root: Folder, dry_run: bool = False) -> Any:
    """Create a folder tree."""
''')


def test_signature_detail_is_the_signature_and_the_first_sentence() -> None:
    assert render_stub(SEARCH_ISSUES, detail="signature") == snapshot('''\
# tracker.searchIssues
async def searchIssues(*, query: str, state: Literal['open', 'closed', 'all'] = 'open', labels: list[str] | None = None, per_page: int = 30, since: str | None = None, sort: dict | None = None, from_: str | None = None, class_: int | None = None, page_token: str | None = None, filters: dict[str, str] | None = None) -> dict:
    """Search issues in a repository."""
''')


def test_name_detail_is_the_qualified_name_and_the_first_sentence() -> None:
    assert render_stub(SEARCH_ISSUES, detail="name") == snapshot(
        "# tracker.searchIssues: Search issues in a repository.\n"
    )


def test_a_tool_without_arguments_or_description_is_one_line() -> None:
    assert render_stub(NO_ARGS) == snapshot("""\
# files.ping
async def ping() -> Any: ...
""")


def test_stubs_rendered_together_define_each_shared_typeddict_once() -> None:
    other_time = tool(
        "get_utc_time",
        "Now in UTC.",
        server="time",
        output=dict(GET_TIME.output_schema or {}),
        input={"type": "object"},
    )
    text = render_stubs([GET_TIME, other_time])
    assert text.count("class TimeResult(") == 1
    assert text == snapshot('''\
class TimeResult(TypedDict):
    datetime: str  # format: date-time
    is_dst: bool

# time.get_current_time
async def get_current_time(*, timezone: str) -> TimeResult:
    """Get current time in a specific timezone.

    Args:
        timezone: IANA timezone name (e.g. 'America/New_York').
    """

# time.get_utc_time
async def get_utc_time() -> TimeResult:
    """Now in UTC."""
''')


def test_long_descriptions_are_cut_at_a_sentence_and_summaries_at_the_first_one() -> None:
    sentence = "This tool does a very particular thing with the data you pass to it. "
    entry = tool("verbose", sentence * 30 + "The end.")
    full = render_stub(entry)
    assert len(full) < 800
    assert "does a very particular thing with the data you pass to it. ..." in full
    assert render_stub(entry, detail="name") == snapshot(
        "# demo.verbose: This tool does a very particular thing with the data you pass to it.\n"
    )


def test_descriptions_with_quotes_and_backslashes_stay_valid_python() -> None:
    entry = tool("quoting", 'Ends with """ and \\ and a "quote"', input={"type": "object"})
    source = render_stub(entry)
    docstring = ast.get_docstring(ast.parse(source).body[0])  # type: ignore[arg-type]
    assert docstring == 'Ends with """ and \\ and a "quote"'


def test_every_detail_level_is_valid_python() -> None:
    for entry in (GET_TIME, SEARCH_ISSUES, CREATE_TREE, NO_ARGS):
        for detail in ("name", "signature", "full"):
            ast.parse(render_stub(entry, detail=detail))


VARIED = [
    GET_TIME,
    SEARCH_ISSUES,
    CREATE_TREE,
    NO_ARGS,
    tool("list", "Shadows the builtin `list`.", input={"type": "object", "properties": {"x": {"type": "array"}}}),
    tool("str", "Shadows `str`.", input={"type": "object", "properties": {"s": {"type": "string"}}}),
    tool("Any", "Shadows `typing.Any`.", input={"type": "object", "properties": {"v": {}}}),
    tool(
        "extras",
        "Takes extra keys.",
        input={
            "type": "object",
            "properties": {"kwargs": {"type": "string"}},
            "additionalProperties": {"type": "number"},
        },
        output={"type": "object", "additionalProperties": {"type": "integer"}},
    ),
    tool(
        "wrapped",
        "FastMCP wraps non-object results.",
        output={"type": "object", "properties": {"result": {"type": "array", "items": {"type": "string"}}}},
    ),
    tool(
        "mismatched_default",
        "A default that does not match its type is documented instead.",
        input={"type": "object", "properties": {"n": {"type": "integer", "default": "10"}}},
    ),
]


def test_a_module_for_one_server_type_checks_with_mypy(tmp_path: Path) -> None:
    stub = tmp_path / "demo.pyi"
    stub.write_text(render_module("demo", VARIED))
    assert mypy_errors(stub) == ""


def test_a_module_spells_shadowed_builtins_through_their_modules() -> None:
    module = render_module("demo", VARIED)
    assert module.splitlines()[2:5] == snapshot(
        ["import builtins", "import typing", "from typing import Literal, NotRequired, TypedDict"]
    )
    assert "async def list(*, x: builtins.list[typing.Any] | None = None) -> typing.Any:" in module


MALFORMED: list[dict[str, Any]] = [
    {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}, "$defs": {"A": {"items": {"$ref": "#/$defs/A"}}}},
    {
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/A"}},
        "$defs": {"A": {"anyOf": [{"$ref": "#/$defs/B"}]}, "B": {"allOf": [{"$ref": "#/$defs/A"}]}},
    },
    {"$ref": "#"},
    {"type": "object", "properties": {"x": {"$ref": "#/properties/x"}}},
    {"type": "object", "properties": None, "required": "x"},
    {"type": "object", "properties": {"a": False, "b": {"type": 5}, "c": {"enum": "x"}, "d": {"anyOf": {}}}},
    {"type": "object", "properties": {"": {}, "1st": {}, "__x": {"type": "object", "properties": {"class": {}}}}},
    {"type": "object", "properties": {"n": {"type": "number", "default": float("nan")}}},
]


def test_malformed_and_cyclic_schemas_still_give_valid_stubs_that_type_check(tmp_path: Path) -> None:
    entries = [tool(f"t{i}", "Odd.", input=schema, output=schema) for i, schema in enumerate(MALFORMED)]
    for entry in entries:
        ast.parse(render_stub(entry))
    stub = tmp_path / "odd.pyi"
    stub.write_text(render_module("odd", entries))
    assert mypy_errors(stub) == ""


def test_search_stubs_fold_optional_parameters_past_the_cap_into_kwargs() -> None:
    properties = {f"p{i}": {"type": "string"} for i in range(40)}
    entry = tool("wide", "Many knobs.", input={"type": "object", "properties": properties, "required": ["p39"]})
    stub = render_stub(entry)
    assert "async def wide(*, p39: str, p0: str | None = None," in stub
    assert "p28: str | None = None, **kwargs: Any) -> Any:" in stub
    assert '**kwargs: 10 more optional: "p29", "p30", "p31", "p32", "p33", "p34", "p35", "p36", ...' in stub
    assert "p38: str | None = None" in render_module("demo", [entry])


def test_a_union_of_very_many_object_shapes_is_a_plain_dict() -> None:
    variants = [{"type": "object", "properties": {"kind": {"const": f"k{i}"}}} for i in range(20)]
    entry = tool("polymorphic", "Takes a task.", input={"type": "object", "properties": {"task": {"oneOf": variants}}})
    assert render_stub(entry) == snapshot('''\
# demo.polymorphic
async def polymorphic(*, task: dict[str, Any] | None = None) -> Any:
    """Takes a task.

    Args:
        task: (one of 20 object shapes)
    """
''')


def test_parameters_already_described_in_a_docstring_style_description_are_not_repeated() -> None:
    entry = tool(
        "fastmcp_style",
        "Get a store.\n\nArgs:\n    store_id: The ID of the store\n    region: Optional region override",
        input={
            "type": "object",
            "properties": {
                "store_id": {"type": "string", "description": "The ID of the store"},
                "region": {"type": "string", "format": "aws-region", "description": "Region override."},
                "verbose": {"type": "boolean", "description": "More output."},
            },
            "required": ["store_id"],
        },
    )
    assert render_stub(entry) == snapshot('''\
# demo.fastmcp_style
async def fastmcp_style(*, store_id: str, region: str | None = None, verbose: bool | None = None) -> Any:
    """Get a store.

    Args:
        store_id: The ID of the store
        region: Optional region override

    More on args:
        region: (format: aws-region)
        verbose: More output.
    """
''')
