"""Result shapes learned from values: kinds and keys only, merged over calls, bounded, rendered as return types."""

from __future__ import annotations

import json

from inline_snapshot import snapshot
from mcp_types import Tool

from portal_mcp.catalog.model import Catalog, ToolEntry
from portal_mcp.catalog.shapes import (
    MAX_DEPTH,
    MAX_NODES,
    MAX_SHAPE_NODES,
    MAX_STUB_NODES,
    ShapeBook,
    bounded,
    calls,
    data_key,
    is_shape,
    merge,
    shape_of,
    size,
    to_schema,
)
from portal_mcp.catalog.stubs import render_stubs

MARKER = "MARKER-7f3a9c-value"


def entry(name: str = "list_issues", server: str = "tracker", output: dict[str, object] | None = None) -> ToolEntry:
    wire: dict[str, object] = {"name": name, "description": "List issues.", "inputSchema": {"type": "object"}}
    if output is not None:
        wire["outputSchema"] = output
    return Catalog.build({server: [Tool.model_validate(wire)]}).entries[0]


def issue(**extra: object) -> dict[str, object]:
    return {"number": 7, "title": MARKER, "state": "open", "score": 0.5, "draft": False, **extra}


def test_a_shape_holds_kinds_and_keys_never_values() -> None:
    shape = shape_of({"items": [issue(), issue(labels=[MARKER, "bug"])], "total": 2, "next": None})
    text = json.dumps(shape)
    assert MARKER not in text and "open" not in text and "bug" not in text
    assert shape == snapshot(
        {
            "object": {
                "n": 1,
                "keys": {
                    "items": {
                        "list": {
                            "n": 1,
                            "items": {
                                "object": {
                                    "n": 2,
                                    "keys": {
                                        "number": {"int": 2},
                                        "title": {"str": 2},
                                        "state": {"str": 2},
                                        "score": {"float": 2},
                                        "draft": {"bool": 2},
                                        "labels": {"list": {"n": 1, "items": {"str": 2}}},
                                    },
                                }
                            },
                        }
                    },
                    "total": {"int": 1},
                    "next": {"null": 1},
                },
            }
        }
    )


def test_keys_that_look_like_data_are_dropped_and_their_object_becomes_a_map() -> None:
    for key in ("ada@example.com", "2024-05-01", "/home/ada", "550e8400-e29b-41d4-a716-446655440000", "user 1"):
        assert data_key(key), key
    for key in ("id", "createdAt", "html_url", "@odata.context", "$schema", "x-rate-limit"):
        assert not data_key(key), key
    shape = shape_of({"by_email": {f"{MARKER}@example.com": {"open": 3}}, "ids": {"a1b2c3d4e5f6a7b8": 1}})
    assert MARKER not in json.dumps(shape)
    assert to_schema(shape)["properties"]["by_email"] == {
        "type": "object",
        "additionalProperties": {"type": "object", "properties": {"open": {"type": "integer"}}, "required": ["open"]},
    }


def test_many_keys_or_many_keys_of_one_kind_make_a_map() -> None:
    per_user = {f"user{chr(97 + i)}x": i for i in range(20)}  # field-like names, but a count per user
    assert list(shape_of(per_user)) == ["map"]
    wide = {f"field_{chr(97 + i % 26)}{chr(97 + i // 26)}": [i] for i in range(60)}
    assert list(shape_of(wide)) == ["map"]


def test_keys_that_change_from_call_to_call_become_a_map_and_are_dropped() -> None:
    shape = None
    for names in (("alice", "bob", "carol"), ("dave", "erin", "frank"), ("grace", "heidi", "ivan")):
        shape = merge(shape, shape_of({"id": 1, "votes": dict.fromkeys(names, 2)}))
    assert shape is not None
    assert "alice" not in json.dumps(shape)
    assert to_schema(shape)["properties"]["votes"] == {"type": "object", "additionalProperties": {"type": "integer"}}


def test_merging_calls_adds_counts_and_makes_keys_seen_in_some_calls_optional() -> None:
    first = shape_of({"id": 1, "name": "a", "email": "x"})
    second = shape_of({"id": "abc", "name": "b"})
    merged = merge(first, second)
    assert merged is not None and calls(merged) == 2
    assert to_schema(merged) == {
        "type": "object",
        "properties": {
            "id": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "name": {"type": "string"},
            "email": {"type": "string"},
        },
        "required": ["id", "name"],
    }


