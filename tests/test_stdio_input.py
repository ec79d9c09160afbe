"""The stdio transport's input (`surface/stdio.py`): a line holding half a surrogate pair is answered, not dropped,
and so is a line that is no JSON-RPC message.

The SDK's parser refuses such a line whole and drops the request without a reply; the portal repairs it first, and
answers what is left unreadable with a JSON-RPC error. The
end-to-end test runs a real `portal-mcp serve` over stdio and writes the raw JSON lines a client would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import mcp_types as types
import pytest
from pydantic import ValidationError
from pydantic_core import from_json

from portal_mcp.surface.stdio import refusal, repaired


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


@pytest.mark.parametrize(
    "line",
    [
        '{"jsonrpc": "2.0", "method": 7}',  # a notification: JSON-RPC answers none, even of the wrong shape
        '{"jsonrpc": "2.0", "id": 4, "result": 5, "error": 6}',  # a response: never answered either
    ],
)
def test_a_notification_or_response_the_sdk_cannot_read_gets_no_answer(line: str) -> None:
    with pytest.raises(ValidationError) as caught:
        types.jsonrpc_message_adapter.validate_json(line, by_name=False)  # what the SDK's stdio reader does
    assert refusal(caught.value) is None


def send(stdin: IO[str], message: dict[str, Any] | str) -> None:
    stdin.write((message if isinstance(message, str) else json.dumps(message)) + "\n")
    stdin.flush()


def reply(stdout: IO[str], number: int) -> dict[str, Any]:
    """The response to request `number` (notifications the portal sends meanwhile are skipped)."""
    while True:
        message: dict[str, Any] = json.loads(stdout.readline())
        if message.get("id") == number:
            return message


@contextmanager
def serving(tmp_path: Path) -> Iterator[tuple[IO[str], IO[str]]]:
    """A real `portal-mcp serve` over stdio, initialized: its stdin and stdout."""
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
        yield process.stdin, process.stdout
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


@pytest.mark.timeout(60)
def test_a_request_with_half_a_surrogate_pair_gets_its_answer_over_stdio(tmp_path: Path) -> None:
    with serving(tmp_path) as (stdin, stdout):
        # Written by hand: json.dumps would refuse nothing, but a client cutting a string mid-emoji writes this.
        call = '{"jsonrpc": "2.0", "id": 2, "method": "tools/call", '
        call += '"params": {"name": "search_api", "arguments": {"query": "current time in a timezone \\ud83d"}}}'
        send(stdin, call)
        answer = reply(stdout, 2)
    assert "result" in answer, answer
    assert "get_current_time" in json.dumps(answer["result"])


@pytest.mark.timeout(60)
def test_a_line_that_is_no_message_is_answered_by_json_rpc_error_and_the_session_goes_on(tmp_path: Path) -> None:
    with serving(tmp_path) as (stdin, stdout):
        answers = []
        for line in ["", "not json", "[1, 2", '["a batch"]', '{"jsonrpc": "2.0", "id": 5, "method": 7}', '{"id": 6}']:
            send(stdin, line)
            if line:  # a blank line holds no message and is not answered
                answers.append(json.loads(stdout.readline()))
        send(stdin, {"jsonrpc": "2.0", "id": 7, "method": "ping"})
        ping = reply(stdout, 7)
    assert [(answer["id"], answer["error"]["code"]) for answer in answers] == [
        (None, -32700),
        (None, -32700),
        (None, -32600),
        (5, -32600),
        (6, -32600),
    ]
    assert "expected ident at line 1 column 2" in answers[0]["error"]["message"]
    assert "a JSON object" in answers[2]["error"]["message"]
    assert answers[3]["error"]["message"] == "Invalid Request: `method`: Input should be a valid string"
    assert answers[4]["error"]["message"] == "Invalid Request: the message has no `method`"
    assert ping == {"jsonrpc": "2.0", "id": 7, "result": {}}
