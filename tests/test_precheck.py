"""The pre-run check: wrong tool calls are reported with their line before anything runs, valid code never is."""

from __future__ import annotations

import json
import keyword
import logging
import random
import textwrap
from typing import Any

import pytest
from inline_snapshot import snapshot
from mcp_types import CallToolResult, Tool

from portal_mcp.catalog.model import Catalog
from portal_mcp.catalog.schemas import Validators, object_shape
from portal_mcp.catalog.snapshot import load_snapshot
from portal_mcp.config import LimitsConfig, bundled_schemas_dir
from portal_mcp.control.audit import MemoryAuditSink
from portal_mcp.control.budgets import Budgets
from portal_mcp.control.credentials import Redactor
from portal_mcp.control.principal import Principal
from portal_mcp.errors import ArgumentError
from portal_mcp.runs.bridge import Bridge, Caller
from portal_mcp.runs.precheck import MAX_PROBLEMS, Problem, check_code, render

STRING = {"type": "string"}
INTEGER = {"type": "integer"}


def tool(name: str, properties: dict[str, Any], required: tuple[str, ...] = (), **extra: Any) -> Tool:
    schema = {"type": "object", "properties": properties, "required": list(required), **extra}
    return Tool(name=name, description=f"{name} tool", input_schema=schema)


CATALOG = Catalog.build(
    {
        "github": [
            tool(
                "create_issue",
                {
                    "owner": STRING,
                    "repo": STRING,
                    "title": STRING,
                    "body": STRING,
                    "labels": {"type": "array", "items": STRING},
                    "state": {"type": "string", "enum": ["open", "closed"]},
                    "milestone": INTEGER,
                },
                ("owner", "repo", "title"),
                additionalProperties=False,
            ),
            tool("list_issues", {"owner": STRING, "repo": STRING, "per_page": INTEGER}, ("owner", "repo")),
            tool("search_code", {"q": STRING}, ("q",)),
        ],
        "calendar": [
            tool("create_event", {"from": STRING, "end-time": STRING, "title": STRING}, ("from", "title")),
            tool("list_events", {}),
            tool("tag", {"name": STRING}, ("name",), additionalProperties=True),
            tool("annotate", {"name": STRING}, ("name",), patternProperties={"^x-": STRING}),
        ],
        "files": [tool("read_file", {"path": STRING, "head": {"type": "number"}}, ("path",))],
        # `minimum` must be a number: the schema fails check_schema, so the bridge validates nothing against it.
        "legacy": [tool("resize", {"width": {"type": "integer", "minimum": "zero"}})],
    }
)


def check(code: str) -> list[Problem]:
    return check_code(textwrap.dedent(code).strip("\n"), CATALOG)


def found(code: str) -> list[tuple[int, str, str]]:
    """(line, rule, message) of each problem: what a reader of the reply sees."""
    return [(problem.line, problem.rule, problem.message) for problem in check(code)]


