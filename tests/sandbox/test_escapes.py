"""Known ways out of Python sandboxes (see SANDBOX.md), each tried against a real worker."""

from __future__ import annotations

import sys
import textwrap

import anyio
import pytest

from portal_mcp.config import SandboxConfig
from portal_mcp.errors import SandboxError
from portal_mcp.sandbox import forkserver, launcher
from portal_mcp.sandbox.host import SandboxHost
from tests.sandbox._support import NAMESPACES, FakeTools, run

pytestmark = pytest.mark.anyio


def code(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


@pytest.mark.parametrize(
    "source",
    [
        "().__class__.__bases__[0].__subclasses__()",
        "def f():\n    pass\nf.__globals__",
        "def g():\n    yield 1\ng().gi_frame",
        "async def c():\n    pass\nc().cr_frame",
        "import json\njson.loads.__globals__",
        "gh.search.__closure__",
        "__import__('os')",
        "__builtins__",
        "def f(_getattr_=None, /):\n    pass",
        "try:\n    pass\nexcept* ValueError:\n    pass",
        "async def f():\n    async for _getiter_ in y:\n        pass",
        "class A:\n    pass\nA.__class__ += 1",
        "eval('1')",
        "exec('1')",
    ],
)
async def test_private_names_frames_and_eval_are_refused_at_compile_time(source: str) -> None:
    result = await run(source)
    assert result.error_kind == "syntax", result.error
    assert (result.error or "").startswith("SyntaxError")
    assert "line " in (result.error or "")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("getattr(int, '__subclasses__')", "'__subclasses__' is not available"),
        ("def g():\n    yield 1\ngetattr(g(), 'gi_frame')", "'gi_frame' is not available"),
        ("async def c():\n    pass\nco = c()\nx = getattr(co, 'cr_frame')", "'cr_frame' is not available"),
        ("def f():\n    pass\ngetattr(f, '__glo' + 'bals__')", "'__globals__' is not available"),
        ("'{0.__class__.__mro__}'.format(1)", "'__mro__' is not available"),
        ("str.format('{0.__globals__}', print)", "'__globals__' is not available"),
        ("'{a.gi_frame}'.format_map({'a': (x for x in [])})", "'gi_frame' is not available"),
        ("import json\njson.codecs", "has no attribute 'codecs'"),
        ("import json\ngetattr(json, 'codecs')", "has no attribute 'codecs'"),
        ("from json import codecs", "cannot import name 'codecs'"),
        ("import datetime\ndatetime.sys", "has no attribute 'sys'"),
        ("import re\nre.enum", "has no attribute 'enum'"),
        ("import statistics\nstatistics.sys", "has no attribute 'sys'"),
        ("import functools\nfunctools.singledispatch", "`functools.singledispatch` is not available"),
        ("import asyncio\nasyncio.gather().get_loop()", "'get_loop' is not available"),
        ("import asyncio\nasyncio.get_event_loop()", "the event loop is not exposed"),
        ("import json.decoder", "module 'json.decoder' is not available"),
        ("type('X', (), {})", "type(name, bases, namespace) is not available"),
        ("type(int)", "its metaclass, which is not available"),
        ("(1).__class__.__class__", "is a metaclass, which is not available"),
        ("ToolError.mro()", "'mro' is not available"),
        ("getattr(object, '__subclasses__')()", "not available in the sandbox"),
        ("open('/etc/passwd')", "name 'open' is not defined"),
        ("vars()", "vars() needs an object"),
        ("import json\nvars(json)", "vars() of a 'Facade' is not available"),
        ("import json\njson.loads = len", "cannot be modified"),
        ("import json\nsetattr(json, 'dumps', len)", "cannot be modified"),
        ("gh.search = len", "cannot be modified"),
        ("p = gh.search()\ngetattr(p, '_channel')", "'_channel' is not available"),
    ],
)
async def test_runtime_guards_refuse_the_way_out(source: str, message: str) -> None:
    result = await run(source)
    assert result.error_kind == "exception", result.error
    assert message in (result.error or "")


