"""How much of the Python models write runs unmodified: portal-mcp's sandbox next to FastMCP CodeMode's Monty.

The corpus (`benchmarks/language/snippets_*.yaml`, 189 snippets, a third of them calling tools) is written the
way models write code-mode Python: comprehensions, classes with special methods, dataclasses, typing, `match`,
try/except naming the exception type, the stdlib modules they reach for, asyncio fan-out, tool calls with
keyword arguments. It was not written to what the sandbox offers: some snippets use `sys`, `os` or `logging`.

Each snippet runs, in the same run, in:
- plain CPython 3.11 (the reference; a snippet that fails there is a corpus bug and is reported);
- portal-mcp's sandbox, `execute_code` through a real Portal over four in-process MCP servers, at the open
  language level (the default where the OS confines the worker) and at the strict one;
- Monty (`pydantic-monty`, the interpreter behind FastMCP CodeMode), with the same tools as host functions of
  namespace objects (`ClassInstance`), so `await github.search_issues(...)` means the same thing.

"Runs unmodified" = finishes without an error. "Same output" = prints exactly what CPython printed.
`python benchmarks/run.py language` writes results/language.json and a section of RESULTS.md.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "language"
sys.path.insert(0, str(CORPUS))

import tools  # noqa: E402

from portal_mcp.config import parse_config  # noqa: E402
from portal_mcp.portal import Portal  # noqa: E402

NAME = "language"
TARGET = 0.97


def corpus() -> list[dict[str, Any]]:
    """Every snippet: name, code, and whether it calls tools."""
    snippets = []
    for path in sorted(CORPUS.glob("snippets_*.yaml")):
        for entry in yaml.safe_load(path.read_text(encoding="utf-8")):
            calls = any(f"{server}." in entry["code"] for server in tools.SERVERS)
            snippets.append({"name": entry["name"], "code": entry["code"], "tools": calls})
    return snippets


def run_cpython(snippets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, str(CORPUS / "cpython_runner.py")],
        input=json.dumps([s["code"] for s in snippets]),
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


async def run_portal(snippets: list[dict[str, Any]], language: str) -> list[dict[str, Any]]:
    config = parse_config(
        f"servers: {{}}\nsandbox: {{language: {language}}}\n", source="<benchmark>", base_dir=HERE, environ={}
    )
    results = []
    async with Portal.open(config, local=tools.mcp_servers(), user="benchmark") as portal:
        for snippet in snippets:
            result = await portal.execute_code(snippet["code"])
            results.append({"ok": result.ok, "output": result.output, "error": result.error})
    return results


def _monty_namespace(server: str, functions: dict[str, Any]) -> Any:
    namespace: dict[str, Any] = {}
    for name, function in functions.items():

        async def method(self: Any, _function: Any = function, **kwargs: Any) -> Any:
            return await _function(**kwargs)

        method.__name__ = name
        namespace[name] = method
    return type(server, (), namespace)()


async def run_monty(snippets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import pydantic_monty as monty

    lookup = {
        server: monty.ClassInstance(_monty_namespace(server, functions), allowed_methods="all")
        for server, functions in tools.SERVERS.items()
    }
    results = []
    async with monty.AsyncMonty() as pool:
        for snippet in snippets:
            out = monty.CollectString()
            try:
                async with pool.checkout() as session:
                    await session.feed_run(snippet["code"], external_lookup=dict(lookup), print_callback=out)
                results.append({"ok": True, "output": out.output, "error": None})
            except Exception as exc:  # the snippet's error, or Monty refusing it
                error = str(exc).strip().splitlines()
                results.append({"ok": False, "output": out.output, "error": error[-1] if error else type(exc).__name__})
    return results


def _score(
    snippets: list[dict[str, Any]], runs: list[dict[str, Any]], reference: list[dict[str, Any]]
) -> dict[str, Any]:
    valid = [i for i, ref in enumerate(reference) if ref["ok"]]
    ok = [i for i in valid if runs[i]["ok"]]
    same = [i for i in ok if runs[i]["output"] == reference[i]["output"]]
    with_tools = [i for i in valid if snippets[i]["tools"]]
    return {
        "snippets": len(valid),
        "ok": len(ok),
        "share": len(ok) / len(valid),
        "same_output": len(same),
        "tools_snippets": len(with_tools),
        "tools_ok": sum(1 for i in with_tools if runs[i]["ok"]),
        "no_tools_snippets": len(valid) - len(with_tools),
        "no_tools_ok": sum(1 for i in ok if not snippets[i]["tools"]),
        "failures": [
            {"name": snippets[i]["name"], "error": (runs[i]["error"] or "").splitlines()[0][:200]}
            for i in valid
            if not runs[i]["ok"]
        ],
    }


def run() -> dict[str, Any]:
    snippets = corpus()
    started = time.perf_counter()
    reference = run_cpython(snippets)
    results: dict[str, Any] = {
        "corpus": {
            "snippets": len(snippets),
            "with_tools": sum(s["tools"] for s in snippets),
            "cpython_failures": [s["name"] for s, r in zip(snippets, reference, strict=True) if not r["ok"]],
        }
    }
    results["portal_open"] = _score(snippets, asyncio.run(run_portal(snippets, "open")), reference)
    results["portal_strict"] = _score(snippets, asyncio.run(run_portal(snippets, "strict")), reference)
    try:
        monty_runs = asyncio.run(run_monty(snippets))
        results["monty"] = _score(snippets, monty_runs, reference)
    except ImportError:
        results["monty"] = None  # pip install pydantic-monty (the `benchmark` extra) to compare
    results["seconds"] = round(time.perf_counter() - started, 1)
    return results


def markdown(results: dict[str, Any]) -> str:
    corpus_info = results["corpus"]
    lines = [
        "## Language: model-style Python that runs unmodified",
        "",
        f"{corpus_info['snippets']} snippets ({corpus_info['with_tools']} calling tools) from "
        "`benchmarks/language/`, each run in plain CPython (the reference), in `execute_code` and in Monty "
        f"(FastMCP CodeMode's interpreter), same run. Target: >= {TARGET:.0%} unmodified in the open language.",
        "",
        "| runner | runs unmodified | share | with tools | without tools | same output as CPython |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, label in (("portal_open", "portal-mcp (open)"), ("portal_strict", "portal-mcp (strict)"),
                       ("monty", "Monty (pydantic-monty)")):  # fmt: skip
        row = results.get(key)
        if row is None:
            lines.append(f"| {label} | not installed | | | | |")
            continue
        lines.append(
            f"| {label} | {row['ok']}/{row['snippets']} | {row['share']:.1%} | "
            f"{row['tools_ok']}/{row['tools_snippets']} | {row['no_tools_ok']}/{row['no_tools_snippets']} | "
            f"{row['same_output']} |"
        )
    failures = results["portal_open"]["failures"]
    if failures:
        lines += ["", "What the open language still refuses:", ""]
        lines += [f"- {f['name']}: `{f['error']}`" for f in failures]
    if corpus_info["cpython_failures"]:
        lines += ["", f"Corpus snippets failing in CPython (left out): {', '.join(corpus_info['cpython_failures'])}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    measured = run()
    (HERE / "results" / f"{NAME}.json").write_text(json.dumps(measured, indent=2) + "\n", encoding="utf-8")
    print(markdown(measured))
