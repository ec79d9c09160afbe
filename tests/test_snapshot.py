"""Snapshot files: dump and load round trip, the accepted shapes, and errors that name the file and the problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from inline_snapshot import snapshot
from mcp_types import Tool, ToolAnnotations

from portal_mcp.catalog.snapshot import dump_snapshot, load_snapshot
from portal_mcp.errors import ConfigError

TOOLS = [
    Tool(
        name="read_file",
        title="Read a file",
        description="Read a UTF-8 file.",
        input_schema={
            "type": "object",
            "properties": {"path": {"type": "string"}, "head": {"type": "integer"}},
            "required": ["path"],
        },
        annotations=ToolAnnotations(read_only_hint=True),
    ),
    Tool(
        name="add",
        input_schema={"type": "object", "properties": {"b": {"type": "integer"}, "a": {"type": "integer"}}},
        output_schema={"type": "object", "properties": {"result": {"type": "integer"}}},
    ),
]


def test_a_dumped_snapshot_loads_back_as_the_same_tools(tmp_path: Path) -> None:
    path = tmp_path / "fs.json"
    path.write_text(dump_snapshot("fs", "npx @modelcontextprotocol/server-filesystem", TOOLS), encoding="utf-8")
    assert load_snapshot(path) == TOOLS


def test_a_dump_is_pretty_json_with_wire_names_no_nulls_and_the_servers_key_order() -> None:
    assert dump_snapshot("fs", "npx server", TOOLS) == snapshot("""\
{
  "server": "fs",
  "source": "npx server",
  "tools": [
    {
      "name": "read_file",
      "title": "Read a file",
      "description": "Read a UTF-8 file.",
      "inputSchema": {
        "type": "object",
        "properties": {
          "path": {
            "type": "string"
          },
          "head": {
            "type": "integer"
          }
        },
        "required": [
          "path"
        ]
      },
      "annotations": {
        "readOnlyHint": true
      }
    },
    {
      "name": "add",
      "inputSchema": {
        "type": "object",
        "properties": {
          "b": {
            "type": "integer"
          },
          "a": {
            "type": "integer"
          }
        }
      },
      "outputSchema": {
        "type": "object",
        "properties": {
          "result": {
            "type": "integer"
          }
        }
      }
    }
  ]
}
""")


def test_dumping_twice_gives_the_same_text() -> None:
    assert dump_snapshot("fs", "src", TOOLS) == dump_snapshot("fs", "src", [tool.model_copy() for tool in TOOLS])


def test_a_bare_tools_list_result_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bare.json"
    result = {"tools": [tool.model_dump(mode="json", by_alias=True) for tool in TOOLS], "nextCursor": None}
    path.write_text(json.dumps(result), encoding="utf-8")
    assert load_snapshot(path) == TOOLS


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{\n  not json", "snapshot is not valid JSON: Expecting property name enclosed in double quotes"),
        ("[1, 2]", 'a snapshot must be a JSON object with a "tools" list'),
        ('{"server": "x"}', 'a snapshot needs a "tools" list (a tools/list result) but has no "tools"'),
        ('{"tools": {"a": 1}}', 'a snapshot needs a "tools" list (a tools/list result) but has a dict as "tools"'),
        ('{"tools": ["read_file"]}', "tools[0] must be a Tool object, not str"),
        ('{"tools": [{"inputSchema": {}}]}', "tools[0]: `name` is required"),
        ('{"tools": [{"name": "x"}]}', "tools[0] ('x'): `inputSchema` is required"),
        (
            '{"tools": [{"name": "x", "inputSchema": 3}]}',
            "tools[0] ('x'): `inputSchema`: Input should be a valid dictionary",
        ),
    ],
)
def test_a_malformed_snapshot_names_the_file_and_the_problem(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "broken.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_snapshot(path)
    assert caught.value.source == str(path)
    assert caught.value.message.startswith(problem)
    assert str(caught.value).startswith(str(path))


def test_invalid_json_points_at_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "tools": [\n    oops\n  ]\n}', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_snapshot(path)
    assert caught.value.line == 3
    assert str(caught.value).startswith(f"{path}:3: snapshot is not valid JSON")


def test_a_missing_snapshot_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="snapshot file not found; capture one with `portal-mcp snapshot"):
        load_snapshot(tmp_path / "missing.json")