@pytest.mark.parametrize("module", ["os", "subprocess", "importlib", "ctypes", "socket", "pickle", "inspect"])
async def test_importing_a_module_outside_the_allow_list_names_the_module(module: str) -> None:
    result = await run(f"import {module}")
    assert f"ModuleNotFoundError: module {module!r} is not available in the sandbox" in (result.error or "")


async def test_str_format_is_refused_in_the_strict_language() -> None:
    result = await run("'{0}'.format(1)", language="strict")
    assert "str.format is not available in the sandbox; use an f-string" in (result.error or "")


async def test_attribute_errors_do_not_hand_back_the_object_they_came_from() -> None:
    source = code(
        """
        import json
        try:
            json.nope
        except AttributeError as e:
            print(e.obj)
        """
    )
    result = await run(source)
    assert result.output == "None\n"


async def test_hidden_keyword_arguments_just_become_tool_arguments() -> None:
    tools = FakeTools()
    result = await run("await gh.search(**{'_tool': 'evil.rm', 'q': 1})", tools)
    assert result.ok, result.error
    assert tools.calls == [("gh.search", {"_tool": "evil.rm", "q": 1})]


async def test_nothing_persists_from_one_run_to_the_next() -> None:
    with anyio.fail_after(30):
        async with SandboxHost(SandboxConfig()) as host:
            await host.run("secret = 'left behind'", NAMESPACES, FakeTools())
            second = await host.run("secret", NAMESPACES, FakeTools())
    assert "NameError: name 'secret' is not defined" in (second.error or "")


async def test_deep_recursion_is_an_error_in_the_code_not_a_crash() -> None:
    result = await run("def f(n):\n    return f(n + 1)\nf(0)")
    assert result.error_kind == "exception"
    assert "RecursionError" in (result.error or "")


async def test_the_curated_modules_still_do_their_job() -> None:
    source = code(
        """
        import json, re, math, statistics, datetime, itertools, functools, asyncio, time
        from collections import Counter, defaultdict, namedtuple
        Point = namedtuple('Point', ['x', 'y'])
        counts = defaultdict(int)
        for word in re.findall(r'\\w+', 'a b a'):
            counts[word] += 1
        day = datetime.datetime.strptime('2024-02-03', '%Y-%m-%d').date()
        await asyncio.sleep(0)
        print(json.dumps(dict(counts)), Counter('aab').most_common(1), Point(1, 2).x)
        print(math.sqrt(16), statistics.mean([1, 2, 3]), day.isoformat())
        print(list(itertools.islice(itertools.count(), 3)), functools.reduce(lambda a, b: a + b, [1, 2]))
        time.monotonic() > 0
        """
    )
    result = await run(source)
    assert result.ok, result.error
    assert result.output == '{"a": 2, "b": 1} [(\'a\', 2)] 1\n4.0 2 2024-02-03\n[0, 1, 2] 3\n'
    assert result.value == "True"


# --- A hostile worker: the host must validate every frame itself. ---
# These replace the spawned worker's command (`backend: spawn`); the frame checks are the same for both backends.

_FAKE_WORKER = """
import json, os, signal, struct, sys, time
def send(frame):
    data = json.dumps(frame).encode()
    os.write(1, struct.pack(">I", len(data)) + data)
def read_exact(n):
    data = b""
    while len(data) < n:
        chunk = os.read(0, n - len(data))
        if not chunk:
            sys.exit(0)
        data += chunk
    return data
def recv():
    return json.loads(read_exact(struct.unpack(">I", read_exact(4))[0]))
def done(value):
    send({"type": "done", "ok": True, "value": value, "error": None, "error_kind": None, "output_dropped": 0})
send({"type": "ready", "protocol": 2, "layers": {}, "unavailable": []})
recv()
"""

