"""TypedDict names a model reads right: singular item types, one definition per shape, each named for its own tool."""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

import pytest
from inline_snapshot import snapshot

from portal_mcp.catalog.stubs import render_module, render_stubs
from portal_mcp.catalog.stubs.names import singular
from tests.stubs._mypy import mypy_errors
from tests.stubs.test_render import SEARCH_ISSUES, tool

WRAPPED_STR = {
    "type": "object",
    "properties": {"result": {"type": "string"}},
    "required": ["result"],
    "x-fastmcp-wrap-result": True,
}


@pytest.mark.parametrize(
    ("plural", "item"),
    [
        ("Entities", "Entity"),
        ("SearchIndexes", "SearchIndex"),
        ("Addresses", "Address"),
        ("Matches", "Match"),
        ("Aliases", "Alias"),
        ("Statuses", "Status"),
        ("Photos", "Photo"),
        ("Children", "Child"),
        ("IDs", "ID"),
        ("Movies", "Movie"),
        ("Series", "SeriesItem"),
        ("Data", "DataItem"),
        ("Status", "StatusItem"),
        ("", "Item"),
    ],
)
def test_a_list_item_type_is_named_in_the_singular(plural: str, item: str) -> None:
    assert singular(plural) == item


def test_list_items_in_a_stub_are_named_in_the_singular() -> None:
    entity = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    create = tool(
        "create_entities",
        input={
            "type": "object",
            "properties": {"entities": {"type": "array", "items": entity}},
            "required": ["entities"],
        },
    )
    assert "async def create_entities(*, entities: list[Entity]) -> Any:" in render_stubs([create])
    assert "Entitie" not in render_stubs([create])


def test_the_same_referenced_shape_in_two_tools_is_defined_once() -> None:
    time_result = {
        "type": "object",
        "properties": {"timezone": {"type": "string"}, "is_dst": {"type": "boolean"}},
        "required": ["timezone", "is_dst"],
    }
    current = tool("get_current_time", output={**time_result, "title": "TimeResult"})
    convert = tool(
        "convert_time",
        output={
            "type": "object",
            "title": "TimeConversionResult",
            "properties": {"source": {"$ref": "#/$defs/TimeResult"}, "target": {"$ref": "#/$defs/TimeResult"}},
            "required": ["source", "target"],
            "$defs": {"TimeResult": time_result},
        },
    )
    assert render_stubs([current, convert]) == snapshot("""\
class TimeResult(TypedDict):
    timezone: str
    is_dst: bool

# demo.get_current_time
async def get_current_time() -> TimeResult: ...

class TimeConversionResult(TypedDict):
    source: TimeResult
    target: TimeResult

# demo.convert_time
async def convert_time() -> TimeConversionResult: ...
""")


def test_a_definition_repeated_with_other_field_descriptions_is_still_defined_once() -> None:
    def config_of(purpose: str) -> dict[str, object]:
        s3 = {"type": "object", "properties": {"uri": {"type": "string", "description": purpose}}, "required": ["uri"]}
        return {
            "type": "object",
            "properties": {"target": {"$ref": "#/$defs/S3Configuration"}},
            "required": ["target"],
            "$defs": {"S3Configuration": s3},
        }

    export = tool("start_export", input=config_of("Where the export goes."))
    job = tool("start_job", input=config_of("Where job logs go."))
    reply = render_stubs([export, job])
    assert reply.count("class S3Configuration(TypedDict):") == 1 and "S3Configuration2" not in reply
    assert "async def start_job(*, target: S3Configuration) -> Any:" in reply


def test_a_result_shape_several_tools_return_is_named_for_its_keys_not_for_one_of_them() -> None:
    hang = tool("hang", "Wait forever.", output={**WRAPPED_STR, "title": "hangOutput"})
    echo = tool("echo", "Return the text.", output={**WRAPPED_STR, "title": "echoOutput"})
    ping = tool("ping", "Answer pong.", output=WRAPPED_STR)
    reply = render_stubs([hang, echo, ping])
    assert reply == snapshot('''\
class StrResult(TypedDict):
    result: str

# demo.hang
async def hang() -> StrResult:
    """Wait forever."""

# demo.echo
async def echo() -> StrResult:
    """Return the text."""

# demo.ping
async def ping() -> StrResult:
    """Answer pong."""
''')


def test_a_result_shape_only_one_tool_returns_keeps_the_tools_name() -> None:
    echo = tool("echo", output={**WRAPPED_STR, "title": "echoOutput"})
    assert "async def echo() -> EchoOutput: ..." in render_stubs([echo])


def test_a_module_with_renamed_shared_results_type_checks(tmp_path: Path) -> None:
    tools = [tool(name, output=WRAPPED_STR) for name in ("list", "get_item", "delete_item")]
    module = render_module("demo", tools)
    assert "-> StrResult" in module and "ListResult" not in module
    (tmp_path / "demo.pyi").write_text(module)
    assert mypy_errors(tmp_path) == ""


def test_signature_only_hits_define_or_inline_every_type_they_mention() -> None:
    other = tool("list_things", output={"type": "object", "properties": {"n": {"type": "integer"}}})
    reply = render_stubs([other, SEARCH_ISSUES], detail="full", full_first=1)
    assert undefined_names(reply) == set()
    assert "sort: dict | None = None" in reply
    assert "-> dict:" in reply
    signatures = render_stubs([SEARCH_ISSUES, other], detail="signature")
    assert undefined_names(signatures) == set()


def undefined_names(source: str) -> set[str]:
    """Names an annotation uses that neither the text, `typing` (as stubs import it) nor builtins define."""
    tree = ast.parse(source)
    defined = {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    assigned = [node.targets for node in ast.walk(tree) if isinstance(node, ast.Assign)]
    defined |= {target.id for targets in assigned for target in targets if isinstance(target, ast.Name)}
    known = defined | set(dir(builtins)) | {"Any", "Literal", "NotRequired", "TypedDict"}
    used: set[str] = set()
    for node in ast.walk(tree):
        annotations: list[ast.expr | None] = []
        if isinstance(node, ast.AsyncFunctionDef):
            annotations = [node.returns, *(arg.annotation for arg in node.args.kwonlyargs)]
            annotations.append(node.args.kwarg.annotation if node.args.kwarg else None)
        elif isinstance(node, ast.AnnAssign):
            annotations = [node.annotation]
        for annotation in filter(None, annotations):
            used |= _names_in(annotation)
    return used - known


def _names_in(node: ast.expr) -> set[str]:
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "Literal":
        return {"Literal"}
    if isinstance(node, ast.Name):
        return {node.id}
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a forward reference
        return _names_in(ast.parse(node.value, mode="eval").body)
    return set().union(*(_names_in(child) for child in ast.iter_child_nodes(node) if isinstance(child, ast.expr)))
