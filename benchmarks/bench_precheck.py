"""Pre-run check: how long `check_code` takes on typical agent code, and whether it cries wolf on valid calls.

Two catalogs: the bundled one (`schemas/`) and, when present, the 4,000-tool corpus in
`/work/shared/corpus/servers` (or `$PORTAL_CORPUS`). Snippets of 5-50 lines are generated from each catalog with
a fixed seed, shaped like agent code (awaited calls with literal and variable arguments, `asyncio.gather` fan-out,
loops, comprehensions, json); a third of them carry one mistake (a misspelt tool or parameter, a wrong literal,
a missing argument, a forgotten `await`). Each snippet is checked `REPEATS` times and its median kept; the table
reports the median and p95 of those over the snippets, next to the time `ast.parse` alone takes.

The false-positive sweep calls every tool of each catalog with its required arguments (literals where the schema
makes a valid one obvious, variables elsewhere) and counts the calls the check reports: it should be 0.
"""

from __future__ import annotations

import ast
import json
import keyword
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from common import bundled_listings, run_alone

from portal_mcp.catalog.model import Catalog, ToolEntry
from portal_mcp.catalog.schemas import object_shape
from portal_mcp.catalog.snapshot import load_snapshot
from portal_mcp.runs.precheck import check_code

NAME = "precheck"
CORPUS = Path(os.environ.get("PORTAL_CORPUS", "/work/shared/corpus/servers"))
SNIPPETS = 200
REPEATS = 15
SEED = 20261129
_MISTAKES = ("tool", "parameter", "literal", "missing", "await")


def run() -> dict[str, Any]:
    catalogs = {"bundled": Catalog.build(bundled_listings())}
    corpus = _corpus_listings()
    if corpus:
        catalogs["corpus"] = Catalog.build(corpus)
    return {
        "python": sys.version.split()[0],
        "snippets": SNIPPETS,
        "repeats": REPEATS,
        "catalogs": {name: _measure(catalog) for name, catalog in catalogs.items()},
    }


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "## Pre-run check of agent code (`portal_mcp.runs.precheck`)",
        "",
        f"{results['snippets']} generated snippets of 5-50 lines per catalog (a third with one mistake), each "
        f"checked {results['repeats']} times; times are the median per snippet, then the median / p95 over snippets. "
        f"Python {results['python']}.",
        "",
        "| catalog | tools | snippets | median ms | p95 ms | valid code ms | code with a mistake ms | "
        "`ast.parse` alone ms | mistakes caught | false positives (every tool called validly) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in results["catalogs"].items():
        sweep = row["sweep"]
        lines.append(
            f"| {name} | {row['tools']:,} | {row['snippets']} | {row['median_ms']:.3f} | {row['p95_ms']:.3f} | "
            f"{row['valid_median_ms']:.3f} | {row['mistake_median_ms']:.3f} | {row['parse_median_ms']:.3f} | "
            f"{row['mistakes_caught']}/{row['mistakes']} | {sweep['reported']}/{sweep['calls']} |"
        )
    for name, row in results["catalogs"].items():
        for example in row["sweep"]["examples"]:
            lines.append(f"\n{name} sweep report: `{example}`")
    lines.append(
        "\nBy snippet length (median ms): "
        + "; ".join(
            f"{name}: " + ", ".join(f"{size} lines {ms:.3f}" for size, ms in row["by_length"].items())
            for name, row in results["catalogs"].items()
        )
    )
    return "\n".join(lines) + "\n"


def _corpus_listings() -> dict[str, Any]:
    if not CORPUS.is_dir():
        return {}
    listings: dict[str, Any] = {}
    for path in sorted(CORPUS.glob("*.json")):
        server = json.loads(path.read_text(encoding="utf-8")).get("server") or path.stem
        listings[server] = load_snapshot(path)
    return listings


def _measure(catalog: Catalog) -> dict[str, Any]:
    rng = random.Random(SEED)
    entries = catalog.entries
    snippets = [_snippet(rng, entries, index) for index in range(SNIPPETS)]
    timings: list[tuple[int, bool, float, float]] = []
    caught = mistakes = 0
    for code, mistake in snippets:
        problems = check_code(code, catalog)
        if mistake:
            mistakes += 1
            caught += bool(problems)
        check = _median_ms(partial(check_code, code, catalog))
        parse = _median_ms(partial(ast.parse, code))
        timings.append((code.count("\n") + 1, mistake, check, parse))
    checks = sorted(t[2] for t in timings)
    by_length: dict[str, list[float]] = {}
    for lines, _mistake, check, _parse in timings:
        bucket = "5-14" if lines < 15 else "15-29" if lines < 30 else "30-50"
        by_length.setdefault(bucket, []).append(check)
    return {
        "tools": len(catalog),
        "snippets": len(snippets),
        "median_ms": statistics.median(checks),
        "p95_ms": checks[int(0.95 * (len(checks) - 1))],
        "valid_median_ms": statistics.median(t[2] for t in timings if not t[1]),
        "mistake_median_ms": statistics.median(t[2] for t in timings if t[1]),
        "parse_median_ms": statistics.median(t[3] for t in timings),
        "mistakes": mistakes,
        "mistakes_caught": caught,
        "by_length": {key: statistics.median(by_length[key]) for key in ("5-14", "15-29", "30-50") if key in by_length},
        "sweep": _sweep(catalog),
    }


