"""Attacks aimed at what the open language allows, end to end (an MCP client -> the portal -> the sandbox).

Each newly allowed feature (dunder reads, special methods, `type`, `super`, private names, `match`, annotated
assignments, the new stdlib facades) gets snippets written to turn it into a way out: reach a module, a frame,
a function's globals, the real `type`, the channel, or another run's state. For every one: the reply is the
expected refusal or a harmless result, no secret appears in it, and the portal answers the next call normally.
The fixtures (a portal whose downstream server holds a secret token) are shared with tests/test_attacks.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from mcp.client import Client

from tests.test_attacks import (  # noqa: F401 - fixtures
    _execute,
    anyio_backend,
    assert_contained,
    client,
    portal_secret,
)

pytestmark = pytest.mark.anyio

NOT = "is not available in the sandbox"


@dataclass(frozen=True)
class Attack:
    feature: str
    name: str
    code: str
    expect: str
    is_error: bool = True


def _attacks() -> list[Attack]:
    a = Attack
    return [
        # --- dunder reads ---
        a("dunder reads", "function globals", "(lambda: 0).__globals__", f'"__globals__" {NOT}'),
        a("dunder reads", "globals of a dataclass __init__",
          "from dataclasses import dataclass\n@dataclass\nclass P:\n    x: int\ngetattr(P.__init__, '__globals__')",
          f"'__globals__' {NOT}"),
        a("dunder reads", "globals of ToolError.__init__", "getattr(ToolError.__init__, '__globals__')", NOT),
        a("dunder reads", "__name__ that is not a string", "import json\njson.__name__", "has no attribute '__name__'"),
        a("dunder reads", "__class__ to the metaclass", "(1).__class__.__class__", "is a metaclass"),
        a("dunder reads", "__doc__ write", "class A:\n    pass\nsetattr(A, '__doc__', print)", NOT),
        a("dunder reads", "__class__ assignment", "class A:\n    pass\na = A()\na.__class__ = ToolError", NOT),
        a("dunder reads", "__annotations__ injection",
          "class A:\n    x: int\ngetattr(A, '__annotations__')['y=1;import os'] = int", f"'__annotations__' {NOT}"),
        a("dunder reads", "__dict__ of a facade", "import json\ngetattr(json, '__dict__')", f"'__dict__' {NOT}"),
        a("dunder reads", "__getattribute__ through super",
          "class A:\n    def f(self):\n        return super().__getattribute__\nA().f()", f'"__getattribute__" {NOT}'),
        # --- private names ---
        a("private names", "facade metadata", "import json\ngetattr(json, '_facade meta')", "private"),
        a("private names", "event loop of a subclassed task",
          "import asyncio\nclass T(asyncio.Task):\n    pass\nasync def c():\n    pass\nT(c())._loop", f"'_loop' {NOT}"),
        a("private names", "coroutine of a task",
          "import asyncio\nasync def c():\n    pass\nt = asyncio.create_task(c())\nt._coro", "private"),
        a("private names", "stub namespace of a copy", "import copy\ncopy.copy(demo)._tools", "RecursionError"),
        a("private names", "guard name as a variable", "_getattr_ = lambda o, n: 1", '"_getattr_" is reserved'),
        a("private names", "guard name by nonlocal",
          "def f():\n    _write_ = 1\n    def g():\n        nonlocal _write_\n    return g", '"_write_" is reserved'),
        # --- type() and classes ---
        a("type", "three-argument type", "type('X', (), {'__match_args__': ('__globals__',)})", "define the class"),
        a("type", "metaclass of an enum", "import enum\ntype(enum.Enum)", "its metaclass"),
        a("type", "subclassing the type stand-in", "class M(type):\n    pass", "metaclasses are not available"),
        a("type", "function from its class",
          "type(demo.echo)(getattr(demo.echo, '__code__'), {})", f"'__code__' {NOT}"),
        a("special methods", "str subclass lying about a tool name",
          "class S(str):\n    def __eq__(self, other):\n        return True\n    def __hash__(self):\n        return 0\n"
          "await getattr(demo, S('rm_rf'))()", "attribute name must be a string"),
        a("special methods", "a hostile __repr__ as the final value",
          "class A:\n    def __repr__(self):\n        raise RuntimeError('no')\nA()", "RuntimeError: no"),
        a("special methods", "a hostile __str__ in an error",
          "class E(Exception):\n    def __str__(self):\n        raise RuntimeError\nraise E()", "E"),
        a("special methods", "__del__ defined through type", "type('X', (), {'__del__': print})", "define the class"),
        # --- match, annotations ---
        a("match", "dunder in a class pattern",
          "match print:\n    case object(__self__=s):\n        s", "cannot be matched in the sandbox"),
        a("match", "frame in a value pattern",
          "def g():\n    yield 1\nx = g()\nmatch 1:\n    case x.gi_frame:\n        pass", "cannot be matched"),
        a("annotations", "import in an annotation", "x: __import__('os') = 1", '"__import__" cannot be used'),
        a("annotations", "string annotation evaluated by typing",
          "import typing\ntyping.get_type_hints", "`typing.get_type_hints` is not available"),
        # --- new facades ---
        a("facades", "string.Formatter", "import string\nstring.Formatter().format('{0.__class__}', 1)",
          "`string.Formatter` is not available"),
        a("facades", "string.Template attribute walk", "import string\nstring.Template('${x.__class__}').substitute(x=1)",
          "Invalid placeholder"),
        a("facades", "operator.attrgetter", "import operator\noperator.attrgetter('__class__.__base__')(())",
          f"'__base__' {NOT}"),
        a("facades", "operator.methodcaller", "import operator\noperator.methodcaller('__subclasses__')(object)",
          f"'__subclasses__' {NOT}"),
        a("facades", "functools.reduce over getattr",
          "import functools\nfunctools.reduce(getattr, ['__class__', '__base__'], ())", f"'__base__' {NOT}"),
        a("facades", "functools.wraps keeps the wrapped function out of reach",
          "import functools\nf = functools.wraps(demo.echo)(lambda: 1)\ngetattr(f, '__wrapped__')", NOT),
        a("facades", "typing.get_origin to the real type", "import typing\ntyping.get_origin(typing.Type[int])",
          "`typing.get_origin` is not available"),
        a("facades", "dataclasses.make_dataclass", "import dataclasses\ndataclasses.make_dataclass('X', ['a'])",
          "`dataclasses.make_dataclass` is not available"),
        a("facades", "io.open", "import io\nio.open('/etc/passwd')", "`io.open` is not available"),
        a("facades", "csv over a file", "import csv\ncsv.reader(open('/etc/passwd'))", "name 'open' is not defined"),
        a("facades", "uuid1 reads the network interfaces", "import uuid\nuuid.uuid1()", "`uuid.uuid1` is not available"),
        a("facades", "zoneinfo path traversal", "from zoneinfo import ZoneInfo\nZoneInfo('../../../../etc/passwd')",
          "No time zone found"),
        a("facades", "asyncio event loop", "import asyncio\nasyncio.get_running_loop()", "the event loop is not exposed"),
        a("facades", "coroutine of the current task", "import asyncio\nasyncio.current_task().get_coro()", NOT),
        a("facades", "a submodule not offered", "import collections.abc\nimport html.entities", "html.entities"),
        a("facades", "pprint to a stream", "import pprint\npprint.PrettyPrinter", "`pprint.PrettyPrinter` is not"),
        a("facades", "traceback shows only the agent's lines",
          "import traceback\ntry:\n    await demo.fail(message='boom')\nexcept ToolError:\n"
          "    text = traceback.format_exc()\nprint('portal_mcp' in text, 'site-packages' in text, text.count('line'))",
          "False False 1", is_error=False),
        a("exception groups", "except* stays refused", "try:\n    pass\nexcept* ValueError:\n    pass", "TryStar"),
        a("exception groups", "traceback of a member",
          "try:\n    raise ExceptionGroup('g', [ValueError(1)])\nexcept ExceptionGroup as g:\n"
          "    getattr(g.exceptions[0], '__traceback__')", NOT),
    ]  # fmt: skip


ATTACKS = _attacks()


@pytest.mark.parametrize("attack", ATTACKS, ids=[f"{attack.feature}: {attack.name}" for attack in ATTACKS])
async def test_the_newly_allowed_feature_opens_no_way_out(client: Client, attack: Attack) -> None:  # noqa: F811
    await assert_contained(client, attack.code, attack.expect, is_error=attack.is_error)


async def test_random_numbers_differ_between_runs(client: Client) -> None:  # noqa: F811
    # Every worker is forked from the same fork server: a generator shared with it would repeat across runs.
    draws = {(await _execute(client, "import random\nrandom.random()"))[0] for _ in range(3)}
    assert len(draws) == 3


async def test_a_run_sees_nothing_of_the_previous_runs_classes_or_modules(client: Client) -> None:  # noqa: F811
    await _execute(client, "import json\nclass Marker:\n    pass\njson.marker = 1")
    text, is_error = await _execute(client, "import json\nprint(hasattr(json, 'marker'))\nMarker")
    assert "False" in text and "name 'Marker' is not defined" in text and is_error


def test_there_is_an_attack_for_every_newly_allowed_feature() -> None:
    assert {attack.feature for attack in ATTACKS} == {
        "dunder reads", "private names", "type", "special methods", "match", "annotations", "facades",
        "exception groups",
    }  # fmt: skip
    assert len(ATTACKS) >= 30
