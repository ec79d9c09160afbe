"""What the check reports: a `Problem` (where, what, which rule) and `render`, the text `execute_code` returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, get_args

Rule = Literal[
    "not_allowed", "unavailable", "unknown_tool", "unknown_server", "positional_argument", "unknown_argument", "missing_argument",
    "invalid_value", "not_awaited",
]  # fmt: skip

RULE_ORDER: Final = {rule: index for index, rule in enumerate(get_args(Rule))}

MAX_PROBLEMS: Final = 100
"""The check stops after this many problems: code with more needs rewriting, not a longer list."""
MAX_RENDERED: Final = 20
"""Problems listed in a reply; the rest are counted. Twenty is plenty to fix before the next attempt."""


@dataclass(frozen=True)
class Problem:
    """One problem in agent code: where it is (1-based line and column) and what to do about it."""

    line: int
    column: int
    message: str
    rule: Rule

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.message}"


def render(problems: Sequence[Problem]) -> str:
    """The error text `execute_code` returns when the check finds problems: one line per problem, then the fix."""
    count = len(problems)
    noun = "problem" if count == 1 else "problems"
    lines = [f"The code was not run: checking it against the tool stubs found {count} {noun} (no tool was called):"]
    lines.extend(f"- {problem}" for problem in problems[:MAX_RENDERED])
    if count > MAX_RENDERED:
        lines.append(f"- ... and {count - MAX_RENDERED} more")
    lines.append("Fix the code and run it again; search_api shows each tool's stub with its exact parameters.")
    return "\n".join(lines)
