"""SandboxHost against real worker processes: results, tool calls, errors and limits."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from portal_mcp.config import SandboxConfig
from portal_mcp.errors import SandboxError
from portal_mcp.sandbox.host import RunResult, SandboxHost
from tests.sandbox._support import NAMESPACES, FakeTools, run, worker_fds, worker_pids

# Marked here, not only by tests/conftest.py: anyio's plugin drops the parameters of parametrized async
# tests that get their marker after collection.
pytestmark = pytest.mark.anyio


def code(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


async def test_printed_output_and_the_final_expression_value_come_back() -> None:
    result = await run("print('hello')\nprint('world')\n6 * 7")
    assert result.ok
    assert result.output == "hello\nworld\n"
    assert result.value == "42"
    assert result.error is None
    assert result.render() == "hello\nworld\nValue: 42"


async def test_a_final_expression_that_is_none_shows_no_value() -> None:
    result = await run("x = 1\nprint(x)")
    assert result.value is None
    assert result.render() == "1"


async def test_top_level_await_calls_a_tool_served_by_the_portal() -> None:
    tools = FakeTools()
    result = await run("found = await gh.search(q='bug', limit=2)\nfound['items'][0]['q']", tools)
    assert result.ok, result.error
    assert result.value == "'bug'"
    assert tools.calls == [("gh.search", {"q": "bug", "limit": 2})]
    assert result.tool_calls == 1


async def test_fifty_gathered_calls_run_concurrently() -> None:
    source = code(
        """
        import asyncio
        results = await asyncio.gather(*[gh.slow(n=i, seconds=0.2) for i in range(50)])
        sum(results)
        """
    )
    started = time.perf_counter()
    result = await run(source)
    elapsed = time.perf_counter() - started
    assert result.ok, result.error
    assert result.value == str(sum(range(50)))
    assert result.tool_calls == 50
    assert elapsed < 3, f"50 calls of 0.2 s took {elapsed:.1f} s: they did not overlap"


async def test_a_tool_error_raises_tool_error_in_the_code_with_the_server_message() -> None:
    source = code(
        """
        try:
            await gh.fail(q='x')
        except ToolError as e:
            print('caught:', e)
            print(e.tool)
        """
    )
    result = await run(source)
    assert result.ok, result.error
    assert result.output == "caught: gh.fail failed: rate limited, retry in 60 s\ngh.fail\n"


async def test_an_uncaught_tool_error_names_the_line_that_made_the_call() -> None:
    result = await run("x = 1\nawait gh.fail()")
    assert not result.ok
    assert result.error == "ToolError: gh.fail failed: rate limited, retry in 60 s\n  line 2: await gh.fail()"


async def test_calling_a_tool_without_await_says_to_add_await() -> None:
    result = await run("gh.search(q='x')\nprint('done')")
    assert not result.ok
    assert result.error_kind == "not_awaited"
    assert "write `await gh.search(...)`" in (result.error or "")
    assert "line 1" in (result.error or "")
    assert result.output == "done\n"


async def test_using_an_unawaited_result_as_a_value_says_to_add_await() -> None:
    result = await run("r = gh.search(q='x')\nr['items']")
    assert "was not awaited" in (result.error or "")
    assert "line 2: r['items']" in (result.error or "")


async def test_forgetting_to_await_an_own_coroutine_is_reported() -> None:
    result = await run("async def fetch():\n    return 1\nfetch()")
    assert result.error_kind == "not_awaited"


async def test_positional_arguments_to_a_tool_are_rejected() -> None:
    result = await run("await gh.search('bug')")
    assert not result.ok
    assert "TypeError: gh.search() takes keyword arguments only" in (result.error or "")


async def test_arguments_that_are_not_json_are_rejected_at_the_call() -> None:
    result = await run("await gh.search(q={1, 2})")
    assert "must be JSON values" in (result.error or "")


async def test_arguments_holding_half_a_surrogate_pair_are_a_clear_error_at_the_call() -> None:
    # It was Python's own "UnicodeEncodeError: 'utf-8' codec can't encode character".
    result = await run("await gh.search(q='caf' + chr(0xdcff))")
    assert (result.error or "").startswith(
        "ValueError: arguments of gh.search() hold text UTF-8 cannot carry ('\\udcff', half of a surrogate pair)"
    ), result.error


async def test_an_unknown_tool_suggests_close_names() -> None:
    result = await run("await gh.serch(q='x')")
    assert "server 'gh' has no tool 'serch'; did you mean gh.search?" in (result.error or "")


async def test_a_syntax_error_reports_line_and_column() -> None:
    result = await run("x = 1\ny = (2 +\n")
    assert result.error_kind == "syntax"
    assert "line 2, column 5" in (result.error or "")


async def test_a_runtime_error_names_the_agent_line_and_no_portal_internals() -> None:
    source = code(
        """
        def ratio(a, b):
            return a / b
        print('start')
        ratio(1, 0)
        """
    )
    result = await run(source)
    assert result.output == "start\n"
    assert result.error == (
        "ZeroDivisionError: division by zero\n  line 4: ratio(1, 0)\n  line 2, in ratio: return a / b"
    )


async def test_an_error_whose_text_utf8_cannot_carry_is_reported_with_question_marks() -> None:
    # Bytes decoded with surrogateescape keep what is undecodable as unpaired surrogates; the run's report failed to
    # encode them and said "internal sandbox error (UnicodeEncodeError)" instead of the code's own error.
    result = await run("name = b'caf\\xff'.decode(errors='surrogateescape')\nraise ValueError(name)")
    assert result.error is not None and result.error.startswith("ValueError: caf?"), result.error
    assert result.error_kind != "internal"
    assert (await run("print(b'caf\\xff'.decode(errors='surrogateescape'))")).output == "caf?\n"


async def test_output_floods_keep_their_start_and_end_around_a_note_saying_how_to_see_more() -> None:
    result = await run("for i in range(100000):\n    print(i)", max_output_bytes=1_000)
    assert result.ok
    head, note, tail = result.output.split("\n[... ")[0], *result.output.split("\n[... ")[1].split("]\n")
    assert head.startswith("0\n1\n2\n")
    assert tail.endswith("99998\n99999\n")
    assert len(head.encode()) + len(tail.encode()) <= 1_000
    cut = int(note.split(" ")[0])
    assert cut == len("".join(f"{i}\n" for i in range(100000)).encode()) - len(head.encode()) - len(tail.encode())
    assert "the limit is 1000 bytes" in note and "filter, slice or summarise in code" in note


async def test_a_run_killed_mid_print_keeps_the_latest_output_and_the_note() -> None:
    source = "import time\ni = 0\nwhile True:\n    print('line', i)\n    i += 1\n    time.sleep(0.0001)"
    result = await run(source, max_output_bytes=1_000, timeout=1)
    assert result.error_kind == "timeout"
    assert result.output.startswith("line 0\nline 1\n")
    assert "bytes of output cut here" in result.output
    last = result.output.rstrip("\n").rpartition("\n")[2]
    assert last.startswith("line ") and int(last.split()[1]) > 1000


async def test_a_long_final_value_keeps_its_start_and_end() -> None:
    result = await run("'a' * 3000 + 'b' * 2000", max_output_bytes=1_000)
    assert result.value is not None
    assert result.value.startswith("'aaa") and result.value.endswith("bbb'")
    assert "4002 bytes of the value cut here" in result.value


async def test_calls_beyond_the_limit_fail_in_the_code() -> None:
    source = code(
        """
        for i in range(5):
            try:
                await gh.search(n=i)
            except ToolError as e:
                print(e)
        """
    )
    tools = FakeTools()
    result = await run(source, tools, max_tool_calls=3)
    assert len(tools.calls) == 3
    assert result.tool_calls == 3
    assert result.output.count("this run reached its limit of 3 tool calls") == 2


async def test_a_result_larger_than_the_limit_becomes_an_error_asking_for_less() -> None:
    result = await run("await gh.big(size=5000)", max_result_bytes=1_000)
    assert not result.ok
    assert "over the limit of 1000 bytes per result; ask for less" in (result.error or "")


async def test_an_infinite_loop_times_out_and_the_next_run_works() -> None:
    with anyio.fail_after(30):
        async with SandboxHost(SandboxConfig(timeout=1)) as host:
            started = time.perf_counter()
            stuck = await host.run("print('before')\nwhile True:\n    pass", NAMESPACES, FakeTools())
            assert time.perf_counter() - started < 5
            after = await host.run("1 + 1", NAMESPACES, FakeTools())
    assert stuck.error_kind == "timeout"
    assert "ran longer than 1 s" in (stuck.error or "")
    assert stuck.output == "before\n"  # streamed before the kill
    assert after.ok
    assert after.value == "2"


async def test_a_sleeping_run_is_stopped_by_the_wall_clock() -> None:
    result = await run("import asyncio\nawait asyncio.sleep(60)", timeout=1)
    assert result.error_kind == "timeout"


async def test_a_cpu_bound_loop_hits_the_cpu_limit() -> None:
    result = await run("while True:\n    pass", timeout=20, cpu_seconds=1)
    assert result.error_kind == "cpu"
    assert "more than 1 s of CPU time" in (result.error or "")


@pytest.mark.parametrize(
    "bomb",
    ["x = bytearray(4 * 1024 ** 3)", "chunks = []\nwhile True:\n    chunks.append('x' * 1_000_000)"],
)
async def test_a_memory_bomb_reports_running_out_of_memory(bomb: str) -> None:
    result = await run(bomb, memory_mb=256)
    assert result.error_kind == "memory"
    assert (result.error or "").startswith("MemoryError: the code ran out of memory (limit 256 MB)")


@pytest.mark.parametrize(
    "source", ["raise SystemExit(1)", "raise KeyboardInterrupt", "class Stop(BaseException):\n    pass\nraise Stop()"]
)
async def test_exit_exceptions_in_the_code_do_not_stop_the_host(source: str) -> None:
    with anyio.fail_after(30):
        async with SandboxHost(SandboxConfig()) as host:
            first = await host.run(source, NAMESPACES, FakeTools())
            second = await host.run("'still here'", NAMESPACES, FakeTools())
    assert not first.ok
    assert second.value == "'still here'"


def _worker_files(name: str) -> list[bytes]:
    """`/proc/<pid>/<name>` of every sandbox worker of this process (the running one and the spares)."""
    return [Path(f"/proc/{pid}/{name}").read_bytes() for pid in worker_pids()]


async def test_the_worker_gets_an_empty_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTAL_TEST_SECRET", "hunter2")
    seen: list[bytes] = []

    async def call_tool(tool: str, args: dict[str, Any]) -> Any:
        # The worker is alive and waiting on this call: look at its environment from outside.
        seen.extend(_worker_files("environ"))
        return None

    result = await run("await gh.search()\nimport os", call_tool)
    assert seen
    assert all(environ == b"" for environ in seen)
    assert "module 'os' is not available" in (result.error or "")


async def test_the_worker_runs_under_rlimits() -> None:
    seen: list[bytes] = []

    async def call_tool(tool: str, args: dict[str, Any]) -> Any:
        seen.extend(_worker_files("limits"))

    result = await run("await gh.search()", call_tool, memory_mb=200, cpu_seconds=3, spare_workers=0)
    assert result.ok, result.error
    [limits] = [block.decode() for block in seen]
    rows = {line[:26].strip(): line[26:].split()[:2] for line in limits.splitlines()[1:]}
    assert rows["Max address space"] == [str(200 * 2**20)] * 2
    assert rows["Max cpu time"] == ["3", "4"]
    assert rows["Max file size"] == ["0", "0"]
    assert rows["Max open files"] == ["32", "32"]
    assert rows["Max core file size"] == ["0", "0"]
    assert rows["Max processes"] == ["0", "0"]  # enforced for non-root users only


async def test_the_worker_holds_no_descriptor_of_the_portal() -> None:
    inherited = os.open(__file__, os.O_RDONLY)
    os.set_inheritable(inherited, True)
    targets: dict[int, str] = {}

    async def call_tool(tool: str, args: dict[str, Any]) -> Any:
        targets.update(worker_fds())

    try:
        # No spares: a spare being forked right now would still hold the fork server's stderr for a moment.
        result = await run("await gh.search()", call_tool, spare_workers=0)
    finally:
        os.close(inherited)
    assert result.ok, result.error
    assert [targets[fd] for fd in (0, 1, 2)] == ["/dev/null"] * 3
    assert all(target.startswith(("/dev/null", "socket:", "anon_inode:")) for target in targets.values())


def _can_run_as_nobody() -> bool:
    if os.geteuid() != 0:
        return False
    try:
        return subprocess.run([sys.executable, "-I", "-c", "pass"], user="nobody", check=False).returncode == 0
    except OSError:
        return False


@pytest.mark.skipif(not _can_run_as_nobody(), reason="needs root and an interpreter that 'nobody' may run")
async def test_workers_can_run_as_another_user() -> None:
    seen: list[bytes] = []

    async def call_tool(tool: str, args: dict[str, Any]) -> Any:
        seen.extend(_worker_files("status"))

    with anyio.fail_after(30):
        async with SandboxHost(SandboxConfig(), run_as="nobody") as host:
            result = await host.run("await gh.search()", NAMESPACES, call_tool)
    assert result.ok, result.error
    assert seen
    assert all("Uid:\t65534" in status.decode() for status in seen)


async def test_a_call_the_code_stops_waiting_for_is_cancelled_in_the_portal() -> None:
    source = code(
        """
        import asyncio
        try:
            await asyncio.wait_for(gh.slow(seconds=20), 0.2)
        except TimeoutError:
            print('gave up')
        await asyncio.sleep(0.2)
        (await gh.search())['cancelled_so_far']
        """
    )
    started = time.perf_counter()
    result = await run(source)
    assert result.ok, result.error
    assert result.output == "gave up\n"
    assert result.value == "1"
    assert time.perf_counter() - started < 5


async def test_a_loop_that_keeps_calling_past_the_limit_is_stopped() -> None:
    source = code(
        """
        while True:
            try:
                await gh.search()
            except ToolError:
                pass
        """
    )
    result = await run(source, max_tool_calls=2)
    assert result.tool_calls == 2
    assert "kept calling tools after reaching the limit of 2 calls" in (result.error or "")


async def test_a_huge_error_message_is_capped() -> None:
    result = await run("raise ValueError('x' * 1_000_000)")
    assert result.error_kind == "exception"
    assert len(result.error or "") < 10_000
    assert "[error truncated: " in (result.error or "")


async def test_code_over_the_size_limit_is_refused_without_a_worker() -> None:
    result = await run("x = 1\n" * 200_000)
    assert result.error_kind == "too_long"


async def test_a_closed_host_refuses_to_run() -> None:
    host = SandboxHost(SandboxConfig())
    async with host:
        pass
    with pytest.raises(SandboxError, match="closed"):
        await host.run("1", {}, FakeTools())


def test_render_puts_output_then_value_then_error() -> None:
    result = RunResult(ok=False, output="a\n", value="1", error="ValueError: no", tool_calls=0, duration_ms=1.0)
    assert result.render() == "a\nValue: 1\nError: ValueError: no"
    assert RunResult(True, "", None, None, 0, 1.0).render() == "(no output)"


async def test_async_for_async_with_and_async_comprehensions_work_at_the_top_level() -> None:
    source = code(
        """
        import asyncio
        async def numbers(n):
            for i in range(n):
                await asyncio.sleep(0)
                yield i, i * i
        total = 0
        async for i, square in numbers(4):
            total += square
        limit = asyncio.Semaphore(2)
        async with limit:
            squares = [s async for _, s in numbers(3)]
        (total, squares)
        """
    )
    result = await run(source)
    assert result.ok, result.error
    assert result.value == "(14, [0, 1, 4])"


async def test_augmented_assignment_to_items_and_attributes_evaluates_the_target_once() -> None:
    source = code(
        """
        from collections import Counter
        seen = []
        def key(k):
            seen.append(k)
            return k
        class Box:
            def __init__(self):
                self.n = 1
        counts = Counter()
        counts[key('a')] += 2
        box = Box()
        box.n *= 5
        (counts['a'], box.n, seen)
        """
    )
    result = await run(source)
    assert result.ok, result.error
    assert result.value == "(2, 5, ['a'])"


async def test_a_recursion_error_shows_where_it_started_and_folds_the_repeats() -> None:
    result = await run("def f(n):\n    return f(n + 1)\nf(0)")
    lines = (result.error or "").splitlines()
    assert lines[0] == "RecursionError: maximum recursion depth exceeded"
    assert lines[1] == "  line 3: f(0)"
    assert lines[2].startswith("  line 2, in f: return f(n + 1)  (repeated ")
    assert len(lines) == 3


async def test_a_deep_traceback_keeps_its_outermost_and_innermost_lines() -> None:
    source = (
        "\n".join(f"def f{i}():\n    return f{i + 1}()" for i in range(10)) + "\ndef f10():\n    return 1 / 0\nf0()"
    )
    result = await run(source)
    lines = (result.error or "").splitlines()
    assert lines[0] == "ZeroDivisionError: division by zero"
    assert lines[1] == "  line 23: f0()"
    assert lines[2] == "  line 2, in f0: return f1()"
    assert lines[3] == "  ... 6 more calls ..."
    assert lines[-1] == "  line 22, in f10: return 1 / 0"
    assert len(lines) == 8