VALID_SNIPPETS = {
    "gather fan-out": """
        import asyncio
        repos = ["portal", "docs", "site"]
        issues = await asyncio.gather(*[github.list_issues(owner="acme", repo=r) for r in repos])
        print(sum(len(batch) for batch in issues))
    """,
    "gather over a generator and wait_for": """
        import asyncio
        paths = ["a.txt", "b.txt"]
        texts = await asyncio.gather(*(files.read_file(path=p, head=10) for p in paths))
        hit = await asyncio.wait_for(github.search_code(q="TODO"), 10)
    """,
    "loop with results used after await": """
        titles = []
        for page in range(1, 4):
            batch = await github.list_issues(owner="acme", repo="portal", per_page=50)
            titles.extend(issue["title"] for issue in batch)
            if not batch:
                break
        titles[:10]
    """,
    "comprehensions with await": """
        paths = ["a", "b"]
        texts = [await files.read_file(path=p) for p in paths]
        sizes = {p: len(await files.read_file(path=p)) for p in paths}
    """,
    "json and re": """
        import json
        import re
        hits = await github.search_code(q="TODO repo:acme/portal")
        todos = [m.group(1) for m in re.finditer(r"TODO: (.*)", json.dumps(hits))]
        print(json.dumps(todos, indent=2), re.sub(r"\\s+", " ", "a  b"))
    """,
    "local names shadowing servers": """
        import calendar
        files = ["a.txt", "b.txt"]
        days = calendar.monthrange(2026, 2)
        files.append("c.txt")
        print(files.count("a.txt"), days)
        def summarize(github):
            return github.create_issue(titel="the parameter is a local object, not the server")
    """,
    "kwargs splat": """
        base = {"owner": "acme", "repo": "portal"}
        await github.create_issue(**base, title="Broken login")
        await github.list_issues(**base)
    """,
    "odd parameter names through a literal splat": """
        await calendar.create_event(title="Standup", **{"from": "09:00", "end-time": "09:15"})
    """,
    "nested awaits": """
        issue = await github.create_issue(
            owner="acme", repo="portal", title=(await files.read_file(path="TITLE"))["text"][:80]
        )
        print(f"created {(await github.list_issues(owner='acme', repo='portal'))[0]}")
    """,
    "pending calls collected, then gathered": """
        import asyncio
        tasks = []
        for repo in ["a", "b"]:
            tasks.append(github.list_issues(owner="acme", repo=repo))
        pending = github.search_code(q="x")
        done = await asyncio.gather(*tasks, pending)
    """,
    "helpers that return or await calls": """
        def issues_of(repo):
            return github.list_issues(owner="acme", repo=repo)
        fetch = lambda q: github.search_code(q=q)
        async def safe_read(path):
            try:
                return await files.read_file(path=path)
            except ToolError as exc:
                return f"failed: {exc}"
        first = await issues_of("portal")
        found = await fetch("TODO")
        text = await safe_read("notes.md")
        either = await (github.search_code(q="a") if first else files.read_file(path="b"))
    """,
    "values that are not literals are left to the bridge": """
        count = "50"
        await github.list_issues(owner="acme", repo="portal", per_page=count)
        await github.create_issue(owner="acme", repo="portal", title=f"{count} issues", milestone=int(count))
    """,
    "None omits an optional argument": """
        await github.list_issues(owner="acme", repo="portal", per_page=None)
    """,
    "literals the schema accepts": """
        await github.create_issue(
            owner="acme", repo="portal", title="x", labels=["bug", "ui"], state="closed", milestone=-3
        )
        await files.read_file(path="a", head=2.5)
        await github.list_issues(owner="acme", repo="portal", per_page=20.0)
    """,
    "extra keys where the schema accepts them": """
        await calendar.tag(name="x", colour="red")
        await calendar.annotate(name="x", **{"x-colour": "red"})
        await calendar.list_events(since="today")
    """,
    "a tool reached by subscript": """
        await github["search_code"](q="x")
    """,
    "an invalid literal against a schema the bridge does not use": """
        await legacy.resize(width="wide")
    """,
}


@pytest.mark.parametrize("code", VALID_SNIPPETS.values(), ids=VALID_SNIPPETS.keys())
def test_valid_code_reports_no_problems(code: str) -> None:
    assert check(code) == []


def test_a_call_to_an_unknown_tool_names_the_nearest_tools_and_the_line() -> None:
    assert found("""
        x = 1
        issue = await github.create_isue(owner="acme", repo="portal", title="x")
    """) == [(2, "unknown_tool", "unknown tool 'github.create_isue'; did you mean github.create_issue?")]


def test_an_unknown_tool_suggests_other_spellings_and_other_servers() -> None:
    problems = found("""
        await github.createIssue(owner="acme", repo="portal", title="x")
        await github.read_file(path="a")
        await github.delete_everything()
        make = github.create_issu
    """)
    assert problems == [
        (1, "unknown_tool", "unknown tool 'github.createIssue'; did you mean github.create_issue?"),
        (2, "unknown_tool", "unknown tool 'github.read_file'; did you mean files.read_file?"),
        (3, "unknown_tool", "unknown tool 'github.delete_everything'; use search_api to find tools"),
        (4, "unknown_tool", "unknown tool 'github.create_issu'; did you mean github.create_issue?"),
    ]


def test_a_misspelt_server_is_reported_with_the_nearest_server() -> None:
    assert found("""
        await githb.create_issue(owner="acme", repo="portal", title="x")
        await GitHub.search_code(q="x")
        await calender.nothing()
    """) == [
        (1, "unknown_server", "unknown server 'githb' in `githb.create_issue(...)`; did you mean github.create_issue?"),
        (2, "unknown_server", "unknown server 'GitHub' in `GitHub.search_code(...)`; did you mean github.search_code?"),
        (3, "unknown_server", "unknown server 'calender' in `calender.nothing(...)`; did you mean calendar?"),
    ]


