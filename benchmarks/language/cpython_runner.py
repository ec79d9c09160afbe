"""Run every corpus snippet in plain CPython 3.11 (a child process of the benchmark): the reference.

Reads the snippets as JSON on stdin, writes one JSON result per snippet on stdout: whether it ran and what it
printed. Tools are the same async functions the portal serves (`tools.py`), as namespace objects; a tool that
raises raises `ToolError`, as in the sandbox.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import io
import json
import sys
import types
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tools


class ToolError(Exception):
    pass


def _namespace(server: str, functions: dict[str, Any]) -> types.SimpleNamespace:
    def wrap(function: Any) -> Any:
        async def call(**kwargs: Any) -> Any:
            try:
                return json.loads(json.dumps(await function(**kwargs)))
            except Exception as exc:
                raise ToolError(f"{server}: {exc}") from None

        return call

    return types.SimpleNamespace(**{name: wrap(f) for name, f in functions.items()})


def run_one(code: str) -> dict[str, Any]:
    names = {server: _namespace(server, functions) for server, functions in tools.SERVERS.items()}
    scope: dict[str, Any] = {"__name__": "__main__", "ToolError": ToolError, **names}
    out = io.StringIO()
    try:
        compiled = compile(code, "<snippet>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            if compiled.co_flags & 0x80:
                asyncio.run(asyncio.wait_for(eval(compiled, scope), 20))
            else:
                exec(compiled, scope)
    except BaseException as exc:
        return {"ok": False, "output": out.getvalue(), "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "output": out.getvalue(), "error": None}


def main() -> None:
    for snippet in json.load(sys.stdin):
        print(json.dumps(run_one(snippet)), flush=True)


if __name__ == "__main__":
    main()
