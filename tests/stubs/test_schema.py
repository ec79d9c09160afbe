"""JSON Schema -> Python type expressions, one schema feature at a time."""

from __future__ import annotations

from typing import Any

import pytest

from portal_mcp.catalog.stubs.pytypes import render_typeddicts
from portal_mcp.catalog.stubs.schema import TypeBuilder, object_shape


def type_of(schema: Any, root: dict[str, Any] | None = None) -> str:
    builder = TypeBuilder()
    return builder.convert(schema, root=root if root is not None else schema, hint="value").render()


def type_and_defs(schema: dict[str, Any], hint: str = "value") -> tuple[str, str]:
    builder = TypeBuilder()
    expr = builder.convert(schema, root=schema, hint=hint)
    return expr.render(), render_typeddicts(builder.definitions_for([expr]))


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "string"}, "str"),
        ({"type": "integer"}, "int"),
        ({"type": "number"}, "float"),
        ({"type": "boolean"}, "bool"),
        ({"type": "null"}, "None"),
        ({"type": "array", "items": {"type": "string"}}, "list[str]"),
        ({"type": "array"}, "list[Any]"),
        ({"type": "object"}, "dict[str, Any]"),
        ({"type": "object", "additionalProperties": {"type": "integer"}}, "dict[str, int]"),
        ({"type": "object", "patternProperties": {"^x-": {"type": "string"}}}, "dict[str, str]"),
        ({}, "Any"),
        (True, "Any"),
        ({"type": "whatever"}, "Any"),
        ({"description": "no type at all"}, "Any"),
    ],
)
def test_json_types_map_to_python_types(schema: Any, expected: str) -> None:
    assert type_of(schema) == expected


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"enum": ["asc", "desc"]}, "Literal['asc', 'desc']"),
        ({"type": "string", "enum": ["a", None]}, "Literal['a'] | None"),
        ({"enum": [1, 2, True]}, "Literal[1, 2, True]"),
        ({"enum": [0.5, 1.5]}, "float"),
        ({"const": "fixed"}, "Literal['fixed']"),
        ({"const": {"a": 1}}, "dict[str, Any]"),
        ({"type": "string", "enum": [f"v{i}" for i in range(300)]}, "str"),
    ],
)
def test_enums_and_consts_become_literals(schema: Any, expected: str) -> None:
    assert type_of(schema) == expected


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": ["string", "null"]}, "str | None"),
        ({"type": ["null", "integer", "string"]}, "int | str | None"),
        ({"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}, "str | None"),
        ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, "float"),
        ({"anyOf": [{"type": "string"}, {"const": "x"}]}, "str"),
        ({"anyOf": [{"const": "a"}, {"const": "b"}, {"type": "null"}]}, "Literal['a', 'b'] | None"),
        ({"anyOf": [{"type": "string"}, {}]}, "Any"),
        ({"type": "string", "nullable": True}, "str | None"),
        ({"type": "array", "items": {"type": ["string", "number"]}}, "list[str | float]"),
        ({"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]}, "list[str | int]"),
    ],
)
def test_unions_are_flattened_and_simplified_with_none_last(schema: Any, expected: str) -> None:
    assert type_of(schema) == expected


def test_anyof_that_only_toggles_required_keys_keeps_the_object_type() -> None:
    schema = {
        "type": "object",
        "properties": {"id": {"type": "string"}, "name": {"type": "string"}},
        "anyOf": [{"required": ["id"]}, {"required": ["name"]}],
    }
    assert type_and_defs(schema, "target") == (
        "Target",
        "class Target(TypedDict, total=False):\n    id: str\n    name: str\n",
    )


def test_nested_objects_become_typeddicts_named_after_their_property() -> None:
    schema = {
        "type": "object",
        "properties": {
            "owner": {
                "type": "object",
                "description": "Who owns it.",
                "properties": {"login": {"type": "string", "description": "User name."}, "id": {"type": "integer"}},
                "required": ["login"],
            },
            "labels": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
        },
        "required": ["owner"],
    }
    expr, defs = type_and_defs(schema, "issue")
    assert expr == "Issue"
    assert defs == (
        "class Owner(TypedDict):\n"
        "    login: str  # User name.\n"
        "    id: NotRequired[int]\n"
        "\n"
        "class Label(TypedDict, total=False):\n"
        "    name: str\n"
        "\n"
        "class Issue(TypedDict):\n"
        "    owner: Owner  # Who owns it.\n"
        "    labels: NotRequired[list[Label]]\n"
    )


def test_object_title_that_looks_like_a_name_names_the_typeddict() -> None:
    schema = {"type": "object", "title": "TimeResult", "properties": {"is_dst": {"type": "boolean"}}}
    assert type_of(schema) == "TimeResult"


def test_keys_that_are_not_identifiers_use_the_functional_typeddict_syntax() -> None:
    schema = {
        "type": "object",
        "properties": {"from": {"type": "string"}, "odd-name": {"type": "integer"}, "ok": {"type": "boolean"}},
        "required": ["from"],
    }
    assert type_and_defs(schema, "range")[1] == (
        "Range = TypedDict('Range', {'from': str, 'odd-name': NotRequired[int], 'ok': NotRequired[bool]})\n"
    )


def test_local_refs_become_named_typeddicts_shared_between_uses() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/Point"}, "b": {"$ref": "#/$defs/Point"}},
        "$defs": {"Point": {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}}}},
    }
    assert type_and_defs(schema, "segment")[1] == (
        "class Point(TypedDict, total=False):\n"
        "    x: float\n"
        "    y: float\n"
        "\n"
        "class Segment(TypedDict, total=False):\n"
        "    a: Point\n"
        "    b: Point\n"
    )