def test_an_object_seen_as_a_map_in_one_call_is_a_map_after_merging() -> None:
    merged = merge(shape_of({"totals": {"ada@example.com": 1}}), shape_of({"totals": {"bob": 2}}))
    assert merged is not None
    assert to_schema(merged)["properties"]["totals"] == {"type": "object", "additionalProperties": {"type": "integer"}}


def test_observing_a_huge_result_visits_a_bounded_number_of_values() -> None:
    huge = {"rows": [{"id": i, "cells": [{"v": j} for j in range(100)]} for i in range(10_000)]}
    shape = shape_of(huge)
    assert size(shape) <= MAX_NODES
    deep: object = MARKER
    for _ in range(50):
        deep = {"child": deep}
    assert size(shape_of(deep)) <= MAX_DEPTH + 2


def test_items_past_the_budget_are_left_out_rather_than_typed_any() -> None:
    record = {f"field_{chr(97 + i)}": {"a": 1, "b": "x", "c": [1, 2]} for i in range(20)}
    schema = to_schema(shape_of([record] * 500))
    assert schema["type"] == "array" and schema["items"]["type"] == "object"
    fields = schema["items"]["properties"]
    assert len(fields) == 20 and all(field["type"] == "object" for field in fields.values())


def test_a_merged_shape_is_cut_to_its_size_bound() -> None:
    shape = None
    for n in range(300):
        shape = merge(shape, shape_of({f"k{chr(97 + n % 26)}": {f"s{chr(97 + m)}": {"x": [1]} for m in range(20)}}))
    assert shape is not None
    assert size(bounded(shape)) <= MAX_SHAPE_NODES


def test_a_return_type_in_a_stub_is_cut_to_its_size_bound() -> None:
    book = ShapeBook()
    tool = entry()
    nested = {f"k{chr(97 + i)}": {f"s{chr(97 + j)}": {"x": 1, "y": "z"} for j in range(12)} for i in range(12)}
    book.observe(tool, nested)
    assert size(book.shape(tool.qualified_name)) > MAX_STUB_NODES
    reply = render_stubs([tool], observed=book.observed([tool]))
    assert reply.count(": ") <= MAX_STUB_NODES and "# return type observed over 1 call" in reply


def test_a_book_renders_an_observed_return_type_with_its_call_count() -> None:
    book = ShapeBook()
    tool = entry()
    book.observe(tool, {"items": [issue()], "total": 1})
    book.observe(tool, {"items": [], "total": 0, "next": "cursor"})
    reply = render_stubs([tool], observed=book.observed([tool]))
    assert MARKER not in reply
    assert reply == snapshot('''\
class Item(TypedDict):
    number: int
    title: str
    state: str
    score: float
    draft: bool

class ListIssuesResult(TypedDict):
    items: list[Item]
    total: int
    next: NotRequired[str]

# tracker.list_issues
async def list_issues() -> ListIssuesResult:  # return type observed over 2 calls
    """List issues."""
''')


def test_tools_with_an_output_schema_and_servers_switched_off_are_not_observed() -> None:
    declared = entry("get", output={"type": "object", "properties": {"id": {"type": "integer"}}})
    off = entry(server="legacy")
    book = ShapeBook(skip=lambda server: server == "legacy")
    book.observe(declared, {"id": 1, "extra": "x"})
    book.observe(off, {"id": 1})
    assert book.observed([declared, off]) == {}
    assert book.shape(declared.qualified_name) is None and book.shape(off.qualified_name) is None


def test_a_plain_text_result_is_observed_as_str() -> None:
    book = ShapeBook()
    tool = entry("read")
    book.observe(tool, MARKER)
    assert "async def read() -> str:  # return type observed over 1 call" in render_stubs(
        [tool], observed=book.observed([tool])
    )


def test_only_well_formed_shapes_pass_the_check_applied_to_stored_rows() -> None:
    assert is_shape(shape_of({"items": [{"id": 1}], "by": {"a@b.c": None}}))
    damaged_rows: list[object] = [
        {},
        [],
        {"str": "3"},
        {"object": {"n": 1, "keys": {"a": {"weird": 1}}}},
        {"list": {"items": {}}},
    ]
    for damaged in damaged_rows:
        assert not is_shape(damaged), damaged
