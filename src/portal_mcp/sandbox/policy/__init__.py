"""The policy for agent code: the only package that imports RestrictedPython.

RestrictedPython is one layer; the OS confinement of the worker (`confine.py`) is the one that must hold on its
own. `language` holds the tables of the two language levels and `choose_language`; `transform` the compile-time
policy; `guards` the run-time guards; `scope` the globals and builtins of a run; `output` the capped `print`;
`report` the error text. The threat model: docs/sandbox.md.
"""

from __future__ import annotations

from portal_mcp.sandbox.language import Language, choose_language
from portal_mcp.sandbox.output import Printer, Stream, cut_middle, cut_note, head_bytes
from portal_mcp.sandbox.policy.guards import Guards
from portal_mcp.sandbox.policy.report import agent_line, describe_exception, is_awaitable
from portal_mcp.sandbox.policy.scope import make_globals
from portal_mcp.sandbox.policy.transform import (
    AGENT_FILENAME,
    AgentSyntaxError,
    CompiledCode,
    compile_agent_code,
    final_value,
)

__all__ = [
    "AGENT_FILENAME",
    "AgentSyntaxError",
    "CompiledCode",
    "Guards",
    "Language",
    "Printer",
    "Stream",
    "agent_line",
    "choose_language",
    "compile_agent_code",
    "cut_middle",
    "cut_note",
    "describe_exception",
    "final_value",
    "head_bytes",
    "is_awaitable",
    "make_globals",
]
