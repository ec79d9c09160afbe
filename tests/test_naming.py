"""The naming contract: tool names become Python identifiers, stably and without collisions."""

from __future__ import annotations

import pytest
from mcp_types import Tool

from portal_mcp.catalog.model import Catalog
from portal_mcp.config import ToolFilter
from portal_mcp.naming import assign_python_names, python_name, split_qualified


@pytest.mark.parametrize(
    ("tool", "expected"),
    [
        ("get_time", "get_time"),
        ("get-time", "get_time"),
        ("repo.list files", "repo_list_files"),
        ("2fa_verify", "_2fa_verify"),
        ("class", "class_"),
        ("match", "match_"),
        ("None", "None_"),
        ("café", "caf_"),
        ("", "_"),
    ],
)
def test_a_tool_name_becomes_an_identifier(tool: str, expected: str) -> None:
    assert python_name(tool) == expected
    assert expected.isidentifier()


def test_names_that_collide_after_sanitising_get_numbered_suffixes_in_listing_order() -> None:
    names = assign_python_names(["get-item", "get_item", "get.item", "other"])
    assert names == {"get-item": "get_item", "get_item": "get_item_2", "get.item": "get_item_3", "other": "other"}


def test_a_suffix_never_collides_with_a_real_tool_name() -> None:
    names = assign_python_names(["a-b", "a_b", "a_b_2"])
    assert len(set(names.values())) == 3


def test_qualified_names_split_into_server_and_tool() -> None:
    assert split_qualified("github.create_issue") == ("github", "create_issue")
    with pytest.raises(ValueError, match=r"server\.tool"):
        split_qualified("create_issue")


def tool(name: str, **extra: object) -> Tool:
    return Tool(name=name, description=f"{name} tool", input_schema={"type": "object"}, **extra)  # type: ignore[arg-type]


def test_the_catalog_namespaces_filters_and_keeps_metadata() -> None:
    catalog = Catalog.build(
        {
            "gh": [tool("create-issue", annotations={"destructiveHint": True}), tool("delete_repo")],
            "fs": [tool("read_file", output_schema={"type": "object"})],
        },
        {"gh": ToolFilter(deny=("delete_*",))},
    )
    assert [entry.qualified_name for entry in catalog] == ["gh.create_issue", "fs.read_file"]
    issue = catalog.get("gh.create_issue")
    assert issue is not None and issue.name == "create-issue" and issue.annotations == {"destructiveHint": True}
    read = catalog.get("fs.read_file")
    assert read is not None and read.output_schema == {"type": "object"}
    assert catalog.namespaces() == {"gh": ("create_issue",), "fs": ("read_file",)}


def test_an_allow_list_keeps_only_matching_tools() -> None:
    catalog = Catalog.build({"s": [tool("read_a"), tool("write_a")]}, {"s": ToolFilter(allow=("read_*",))})
    assert [entry.name for entry in catalog] == ["read_a"]


def test_replacing_one_servers_tools_keeps_the_others_in_order() -> None:
    catalog = Catalog.build({"a": [tool("x")], "b": [tool("y")], "c": [tool("z")]})
    updated = catalog.replace_server("b", [tool("y"), tool("y2")])
    assert [entry.qualified_name for entry in updated] == ["a.x", "b.y", "b.y2", "c.z"]
    assert "b.y2" not in catalog


def test_close_matches_suggest_near_miss_names() -> None:
    catalog = Catalog.build({"gh": [tool("create_issue"), tool("close_issue")]})
    assert catalog.close_matches("gh.create_isue")[0] == "gh.create_issue"