_ACTIONS = {
    "oversized frame": "os.write(1, struct.pack('>I', 2**31)); time.sleep(60)",
    "non-object args": "send({'type': 'call', 'id': 1, 'tool': 'gh.search', 'args': [1]}); time.sleep(60)",
    "non-string tool": "send({'type': 'call', 'id': 1, 'tool': ['gh.search'], 'args': {}}); time.sleep(60)",
    "lying done": "send({'type': 'done', 'ok': True, 'value': None, 'error': 'x', 'error_kind': None, "
    "'output_dropped': 0}); time.sleep(60)",
    "unknown frame": "send({'type': 'exec', 'code': 'rm -rf /'}); time.sleep(60)",
}


@pytest.mark.parametrize("action", sorted(_ACTIONS))
async def test_a_worker_breaking_the_protocol_is_stopped_and_no_tool_is_called(
    action: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(launcher, "WORKER_COMMAND", (sys.executable, "-I", "-c", _FAKE_WORKER + _ACTIONS[action]))
    tools = FakeTools()
    result = await run("1", tools, wait=10, backend="spawn")
    assert result.error_kind == "protocol"
    assert "sent an invalid message" in (result.error or "")
    assert tools.calls == []


async def test_a_call_for_a_tool_outside_the_namespaces_is_refused_without_calling_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    action = "send({'type': 'call', 'id': 1, 'tool': 'evil.rm', 'args': {}}); done(recv()['error'])"
    monkeypatch.setattr(launcher, "WORKER_COMMAND", (sys.executable, "-I", "-c", _FAKE_WORKER + action))
    tools = FakeTools()
    result = await run("1", tools, wait=10, backend="spawn")
    assert result.value == "unknown tool 'evil.rm'; use search_api to find tools"
    assert tools.calls == []


async def test_a_crashing_worker_is_reported_and_the_host_keeps_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    crash = (sys.executable, "-I", "-c", _FAKE_WORKER + "os.kill(os.getpid(), signal.SIGSEGV)")
    with anyio.fail_after(30):
        async with SandboxHost(SandboxConfig(backend="spawn")) as host:
            monkeypatch.setattr(launcher, "WORKER_COMMAND", crash)
            crashed = await host.run("1", NAMESPACES, FakeTools())
            monkeypatch.undo()
            after = await host.run("1", NAMESPACES, FakeTools())
    assert crashed.error_kind == "crash"
    assert "killed by SIGSEGV" in (crashed.error or "")
    assert after.value == "1"


_BROKEN = (sys.executable, "-I", "-c", "import sys; sys.stderr.write('no RestrictedPython here'); sys.exit(3)")


async def test_a_worker_that_cannot_start_raises_sandbox_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launcher, "WORKER_COMMAND", _BROKEN)
    with pytest.raises(SandboxError, match="worker failed to start: no RestrictedPython here"):
        await run("1", wait=10, backend="spawn")


async def test_a_fork_server_that_cannot_start_raises_sandbox_error_when_the_host_opens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(forkserver, "ZYGOTE_COMMAND", _BROKEN)
    with pytest.raises(SandboxError, match="fork server failed to start: no RestrictedPython here"):
        await run("1", wait=10)


async def test_a_worker_flooding_the_channel_does_not_starve_the_portal(monkeypatch: pytest.MonkeyPatch) -> None:
    flood = "while True:\n    send({'type': 'output', 'text': 'x' * 100})"
    monkeypatch.setattr(launcher, "WORKER_COMMAND", (sys.executable, "-I", "-c", _FAKE_WORKER + flood))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.01)
            ticks += 1

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            result = await run("1", wait=20, backend="spawn", timeout=1, max_output_bytes=1_000)
            tg.cancel_scope.cancel()
    assert result.error_kind == "timeout"
    assert "bytes of output cut here: the limit is 1000 bytes" in result.output
    assert ticks > 20  # the portal's other tasks kept running during the flood
