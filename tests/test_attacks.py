"""Attacks on `execute_code`, end to end: an MCP client -> the portal -> the sandbox -> real downstream servers.

Each attack is a snippet an agent could submit after reading a prompt injection (SANDBOX.md lists the known
escapes). For every one: no escape (the reply is the expected refusal or limit), the error says what was
blocked, no secret appears in the reply, and the portal answers the next call normally. The secrets: a token in
the `env` of a stdio downstream server (what a real GitHub/Slack server would hold) and one in the portal's own
environment.

The second half assumes RestrictedPython has been bypassed: a test fork server runs the agent code as plain
Python inside the confined worker, and the OS layers alone must hold (no files, no sockets, no processes, no
signals to the portal, no raised limits, nothing reachable through the channel but validated frames).
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import mcp_types as types
import pytest
from mcp.client import Client

from portal_mcp.config import PortalConfig, load_config
from portal_mcp.portal import Portal
from portal_mcp.sandbox import forkserver
from portal_mcp.surface.server import PortalServer
from tests.servers import crm_server

pytestmark = pytest.mark.anyio

DEMO_SERVER = Path(__file__).parent / "servers" / "demo_server.py"
SECRET = "sk-marker-7f3a9c1e5b2d"  # the downstream server's API token
PORTAL_SECRET = "portal-marker-0d4e8b6a"  # a credential in the portal's own environment
STILL_HERE = "await demo.echo(text='still here')"


@dataclass(frozen=True)
class Attack:
    category: str
    name: str
    code: str
    expect: str  # a substring of the reply
    is_error: bool = True


def _attacks() -> list[Attack]:
    a = Attack
    not_importable = "is not available in the sandbox"
    guarded = "is not available in the sandbox"
    return [
        # --- dangerous imports ---
        a("imports", "os", "import os", "ModuleNotFoundError: module 'os' is not available in the sandbox"),
        a("imports", "from os", "from os import system", f"ModuleNotFoundError: module 'os' {not_importable}"),
        a("imports", "subprocess", "import subprocess", f"module 'subprocess' {not_importable}"),
        a("imports", "ctypes", "import ctypes", f"module 'ctypes' {not_importable}"),
        a("imports", "importlib", "import importlib", f"module 'importlib' {not_importable}"),
        a("imports", "sys", "import sys\nsys.modules", "`sys.modules` is not available"),
        a("imports", "builtins", "import builtins", '"builtins" is a reserved name'),
        a("imports", "pickle", "import pickle", f"module 'pickle' {not_importable}"),
        a("imports", "submodule of an allowed one", "import json.decoder", "module 'json.decoder' is not available"),
        a("imports", "__import__", "__import__('os')", '"__import__" cannot be used as a name'),
        a("imports", "relative", "from . import x", "relative imports are not available"),
        a("imports", "module reached through a facade", "import datetime\ndatetime.sys", "has no attribute 'sys'"),
        a("imports", "enum behind re", "import re\nre.enum", "has no attribute 'enum'"),
        a("imports", "random behind statistics", "import statistics\nstatistics.random", "no attribute 'random'"),
        # --- dunder traversal ---
        a("dunder", "__subclasses__", "().__class__.__bases__[0].__subclasses__()", f'"__bases__" {guarded}'),
        a("dunder", "getattr __bases__", "getattr(getattr((), '__class__'), '__bases__')", f"'__bases__' {guarded}"),
        a("dunder", "built name", "getattr(().__class__, '__subcla' + 'sses__')()", f"'__subclasses__' {guarded}"),
        a("dunder", "mro", "getattr(ToolError, 'mro')()", f"attribute 'mro' {guarded}"),
        a("dunder", "__globals__", "def f():\n    pass\nf.__globals__", f'"__globals__" {guarded}'),
        a("dunder", "getattr __globals__", "def f():\n    pass\ngetattr(f, '__globals__')", guarded),
        a("dunder", "__builtins__", "__builtins__", '"__builtins__" cannot be used as a name'),
        a("dunder", "__closure__ of a stub", "demo.echo.__closure__", f'"__closure__" {guarded}'),
        a("dunder", "getattr __closure__", "getattr(demo.echo, '__closure__')", guarded),
        a("dunder", "__self__ of print", "getattr(print, '__self__')", guarded),
        a("dunder", "__init__ of ToolError", "getattr(getattr(ToolError, '__init__'), '__globals__')", guarded),
        a("dunder", "type() of a class", "type(type(1))", "its metaclass, which is not available"),
        a("dunder", "object", "object.__subclasses__()", f'"__subclasses__" {guarded}'),
        a("dunder", "vars", "vars(demo)", "vars() of a 'Namespace' is not available"),
        a("dunder", "globals()", "globals()", "NameError: name 'globals' is not defined"),
        a("dunder", "getattr through map", "list(map(getattr, [print], ['__self__']))", guarded),
        a(
            "dunder",
            "getattr through partial",
            "import functools\nfunctools.partial(getattr, (), '__mro__')()",
            guarded,
        ),
        # --- frame walking ---
        a("frames", "generator gi_frame", "def g():\n    yield 1\ng().gi_frame", "restricted name"),
        a("frames", "getattr gi_frame", "def g():\n    yield 1\ngetattr(g(), 'gi_frame')", guarded),
        a("frames", "gi_yieldfrom", "def g():\n    yield 1\ngetattr(g(), 'gi_yieldfrom')", guarded),
        a("frames", "coroutine cr_frame", "async def c():\n    pass\nco = c()\ngetattr(co, 'cr_frame')", guarded),
        a("frames", "cr_await", "async def c():\n    pass\nco = c()\ngetattr(co, 'cr_await')", guarded),
        a("frames", "async generator ag_frame", "async def g():\n    yield 1\ngetattr(g(), 'ag_frame')", guarded),
        a("frames", "traceback", "try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    e.__traceback__", guarded),
        a(
            "frames",
            "getattr traceback",
            "try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    getattr(e, '__traceback__')",
            guarded,
        ),
        a("frames", "tb_frame", "try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    x = e.tb_frame", "restricted"),
        a("frames", "event loop of a future", "import asyncio\nasyncio.gather().get_loop()", guarded),
        a(
            "frames",
            "task stack",
            "import asyncio\nasync def c():\n    pass\nasyncio.gather(c()).get_stack()",
            "get_stack",
        ),
        a("frames", "get_event_loop", "import asyncio\nasyncio.get_event_loop()", "the event loop is not exposed"),
        # --- format-string attribute access ---
        a("format", "str.format", "'{0.__class__.__base__}'.format(1)", f"'__base__' {guarded}"),
        a("format", "format_map", "'{a.__globals__}'.format_map({'a': print})", f"'__globals__' {guarded}"),
        a("format", "unbound str.format", "str.format('{0.__class__.__base__}', 1)", f"'__base__' {guarded}"),
        a("format", "getattr format", "getattr('{0.__init__.__globals__}', 'format')(print)", guarded),
        a("format", "str subclass", "class S(str):\n    pass\nS('{0.__subclasses__}').format(int)", guarded),
        a("format", "item then attribute", "'{0[0].gi_frame}'.format([(x for x in [])])", f"'gi_frame' {guarded}"),
        a("format", "format builtin", "format(1, '{0.__class__}')", "Invalid format specifier"),
        a("format", "f-string", "x = 1\nf'{x.__class__.__base__}'", f'"__base__" {guarded}'),
        # --- reading files ---
        a("read files", "open", "open('/etc/passwd').read()", "NameError: name 'open' is not defined"),
        a("read files", "/proc/self/environ", "open('/proc/self/environ').read()", "name 'open' is not defined"),
        a("read files", "io", "import io\nio.open('/proc/self/environ')", "`io.open` is not available"),
        a("read files", "pathlib", "import pathlib", f"module 'pathlib' {not_importable}"),
        a("read files", "json.load", "import json\njson.load(open('/etc/passwd'))", "name 'open' is not defined"),
        a("read files", "fullwidth open", "ｏｐｅｎ('/proc/self/environ')", "name 'open' is not defined"),
        # --- writing files ---
        a("write files", "open for writing", "open('/tmp/pwned', 'w').write('x')", "name 'open' is not defined"),
        a("write files", "print to a file", "print('x', file='/tmp/pwned')", "print(file=...) is not available"),
        a("write files", "json.dump", "import json\njson.dump(1, open('/tmp/x', 'w'))", "name 'open' is not defined"),
        # --- sockets ---
        a("sockets", "socket", "import socket", f"module 'socket' {not_importable}"),
        a(
            "sockets",
            "asyncio connection",
            "import asyncio\nasyncio.open_connection",
            "`asyncio.open_connection` is not",
        ),
        a("sockets", "urllib", "import urllib.request", f"module 'urllib.request' {not_importable}"),
        # --- subprocesses and fork ---
        a("processes", "subprocess", "import subprocess", f"module 'subprocess' {not_importable}"),
        a("processes", "asyncio subprocess", "import asyncio\nasyncio.create_subprocess_exec", "no processes can"),
        a("processes", "multiprocessing", "import multiprocessing", f"module 'multiprocessing' {not_importable}"),
        a("processes", "fork", "import os\nos.fork()", f"module 'os' {not_importable}"),
        a("processes", "signal", "import signal", f"module 'signal' {not_importable}"),
        # --- infinite loops ---
        a("loops", "busy loop", "while True:\n    pass", "CPULimitError"),
        a(
            "loops",
            "loop catching everything",
            "while True:\n    try:\n        while True:\n            pass\n    except BaseException:\n        pass",
            "CPULimitError",
        ),
        a(
            "loops",
            "sleeping forever",
            "import asyncio\nawait asyncio.sleep(10 ** 6)",
            "TimeoutError: the code ran longer",
        ),
        a("loops", "time.sleep", "import time\ntime.sleep(60)", "TimeoutError: the code ran longer"),
        # --- memory and recursion bombs ---
        a("memory", "huge string", "'x' * 10 ** 10", "MemoryError: the code ran out of memory"),
        a("memory", "growing list", "chunks = []\nwhile True:\n    chunks.append('x' * 10 ** 6)", "MemoryError"),
        a("memory", "bytearray", "bytearray(10 ** 10)", "MemoryError"),
        a("memory", "recursion", "def f(n):\n    return f(n + 1)\nf(0)", "RecursionError"),
        a("memory", "deep repr", "x = []\nfor i in range(100000):\n    x = [x]\nx", "RecursionError"),
        a("memory", "deep nesting at compile", "x = " + "(" * 5000 + ")" * 5000, "SyntaxError"),
        a("memory", "code over the size limit", "x = 1\n" * 200_000, "`limits.max_code_bytes`"),
        # --- output floods ---
        # 10 ** 5 lines are 59 times the output limit and end well within `cpu_seconds`: the cut, not a limit
        a("floods", "print loop", "for i in range(10 ** 5):\n    print(i)", "bytes of output cut here", is_error=False),
        # one that never ends is stopped by a limit, and still shows what it printed, cut
        a("floods", "endless print loop", "i = 0\nwhile True:\n    print(i)\n    i += 1", "bytes of output cut here"),
        a("floods", "one huge print", "print('y' * 10 ** 7)", "bytes of output cut here", is_error=False),
        a("floods", "huge value", "'x' * 10 ** 6", "bytes of the value cut here", is_error=False),
        a("floods", "huge error", "raise ValueError('x' * 10 ** 6)", "[error truncated: "),
        # --- the channel and credentials through the stubs ---
        a("stubs", "stub _channel", "demo.echo._channel", f"'_channel' {guarded}"),
        a("stubs", "pending call _channel", "p = demo.echo(text='x')\ngetattr(p, '_channel')", guarded),
        a("stubs", "namespace _tools", "getattr(demo, '_tools')", guarded),
        a("stubs", "namespace item", "name = '_to' + 'ols'\ndemo[name]", "has no tool '_tools'"),
        a("stubs", "__await__", "p = demo.echo(text='x')\ngetattr(p, '__await__')", guarded),
        a("stubs", "pending call used as a value", "p = demo.echo(text='x')\np.send(None)", "was not awaited"),
        a("stubs", "__defaults__", "getattr(demo.echo, '__defaults__')", guarded),
        a("stubs", "dir", "dir(demo)", "Value: ['__class__', '__doc__', '__init__']", is_error=False),
        a("stubs", "tool outside the catalog", "name = 'rm' + '_rf'\nawait getattr(demo, name)()", "has no tool"),
        # A keyword named like a hidden parameter is just an argument: the same tool is called.
        a(
            "stubs",
            "hidden keyword",
            "kw = {'_tool': 'evil.rm', 'text': 'x'}\nawait demo.echo(**kw)",
            "Value: 'x'",
            False,
        ),
        a("stubs", "positional arguments", "await demo.echo('x')", "takes keyword arguments only"),
        a("stubs", "replace a stub", "demo.echo = print", "cannot be modified"),
        a(
            "stubs",
            "too many calls",
            "import asyncio\nawait asyncio.gather(*[demo.echo(text='x') for i in range(600)])",
            "limit of 500 tool calls",
        ),
        # --- exceptions carrying host objects ---
        a(
            "exceptions",
            "AttributeError.obj",
            "import json\ntry:\n    json.nope\nexcept AttributeError as e:\n    print(e.obj, e.name)",
            "None None",
            is_error=False,
        ),
        a(
            "exceptions",
            "ToolError context",
            "try:\n    await demo.fail(message='boom')\nexcept ToolError as e:\n    getattr(e, '__context__')",
            guarded,
        ),
        a(
            "exceptions",
            "ToolError fields",
            "try:\n    await demo.fail(message='boom')\nexcept ToolError as e:\n    print(e.args, e.tool)",
            "('demo.fail failed: boom',) demo.fail",
            is_error=False,
        ),
        a(
            "exceptions",
            "with_traceback",
            "try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    getattr(e.with_traceback(None), '__traceback__')",
            guarded,
        ),
        a("exceptions", "SystemExit", "raise SystemExit(0)", "name 'SystemExit' is not defined"),
        a("exceptions", "own BaseException", "class Stop(BaseException):\n    pass\nraise Stop()", "Stop"),
        a(
            "exceptions",
            "generator throw",
            "def g():\n    yield 1\nx = g()\nnext(x)\nx.throw(GeneratorExit)",
            "GeneratorExit",
        ),
        # --- code objects, eval, exec, compile ---
        a("code", "eval", "eval('1')", "Eval calls are not allowed"),
        a("code", "exec", "exec('x = 1')", "Exec calls are not allowed"),
        a("code", "compile", "compile('1', 'x', 'eval')", "name 'compile' is not defined"),
        a("code", "__code__", "def f():\n    pass\nf.__code__", f'"__code__" {guarded}'),
        a("code", "getattr __code__", "def f():\n    pass\ngetattr(f, '__code__')", guarded),
        a("code", "gi_code", "def g():\n    yield 1\ngetattr(g(), 'gi_code')", guarded),
        a(
            "code",
            "string annotation evaluated",
            "import functools\nfunctools.singledispatch",
            "`functools.singledispatch` is not available",
        ),
        a(
            "code",
            "guard shadowing (CVE-2026-55830)",
            "def f(_getattr_=None, /):\n    pass",
            '"_getattr_" is reserved for the sandbox',
        ),
        a(
            "code",
            "except* (CVE-2025-22153)",
            "try:\n    pass\nexcept* ValueError:\n    pass",
            "TryStar statements are not allowed",
        ),
        # --- metaclasses and __del__ ---
        a("classes", "metaclass from type", "class M(type):\n    pass", "metaclasses are not available"),
        a("classes", "metaclass keyword", "class A(metaclass=ToolError):\n    pass", '"metaclass" is not allowed'),
        a(
            "classes",
            "__del__",
            "class A:\n    def __del__(self):\n        print('late')",
            '"__del__" cannot be defined',
        ),
        a(
            "classes",
            "__init_subclass__",
            "class A:\n    def __init_subclass__(cls):\n        pass",
            '"__init_subclass__" cannot be defined',
        ),
        a(
            "classes",
            "__getattr__ hook",
            "seen = []\nclass A:\n    def __getattr__(self, name):\n        seen.append(name)\n        return 1\n"
            "try:\n    await demo.echo(text=A())\nexcept TypeError as e:\n    print('refused', e)\nprint(seen)",
            "refused arguments of demo.echo() must be JSON values",
            is_error=False,
        ),
        a(
            "classes",
            "super",
            "class A:\n    def f(self):\n        return super().__getattribute__('__dict__')\nA().f()",
            '"__getattribute__" is not available in the sandbox',
        ),
        a("classes", "modify a facade", "import json\njson.dumps = print", "'Facade' objects cannot be modified"),
        a("classes", "setattr on a facade", "import json\nsetattr(json, 'dumps', print)", "cannot be modified"),
        # --- unicode-normalised identifiers ---
        a("unicode", "mathematical __import__", "__𝒾𝓂𝓅𝑜𝓇𝓉__('os')", '"__import__" cannot be used as a name'),
        a("unicode", "mathematical eval", "𝓮𝓿𝓪𝓵('1')", "Eval calls are not allowed"),
        a("unicode", "fullwidth dunder attribute", "().__𝒸𝓁𝒶𝓈𝓈__.__𝒷𝒶𝓈𝑒𝓈__", f'"__bases__" {guarded}'),
        a("unicode", "fullwidth string attribute", "getattr((), '＿＿class＿＿')", "has no attribute"),
        a("unicode", "fullwidth builtin", "ｅｘｅｃ('1')", "Exec calls are not allowed"),
    ]


ATTACKS = _attacks()


def _config(tmp: Path) -> PortalConfig:
    text = textwrap.dedent(
        f"""
        servers:
          demo:
            command: {sys.executable}
            args: [{DEMO_SERVER}]
            env: {{API_TOKEN: {SECRET}}}
            timeout: 20
        sandbox: {{timeout: 3, cpu_seconds: 1, memory_mb: 256, max_output_bytes: 10000}}
        """
    )
    path = tmp / "portal.yaml"
    path.write_text(text)
    return load_config(path, environ={})


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def portal_secret() -> Iterator[None]:
    os.environ["PORTAL_ATTACK_SECRET"] = PORTAL_SECRET
    yield
    del os.environ["PORTAL_ATTACK_SECRET"]


@pytest.fixture(scope="module")
async def client(tmp_path_factory: pytest.TempPathFactory, portal_secret: None) -> AsyncIterator[Client]:
    config = _config(tmp_path_factory.mktemp("attacks"))
    async with (
        Portal.open(config, local={"crm": crm_server()}) as portal,
        Client(PortalServer(portal).server) as connected,
    ):
        yield connected


async def _execute(client: Client, code: str) -> tuple[str, bool]:
    with anyio.fail_after(30):
        result = await client.call_tool("execute_code", {"code": code})
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent)), bool(
        result.is_error
    )


def _assert_no_secret(text: str) -> None:
    assert SECRET not in text
    assert PORTAL_SECRET not in text


@pytest.mark.parametrize("attack", ATTACKS, ids=[f"{attack.category}: {attack.name}" for attack in ATTACKS])
async def test_the_attack_is_refused_and_the_portal_keeps_serving(client: Client, attack: Attack) -> None:
    await assert_contained(client, attack.code, attack.expect, is_error=attack.is_error)


async def assert_contained(client: Client, code: str, expect: str, *, is_error: bool) -> None:
    """Running `code` replies with `expect` (an error or not), leaks no secret, and the portal serves on."""
    text, was_error = await _execute(client, code)
    assert expect in text, text[:2000]
    assert was_error == is_error, text[:2000]
    _assert_no_secret(text)
    after, after_error = await _execute(client, STILL_HERE)
    assert (after, after_error) == ("Value: 'still here'", False)


def test_the_suite_covers_every_category_of_the_threat_model() -> None:
    categories = {attack.category for attack in ATTACKS}
    assert categories == {
        "imports", "dunder", "frames", "format", "read files", "write files", "sockets", "processes", "loops",
        "memory", "floods", "stubs", "exceptions", "code", "classes", "unicode",
    }  # fmt: skip
    assert len(ATTACKS) >= 60


# --- RestrictedPython bypassed: the OS layers alone ---

# A fork server whose workers run the agent code as plain Python (real builtins, real imports of what the
# fork server has loaded), after the same confinement. It stands for a policy escape nobody has found yet.
_UNRESTRICTED_ZYGOTE = """
import sys; sys.modules['ssl'] = None
import ast, builtins
from portal_mcp.sandbox import policy