def test_undefined_names_that_do_not_look_like_servers_are_left_to_the_sandbox() -> None:
    assert (
        check("""
        print(json.dumps({"a": 1}))
        await asyncio.gather(client.get("x"), session.fetch())
        re.sub("a", "b", "c")
        words = str.split("a b")
        keys = dict.fromkeys("ab")
        print(gitlab.create_issue(title="x"), math.floor(2.5))
    """)
        == []
    )


def test_an_unknown_keyword_argument_suggests_the_nearest_parameters() -> None:
    assert found("""
        await github.create_issue(owner="acme", repo="portal", titel="x")
        await github.create_issue(owner="acme", repo="portal", title="x", asignee="ada")
        await calendar.create_event(title="x", from_="09:00", end_time="10:00")
    """) == [
        (1, "unknown_argument", "github.create_issue: argument 'titel': is not a parameter of this tool; did you mean 'title'?"),
        (
            2,
            "unknown_argument",
            "github.create_issue: argument 'asignee': is not a parameter of this tool "
            "(parameters: owner, repo, title, body, labels, state, milestone)",
        ),
        (3, "unknown_argument", 'calendar.create_event: argument \'from_\': pass the parameter \'from\' as `**{"from": value}`'),
        (3, "unknown_argument", 'calendar.create_event: argument \'end_time\': pass the parameter \'end-time\' as `**{"end-time": value}`'),
    ]  # fmt: skip


def test_missing_required_arguments_are_reported_once_per_call() -> None:
    assert found("""
        await github.create_issue(owner="acme")
        await calendar.create_event(**{"end-time": "10:00"})
    """) == [
        (1, "missing_argument", "github.create_issue: arguments 'repo', 'title': are required but were not passed"),
        (2, "missing_argument", "calendar.create_event: arguments 'from', 'title': are required but were not passed"),
    ]


def test_a_splat_of_unknown_keys_turns_off_the_missing_argument_rule_but_not_the_others() -> None:
    assert found("""
        options = {"repo": "portal", "title": "x"}
        await github.create_issue(**options, ownr="acme")
    """) == [
        (2, "unknown_argument", "github.create_issue: argument 'ownr': is not a parameter of this tool; did you mean 'owner'?")
    ]  # fmt: skip


def test_positional_arguments_are_reported_with_the_keyword_form() -> None:
    assert found("""
        await github.search_code("TODO")
        await github.list_issues(*["acme", "portal"])
    """) == [
        (1, "positional_argument", "github.search_code() takes keyword arguments only; write `github.search_code(q=...)`"),
        (2, "positional_argument", "github.list_issues() takes keyword arguments only; write `github.list_issues(owner=..., repo=...)`"),
    ]  # fmt: skip


def test_a_literal_of_the_wrong_type_is_reported_at_its_keyword() -> None:
    problems = check("""
        await github.list_issues(owner="acme", repo="portal",
                                 per_page="50")
    """)
    assert problems == [
        Problem(2, 26, "github.list_issues: argument 'per_page': expected integer, got \"50\"", "invalid_value")
    ]


def test_literals_outside_an_enum_or_deep_in_a_list_name_the_field() -> None:
    assert found("""
        await github.create_issue(owner="acme", repo="portal", title="x", state="opened", labels=["bug", 3])
        await github.create_issue(owner="acme", repo=None, title="x", milestone=1.5)
        await calendar.create_event(title="x", **{"from": 9})
    """) == [
        (1, "invalid_value", 'github.create_issue: argument \'state\': must be one of "open", "closed", got "opened"'),
        (1, "invalid_value", "github.create_issue: argument 'labels.1': expected string, got 3"),
        (2, "invalid_value", "github.create_issue: argument 'repo': expected string, got null"),
        (2, "invalid_value", "github.create_issue: argument 'milestone': expected integer, got 1.5"),
        (3, "invalid_value", "calendar.create_event: argument 'from': expected string, got 9"),
    ]  # fmt: skip


class _NoDownstream:
    async def call_tool(
        self, server: str, tool: str, arguments: dict[str, Any], *, user: str, context: object = None
    ) -> CallToolResult:
        raise AssertionError("the bridge must refuse these arguments before calling downstream")

    async def ready(self, server: str) -> None:
        raise AssertionError("the bridge must refuse these arguments before waiting for a server")