def _median_ms(action: Callable[[], object]) -> float:
    samples = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def _sweep(catalog: Catalog) -> dict[str, Any]:
    """Call every tool once with its required arguments; count the calls the check reports."""
    reported: list[str] = []
    for entry in catalog:
        code = f"result = await {_call(entry, random.Random(0), literals=True)}\nprint(result)"
        problems = check_code(code, catalog)
        if problems:
            reported.append(str(problems[0]))
    return {"calls": len(catalog), "reported": len(reported), "examples": reported[:5]}


def _snippet(rng: random.Random, entries: list[ToolEntry], index: int) -> tuple[str, bool]:
    """Agent-shaped code of 5-50 lines using a few tools; every third snippet gets one mistake."""
    target = rng.randint(5, 50)
    tools = rng.sample(entries, k=min(len(entries), rng.randint(1, 4)))
    lines = ["import asyncio", "import json", "", "results = {}"]
    while len(lines) < target - 2:
        entry = rng.choice(tools)
        call = _call(entry, rng, literals=rng.random() < 0.7)
        shape = rng.randrange(5)
        if shape == 0:
            lines += [f"first = await {call}", "results['first'] = first"]
        elif shape == 1:
            lines += [f"batch = await asyncio.gather(*[{call} for value_0 in range(3)])", "print(len(batch))"]
        elif shape == 2:
            lines += ["for item in ['a', 'b', 'c']:", f"    value = await {call}", "    results[item] = value"]
        elif shape == 3:
            lines += [
                "try:",
                f"    data = await {call}",
                "except ToolError as exc:",
                "    print(f'failed: {exc}')",
                "    data = None",
            ]
        else:
            lines += ["summary = json.dumps(results, default=str)[:200]", "print(summary)"]
    lines.append("print(json.dumps(results, default=str)[:500])")
    lines.append("len(results)")
    mistake = index % 3 == 2
    if mistake:
        lines.append(_mistake(rng, rng.choice(tools), _MISTAKES[index // 3 % len(_MISTAKES)]))
    return "\n".join(lines), mistake


def _mistake(rng: random.Random, entry: ToolEntry, kind: str) -> str:
    call = _call(entry, rng, literals=False)
    shape = object_shape(entry.input_schema)
    if kind == "tool":
        return "await " + call.replace(f".{entry.python_name}(", f".{entry.python_name}x(", 1)
    if kind == "await":
        return call
    keys = [key for key in shape.properties if _is_keyword(key)]
    if kind == "parameter" and keys:
        return "await " + call[:-1] + (", " if call[-2] != "(" else "") + f"{keys[0]}x=1)"
    required = [key for key in shape.required if _is_keyword(key)]
    if kind == "missing" and required:
        return f"await {entry.qualified_name}()"
    if kind == "literal" and required:
        return f"await {entry.qualified_name}(" + ", ".join(f"{key}=[[]]" for key in required) + ")"
    return call  # nothing to get wrong in this tool's parameters: drop the `await`


def _call(entry: ToolEntry, rng: random.Random, *, literals: bool) -> str:
    """`server.tool(key=value, ...)` with the required arguments, as valid as the schema lets us tell."""
    shape = object_shape(entry.input_schema)
    plain: list[str] = []
    odd: list[str] = []
    for key in shape.properties:
        if key not in shape.required:
            continue
        value = _example(shape.properties[key]) if literals else None
        text = "value_0" if value is None else repr(value)
        if _is_keyword(key):
            plain.append(f"{key}={text}")
        else:
            odd.append(f"{json.dumps(key)}: {text}")
    if odd:
        plain.append("**{" + ", ".join(odd) + "}")
    return f"{entry.qualified_name}({', '.join(plain)})"


def _example(schema: object) -> Any:
    """A value the schema obviously accepts (an enum member, a const, an unconstrained string or a bool), or None."""
    if not isinstance(schema, Mapping):
        return None
    if "const" in schema and isinstance(schema["const"], str | bool | int):
        return schema["const"]
    choices = schema.get("enum")
    if isinstance(choices, list):
        return choices[0] if choices and isinstance(choices[0], str | int) else None
    constrained = {"pattern", "format", "minLength", "maxLength", "not", "anyOf", "oneOf", "allOf"} & set(schema)
    if schema.get("type") == "string" and not constrained:
        return "example"
    if schema.get("type") == "boolean":
        return True
    return None


def _is_keyword(key: str) -> bool:
    return key.isidentifier() and not keyword.iskeyword(key)


if __name__ == "__main__":
    run_alone(NAME, run, markdown)