def compile_plain(source, level='open'):
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    return policy.CompiledCode(compile(source, policy.AGENT_FILENAME, 'exec', flags=flags), tuple(source.splitlines()))

def plain_globals(*, printer, names, extra_builtins, **ignored):
    def show(*values):
        printer.write(' '.join(map(str, values)) + '\\n')
    return {'__builtins__': builtins, 'print': show, **names}

policy.compile_agent_code = compile_plain
policy.make_globals = plain_globals
from portal_mcp.sandbox.zygote import main
main()
"""


@pytest.fixture(scope="module")
async def escaped(tmp_path_factory: pytest.TempPathFactory, portal_secret: None) -> AsyncIterator[Portal]:
    command = forkserver.ZYGOTE_COMMAND
    forkserver.ZYGOTE_COMMAND = (sys.executable, "-I", "-B", "-c", _UNRESTRICTED_ZYGOTE)
    try:
        # No deadline around the yield: it would span every test of the module. Each test keeps its own.
        async with Portal.open(_config(tmp_path_factory.mktemp("escaped"))) as portal:
            yield portal
    finally:
        forkserver.ZYGOTE_COMMAND = command


def _try(body: str) -> str:
    """Agent code that runs `body` (plain Python, indented under a try) and prints how it ended."""
    return (
        "import os, socket, signal, resource, ctypes, subprocess\n"
        "try:\n" + textwrap.indent(textwrap.dedent(body).strip(), "    ") + "\n"
        "    print('ESCAPED')\n"
        "except Exception as exc:\n"
        "    print('BLOCKED', type(exc).__name__, exc)\n"
    )


@dataclass(frozen=True)
class OsAttack:
    layer: str
    name: str
    body: str


def _os_attacks(portal_pid: int) -> list[OsAttack]:
    o = OsAttack
    return [
        o("filesystem reads", "the portal's environment", f"open('/proc/{portal_pid}/environ', 'rb').read()"),
        o("filesystem reads", "own environment file", "print(open('/proc/self/environ').read())"),
        o("filesystem reads", "a system file", "open('/etc/passwd').read()"),
        o("filesystem reads", "the portal's memory", f"open('/proc/{portal_pid}/mem', 'rb')"),
        o("filesystem writes", "create a file", "open('/tmp/portal-sandbox-escape', 'w').write('x')"),
        o("filesystem writes", "create a directory", "os.mkdir('/tmp/portal-sandbox-escape-dir')"),
        o("network", "TCP socket", "socket.socket(socket.AF_INET, socket.SOCK_STREAM)"),
        o("network", "UNIX socket", "socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)"),
        o("new processes", "fork", "pid = os.fork()\nif pid == 0:\n    os._exit(0)"),
        o("new processes", "subprocess", "subprocess.run(['/bin/true'])"),
        o("other processes", "signal the portal", f"os.kill({portal_pid}, 0)"),
        o("other processes", "signal the fork server", "os.kill(os.getppid(), signal.SIGKILL)"),
        o(
            "other processes",
            "ptrace the portal",
            f"libc = ctypes.CDLL(None, use_errno=True)\n"
            f"if libc.ptrace(16, {portal_pid}, 0, 0) != 0:\n"
            "    raise OSError(ctypes.get_errno(), 'ptrace failed')",
        ),
        o(
            "other processes",
            "raise its own memory limit",
            "resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))",
        ),
    ]


_OS_ATTACK_IDS = [f"{attack.layer}: {attack.name}" for attack in _os_attacks(0)]


@pytest.mark.parametrize("index", range(len(_OS_ATTACK_IDS)), ids=_OS_ATTACK_IDS)
async def test_with_restricted_python_bypassed_the_os_layers_still_hold(escaped: Portal, index: int) -> None:
    attack = _os_attacks(os.getpid())[index]
    if not escaped.sandbox.layers.get(attack.layer):
        pytest.skip(f"no kernel mechanism enforces {attack.layer!r} here")
    with anyio.fail_after(30):
        result = await escaped.execute_code(_try(attack.body), escaped.local)
    text = result.render()
    assert "BLOCKED" in text, text
    assert "ESCAPED" not in text
    _assert_no_secret(text)
    with anyio.fail_after(30):
        after = await escaped.execute_code(f"print({STILL_HERE})", escaped.local)
    assert after.output == "still here\n"


async def test_with_restricted_python_bypassed_forged_frames_are_refused_by_the_portal(escaped: Portal) -> None:
    # Escaped code finds its channel (by trying descriptors: /proc is unreadable) and writes a call for a tool
    # that is not in the catalog.
    forge = textwrap.dedent(
        """
        import json, os, socket, struct
        def frame(message):
            data = json.dumps(message).encode()
            return struct.pack('>I', len(data)) + data
        sent = []
        for fd in range(3, 32):
            try:
                sock = socket.socket(fileno=os.dup(fd))
            except OSError:
                continue
            if sock.type == socket.SOCK_STREAM and sock.family == socket.AF_UNIX:
                sock.sendall(frame({'type': 'call', 'id': 999, 'tool': 'evil.rm_rf', 'args': {}}))
                sent.append(fd)
            sock.detach()
        print('forged on', sent)
        import asyncio
        await asyncio.sleep(0.5)
        """
    )
    with anyio.fail_after(30):
        result = await escaped.execute_code(forge, escaped.local)
    _assert_no_secret(result.render())
    assert "forged on [" in result.output
    assert result.ok, result.error
    assert result.tool_calls == 0  # refused against the catalog: no tool `evil.rm_rf`, nothing was called
    with anyio.fail_after(30):
        after = await escaped.execute_code(f"print({STILL_HERE})", escaped.local)
    assert after.output == "still here\n"
