"""The stdio transport's input (`surface/stdio.py`): a line holding half a surrogate pair is answered, not dropped.

The SDK's parser refuses such a line whole and drops the request without a reply; the portal repairs it first. The
end-to-end test runs a real `portal-mcp serve` over stdio and writes the raw JSON lines a client would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

import pytest
from pydantic_core import from_json

from portal_mcp.surface.stdio import repaired


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"q": "read \\ud83d"}', {"q": "read \ufffd"}),  # the first half of 😀 alone
        ('{"q": "\\ude00 read"}', {"q": "\ufffd read"}),  # the second half alone
        ('{"\\ud800": ["\\udfff", {"k": "a\\ud800b"}]}', {"\ufffd": ["\ufffd", {"k": "a\ufffdb"}]}),
    ],
)
def test_half_a_surrogate_pair_becomes_the_replacement_character(line: str, expected: Any) -> None:
    with pytest.raises(ValueError, match="hex escape"):
        from_json(line)  # what the SDK does with the line as it came
    assert from_json(repaired(line)) == expected


@pytest.mark.parametrize(
    "line",
    [
        '{"q": "plain"}',
        '{"q": "a whole pair \\ud83d\\ude00"}',  # as clients escaping every non-ASCII character write it
        '{"q": "a backslash before u: \\\\ud800"}',  # text, not an escape
        '{"q": "\\ud800" not json',  # not JSON: left for the SDK to answer as any such line
    ],
)
def test_lines_without_half_a_pair_are_left_as_they_came(line: str) -> None:
    assert repaired(line) == line


def test_a_hostile_line_is_passed_on_not_repaired_at_any_cost() -> None:
    # Nested deeper than Python's parser goes, with half a pair inside: given to the SDK as it came (which refuses
    # it as it refuses any line it cannot parse), never a crash of the reader.
    deep = "[" * 100_000 + '"\\ud800"' + "]" * 100_000
    assert repaired(deep) == deep


def send(stdin: IO[str], message: dict[str, Any] | str) -> None:
    stdin.write((message if isinstance(message, str) else json.dumps(message)) + "\n")
    stdin.flush()


def reply(stdout: IO[str], number: int) -> dict[str, Any]:
    """The response to request `number` (notifications the portal sends meanwhile are skipped)."""
    while True:
        message: dict[str, Any] = json.loads(stdout.readline())
        if message.get("id") == number:
            return message


@pytest.mark.timeout(60)
def test_a_request_with_half_a_surrogate_pair_gets_its_answer_over_stdio(tmp_path: Path) -> None:
    config = tmp_path / "portal.yaml"
    config.write_text("servers:\n  clock:\n    snapshot: ${PORTAL_SCHEMAS}/time.json\n", encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, "-m", "portal_mcp", "serve", "--config", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        encoding="utf-8",
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        hello = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
        send(process.stdin, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello})
        assert "result" in reply(process.stdout, 1)
        send(process.stdin, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        # Written by hand: json.dumps would refuse nothing, but a client cutting a string mid-emoji writes this.
        call = '{"jsonrpc": "2.0", "id": 2, "method": "tools/call", '
        call += '"params": {"name": "search_api", "arguments": {"query": "current time in a timezone \\ud83d"}}}'
        send(process.stdin, call)
        answer = reply(process.stdout, 2)
        assert "result" in answer, answer
        assert "get_current_time" in json.dumps(answer["result"])
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()
