"""The compile-time policy, in process: what agent code may say before it ever runs."""

from __future__ import annotations

import pytest

from portal_mcp.sandbox.policy import AgentSyntaxError, compile_agent_code


def test_code_with_top_level_await_compiles_to_a_coroutine() -> None:
    assert compile_agent_code("await f()").is_async
    assert not compile_agent_code("x = 1").is_async


def test_every_policy_violation_is_listed_with_line_and_column() -> None:
    with pytest.raises(AgentSyntaxError) as caught:
        compile_agent_code("x = 1\ny = x.__class__\n_z = 2", "strict")
    assert str(caught.value) == (
        "SyntaxError: the code is not allowed in the sandbox:\n"
        '  line 2, column 5: "__class__" is an invalid attribute name because it starts with "_".\n'
        '  line 3, column 1: "_z" is an invalid variable name because it starts with "_"'
    )


def test_a_syntax_error_points_at_the_column() -> None:
    with pytest.raises(AgentSyntaxError) as caught:
        compile_agent_code("if True:\n    x = = 1")
    assert str(caught.value) == "SyntaxError: invalid syntax (line 2, column 9)\n  x = = 1\n      ^"


def test_errors_found_only_by_the_compiler_are_reported_too() -> None:
    with pytest.raises(AgentSyntaxError, match=r"'return' outside function \(line 1"):
        compile_agent_code("return 1")


def test_code_nested_too_deeply_is_refused_without_crashing() -> None:
    with pytest.raises(AgentSyntaxError):
        compile_agent_code("x = " + "(" * 10_000 + ")" * 10_000)


@pytest.mark.parametrize(
    "source",
    [
        "async def f(_getattr_=None):\n    pass",
        "async def _f():\n    pass",
        "async def f():\n    async with x as (a, _b):\n        pass",
        "async def f():\n    return [_y async for _y in z]",
        "d[k].__class__ += 1",
    ],
)
def test_async_syntax_keeps_the_name_guards(source: str) -> None:
    with pytest.raises(AgentSyntaxError, match='starts with "_"'):
        compile_agent_code(source, "strict")