@pytest.mark.parametrize(
    ("arguments", "source"),
    [
        ({"owner": "acme", "repo": "portal", "title": "x", "milestone": "3"}, 'milestone="3"'),
        ({"owner": "acme", "repo": "portal", "title": "x", "state": "done"}, 'state="done"'),
        ({"owner": "acme", "repo": "portal", "title": "x", "labels": ["a", None]}, 'labels=["a", None]'),
    ],
)
async def test_a_reported_literal_carries_the_message_the_bridge_would_give(
    arguments: dict[str, Any], source: str
) -> None:
    bridge = Bridge(
        lambda: CATALOG,
        _NoDownstream(),
        MemoryAuditSink(),
        Redactor(),
        Validators(),
        approval_timeout=5.0,
        budgets=Budgets(LimitsConfig(), max_result_bytes=2_000_000),
    )
    with pytest.raises(ArgumentError) as refused:
        await bridge.call("github.create_issue", arguments, caller=Caller(Principal.unrestricted("ada")))
    [problem] = check(f'await github.create_issue(owner="acme", repo="portal", title="x", {source})')
    assert problem.message == str(refused.value)


def test_a_bare_tool_call_statement_is_reported_as_not_awaited() -> None:
    assert found("""
        github.search_code(q="x")
        def later():
            files.read_file(path="a")
    """) == [
        (1, "not_awaited", "`github.search_code(...)` is not awaited, so the tool would not be called; write `await github.search_code(...)`"),
        (3, "not_awaited", "`files.read_file(...)` is not awaited, so the tool would not be called; write `await files.read_file(...)`"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    "line",
    [
        'print(github.search_code(q="x"))',
        'hits = github.search_code(q="x")["items"]',
        'hits = github.search_code(q="x").get("items")',
        'for hit in github.search_code(q="x"): pass',
        'if github.search_code(q="x"): pass',
        'text = f"{github.search_code(q=1)}"',
        'text = json.dumps(github.search_code(q="x"))',
        'n = len(github.search_code(q="x")) + 1',
        'ok = github.search_code(q="x") or None',
    ],
)
def test_a_pending_call_used_as_a_value_is_reported(line: str) -> None:
    rules = [problem.rule for problem in check(line)]
    assert "not_awaited" in rules
    assert all(problem.line == 1 for problem in check(line))


@pytest.mark.parametrize(
    "binding",
    [
        "github = object()",
        "import os as github",
        "from tools import github",
        "def helper(github): pass",
        "for github in []: pass",
        "try:\n    pass\nexcept Exception as github:\n    pass",
        "if (github := None): pass",
        "class github: pass",
        "squares = [1 for github in range(3)]",
        "match 1:\n    case {'a': github}: pass",
        "def helper():\n    global github",
    ],
)
def test_a_server_name_bound_anywhere_in_the_code_is_the_codes_own_object(binding: str) -> None:
    code = f'github.create_isue(titel=1)\n{binding}\nprint(github.nothing("x"))'
    assert check_code(code, CATALOG) == []


def test_a_star_import_turns_the_check_off() -> None:
    assert check("from helpers import *\nawait github.create_isue()") == []


def test_code_that_does_not_parse_is_left_to_the_sandbox() -> None:
    assert check("await github.create_isue(\n") == []
    assert check("x = 1\0") == []


def test_columns_count_characters_not_bytes() -> None:
    line = 'print("héllo → wörld"); await github.create_isue()'
    [problem] = check_code(line, CATALOG)
    assert problem.column == line.index("github") + 1


def test_problems_come_in_source_order_and_stop_at_the_limit() -> None:
    code = "\n".join(f"await github.search_code(q={n})" for n in range(MAX_PROBLEMS + 50))
    problems = check_code(code, CATALOG)
    assert len(problems) == MAX_PROBLEMS
    assert [problem.line for problem in problems] == list(range(1, MAX_PROBLEMS + 1))


def test_render_lists_each_problem_with_its_line_and_the_way_forward() -> None:
    problems = check("""
        issue = await github.create_isue(owner="acme", repo="portal", title="x")
        github.search_code(q=3)
    """)
    assert render(problems) == snapshot("""\
The code was not run: checking it against the tool stubs found 3 problems (no tool was called):
- line 1, column 15: unknown tool 'github.create_isue'; did you mean github.create_issue?
- line 2, column 1: `github.search_code(...)` is not awaited, so the tool would not be called; write `await github.search_code(...)`
- line 2, column 20: github.search_code: argument 'q': expected string, got 3
Fix the code and run it again; search_api shows each tool's stub with its exact parameters.\
""")


def test_a_long_list_of_problems_is_cut_in_the_reply() -> None:
    problems = [Problem(n, 1, f"problem {n}", "unknown_tool") for n in range(1, 31)]
    text = render(problems)
    assert "- line 20, column 1: problem 20\n- ... and 10 more\n" in text
    assert "problem 21" not in text


PATHOLOGICAL = [
    "x = " + "-" * 50_000 + "1",
    "x = " + "not " * 20_000 + "1",
    "x = " + "(" * 180 + "1" + ")" * 180,
    "await github.search_code(q=" + "[" * 150 + "]" * 150 + ")",
    "await github.search_code(q=" + "{'a': " * 90 + "1" + "}" * 90 + ")",
    "await github.search_code(q=" + "+".join(['"a"'] * 5_000) + ")",
    "x = github" + ".a" * 5_000,
    "x = " + "f(" * 150 + ")" * 150,
    "await github.list_issues(" + ", ".join(f"k{n}={n}" for n in range(3_000)) + ")",
    "x = '\ud800'\nawait github.create_isue()",
    "a = 1\rawait github.create_isue()\x0c\u2028",
    "await github.search_code(q=1e999, **{1: 2}, **{'q': b'x'})",
    "await github[0](q=1)\nawait github[...]()\ngithub.x = 1\ndel github.y",
    "async def f():\n    yield github.search_code(q=1)\n    return [x async for x in github.list_issues()]",
]


def _mutants(seed: int, count: int) -> list[str]:
    """Valid snippets with random characters deleted, duplicated or replaced."""
    rng = random.Random(seed)
    alphabet = "()[]{}:.,=*\"' \n\tawaitgithub_search_code0123456789#\\+-"
    sources = [textwrap.dedent(code).strip("\n") for code in VALID_SNIPPETS.values()]
    mutants = []
    for _ in range(count):
        text = list(rng.choice(sources))
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(len(text))
            action = rng.randrange(3)
            if action == 0:
                del text[at]
            elif action == 1:
                text.insert(at, text[at])
            else:
                text[at] = rng.choice(alphabet)
        mutants.append("".join(text))
    return mutants


def test_the_check_never_fails_on_broken_random_or_deeply_nested_code(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="portal_mcp.runs.precheck")
    for code in [*PATHOLOGICAL, *_mutants(seed=3, count=600)]:
        problems = check_code(code, CATALOG)
        assert all(isinstance(problem, Problem) and problem.line >= 1 for problem in problems)
    assert caplog.records == []


def _bundled_calls() -> list[tuple[str, Catalog]]:
    catalog = Catalog.build({path.stem: load_snapshot(path) for path in sorted(bundled_schemas_dir().glob("*.json"))})
    calls = []
    for entry in catalog:
        shape = object_shape(entry.input_schema)
        plain = [key for key in shape.properties if key in shape.required and key.isidentifier()]
        plain = [key for key in plain if not keyword.iskeyword(key)]
        odd = [key for key in shape.properties if key in shape.required and key not in plain]
        arguments = [f"{key}=value" for key in plain]
        if odd:
            arguments.append("**{" + ", ".join(f"{json.dumps(key)}: value" for key in odd) + "}")
        calls.append((f"value = 1\nresult = await {entry.qualified_name}({', '.join(arguments)})", catalog))
    return calls


def test_every_bundled_tool_called_with_its_required_arguments_passes_the_check() -> None:
    calls = _bundled_calls()
    assert calls
    reported = [(code, check_code(code, catalog)) for code, catalog in calls]
    assert [item for item in reported if item[1]] == []


def test_a_misspelt_call_without_await_names_the_tool_first() -> None:
    assert [problem.rule for problem in check('github.serch_code(q="x")')] == ["unknown_tool", "not_awaited"]


def test_code_the_parser_warns_about_is_still_checked() -> None:
    code = 'import re\nnumbers = re.findall("\\d+", "a1b22")\nx = 1 is 1\nawait github.create_isue()'
    assert [problem.rule for problem in check_code(code, CATALOG)] == ["unknown_tool"]