def test_recursive_refs_name_themselves_through_a_quoted_forward_reference() -> None:
    schema = {
        "$ref": "#/$defs/Node",
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                    "parent": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]},
                },
                "required": ["name"],
            }
        },
    }
    assert type_and_defs(schema) == (
        "Node",
        "class Node(TypedDict):\n"
        "    name: str\n"
        "    children: NotRequired['list[Node]']\n"
        "    parent: NotRequired['Node | None']\n",
    )


def test_a_ref_to_the_document_root_is_recursive_too() -> None:
    schema = {"type": "object", "title": "Tree", "properties": {"kids": {"type": "array", "items": {"$ref": "#"}}}}
    assert type_and_defs(schema) == ("Tree", "class Tree(TypedDict, total=False):\n    kids: 'list[Tree]'\n")


def test_refs_that_are_not_objects_are_inlined_and_unresolvable_ones_are_any() -> None:
    root = {"$defs": {"Color": {"enum": ["red", "green"]}}}
    assert type_of({"$ref": "#/$defs/Color"}, root) == "Literal['red', 'green']"
    assert type_of({"$ref": "#/$defs/Missing"}, root) == "Any"
    assert type_of({"$ref": "https://example.com/schema.json"}, root) == "Any"


def test_refs_follow_any_json_pointer_into_the_document() -> None:
    root = {"properties": {"a/b": {"items": [{"type": "integer"}]}}}
    assert type_of({"$ref": "#/properties/a~1b/items/0"}, root) == "int"


def test_a_recursive_non_object_ref_stops_at_any() -> None:
    schema = {"$defs": {"Json": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"$ref": "#/$defs/Json"}}]}}}
    assert type_of({"$ref": "#/$defs/Json"}, schema) == "str | list[Any]"


def test_allof_objects_are_merged() -> None:
    schema = {
        "allOf": [
            {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
            {"$ref": "#/$defs/Extra"},
        ],
        "$defs": {"Extra": {"type": "object", "properties": {"note": {"type": "string"}}}},
    }
    assert type_and_defs(schema, "merged")[1] == ("class Merged(TypedDict):\n    id: str\n    note: NotRequired[str]\n")


def test_single_ref_allof_keeps_the_reference_name() -> None:
    root = {"$defs": {"Point": {"type": "object", "properties": {"x": {"type": "number"}}}}}
    assert type_of({"allOf": [{"$ref": "#/$defs/Point"}], "description": "Where."}, root) == "Point"


def test_same_name_with_a_different_shape_gets_a_numbered_name() -> None:
    builder = TypeBuilder()
    first = {"type": "object", "properties": {"a": {"type": "string"}}}
    second = {"type": "object", "properties": {"b": {"type": "string"}}}
    names = [builder.convert(schema, root=schema, hint="options").render() for schema in (first, second, first)]
    assert names == ["Options", "Options2", "Options"]


def test_an_inline_shape_seen_before_under_another_name_is_reused() -> None:
    builder = TypeBuilder()
    person = {"type": "object", "properties": {"name": {"type": "string"}, "url": {"type": "string"}}}
    schema = {"type": "object", "properties": {"profile": person, "author": person}}
    expr = builder.convert(schema, root=schema, hint="review")
    assert render_typeddicts(builder.definitions_for([expr])) == (
        "class Profile(TypedDict, total=False):\n"
        "    name: str\n"
        "    url: str\n"
        "\n"
        "class Review(TypedDict, total=False):\n"
        "    profile: Profile\n"
        "    author: Profile\n"
    )


def test_reserved_names_are_never_used_for_typeddicts() -> None:
    builder = TypeBuilder(reserved=["Item"])
    schema = {"type": "object", "title": "Any", "properties": {"a": {"type": "string"}}}
    other = {"type": "object", "properties": {"b": {"type": "string"}}}
    assert builder.convert(schema, root=schema, hint="x").render() == "Any2"
    assert builder.convert(other, root=other, hint="item").render() == "Item2"


def test_object_shape_folds_ref_allof_and_variants_into_one_set_of_properties() -> None:
    schema = {
        "$ref": "#/$defs/Args",
        "$defs": {
            "Args": {
                "allOf": [{"properties": {"q": {"type": "string"}}, "required": ["q"]}],
                "anyOf": [
                    {"properties": {"id": {"type": "string"}, "mode": {"type": "string"}}, "required": ["id", "mode"]},
                    {"properties": {"name": {"type": "string"}, "mode": {"type": "string"}}, "required": ["mode"]},
                ],
                "additionalProperties": {"type": "string"},
            }
        },
    }
    shape = object_shape(schema)
    assert list(shape.properties) == ["q", "id", "mode", "name"]
    assert shape.required == {"q", "mode"}
    assert shape.extra == {"type": "string"}
