"""The search index behind `search_api`: paraphrased queries find the right tool, filters and limits hold."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp_types import Tool

from portal_mcp.catalog.model import Catalog
from portal_mcp.catalog.search import SearchIndex, headline, mined_synonyms, server_aliases, stem, tokenize
from portal_mcp.catalog.search.query import query_tokens
from portal_mcp.catalog.search.text import document
from portal_mcp.catalog.snapshot import load_snapshot
from tests.stubs._mypy import mypy_errors


def tool(name: str, description: str, **params: str) -> Tool:
    properties: dict[str, Any] = {key: {"type": "string", "description": text} for key, text in params.items()}
    return Tool(name=name, description=description, input_schema={"type": "object", "properties": properties})


CATALOG = Catalog.build(
    {
        "github": [
            tool(
                "create_pull_request", "Create a new pull request in a GitHub repository.", head="Branch with changes"
            ),
            tool("merge_pull_request", "Merge a pull request.", pull_number="Pull request number"),
            tool("list_issues", "List issues in a GitHub repository with filtering options.", state="open or closed"),
            tool("create_issue", "Create a new issue in a GitHub repository.", title="Issue title", body="Issue body"),
            tool("get_file_contents", "Get the contents of a file or directory from a repository.", path="File path"),
            tool("search_repositories", "Search for GitHub repositories.", query="Search query"),
        ],
        "slack": [
            tool("post_message", "Post a new message to a Slack channel.", channel_id="Channel ID", text="Text"),
            tool("reply_to_thread", "Reply to a specific message thread in Slack.", thread_ts="Parent timestamp"),
            tool("list_channels", "List public channels in the workspace with pagination."),
            tool("add_reaction", "Add a reaction emoji to a message.", reaction="Emoji name without colons"),
            tool("get_channel_history", "Get recent messages from a channel.", limit="How many messages"),
        ],
        "filesystem": [
            tool("read_file", "Read the complete contents of a file from the file system.", path="Path"),
            tool("write_file", "Create a new file or completely overwrite an existing file with new content."),
            tool("list_directory", "Get a detailed listing of all files and directories in a specified path."),
            tool("move_file", "Move or rename files and directories.", source="From", destination="To"),
            tool("search_files", "Recursively search for files and directories matching a pattern."),
        ],
        "time": [
            tool(
                "get_current_time",
                "Get current time in a specific timezone.",
                timezone="IANA timezone name (e.g. 'America/New_York'). Use 'UTC' if none given.",
            ),
            tool(
                "convert_time",
                "Convert time between timezones.",
                source_timezone="Source IANA timezone name",
                time="Time to convert in 24-hour format (HH:MM)",
                target_timezone="Target IANA timezone name",
            ),
        ],
        "notes": [
            tool("createNote", "Add a note to the notebook.", title="Title"),
            tool("searchNotes", "Full-text lookup over the notebook."),
            tool("deleteNote", "Remove a note permanently."),
        ],
    }
)
INDEX = SearchIndex(CATALOG)


def top(query: str, limit: int = 3, **options: Any) -> list[str]:
    return [hit.entry.qualified_name for hit in INDEX.search(query, limit=limit, **options)]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("what time is it in Tokyo", "time.get_current_time"),
        ("convert 3pm London time to New York", "time.convert_time"),
        ("open a pull request", "github.create_pull_request"),
        ("merge the PR", "github.merge_pull_request"),
        ("file a bug report issue", "github.create_issue"),
        ("send a message to a channel", "slack.post_message"),
        ("answer in a thread", "slack.reply_to_thread"),
        ("react with an emoji", "slack.add_reaction"),
        ("show me what is in this folder", "filesystem.list_directory"),
        ("rename a file", "filesystem.move_file"),
        ("read the contents of a file", "filesystem.read_file"),
        ("find repos about machine learning", "github.search_repositories"),
    ],
)
def test_paraphrased_queries_find_the_right_tool_in_the_top_three(query: str, expected: str) -> None:
    assert expected in top(query)


def test_camel_case_tool_names_are_found_by_their_words() -> None:
    assert top("delete note", limit=1) == ["notes.deleteNote"]
    assert top("search notes", limit=1) == ["notes.searchNotes"]


def test_an_exact_tool_name_or_qualified_name_ranks_that_tool_first() -> None:
    assert top("get_file_contents", limit=1) == ["github.get_file_contents"]
    assert top("filesystem.read_file", limit=1) == ["filesystem.read_file"]
    assert top("createNote", limit=1) == ["notes.createNote"]
    assert top("  SLACK.POST_MESSAGE ", limit=1) == ["slack.post_message"]


def test_server_filter_keeps_only_that_servers_tools() -> None:
    hits = top("file", limit=10, server="github")
    assert hits
    assert all(name.startswith("github.") for name in hits)
    assert top("file", server="no_such_server") == []


def test_limit_caps_the_number_of_hits_and_scores_descend() -> None:
    hits = INDEX.search("list", limit=2)
    assert len(hits) == 2
    assert INDEX.search("list", limit=0) == []
    scores = [hit.score for hit in INDEX.search("file directory", limit=10)]
    assert scores == sorted(scores, reverse=True)


def test_blank_queries_and_queries_matching_nothing_return_nothing() -> None:
    assert INDEX.search("") == []
    assert INDEX.search("   ") == []
    assert INDEX.search("the of and") == []
    assert INDEX.search("zzyzx qwerty") == []


def test_an_empty_catalog_can_be_indexed_and_searched() -> None:
    index = SearchIndex(Catalog())
    assert len(index) == 0
    assert index.search("anything") == []


def test_tokens_split_identifiers_keep_the_whole_name_and_drop_stopwords() -> None:
    assert tokenize("getCurrentTime") == ["get", "current", "tim", "getcurrenttime"]
    assert tokenize("What is the HTTPServer status?") == ["http", "server", "httpserver", "status"]
    assert tokenize("read-only files") == ["read", "only", "read-only", "fil"]


@pytest.mark.parametrize(
    ("words", "stemmed"),
    [
        (("message", "messages"), "messag"),
        (("create", "created", "creating"), "creat"),
        (("query", "queries"), "query"),
        (("branch", "branches"), "branch"),
        (("status",), "status"),
    ],
)
def test_stemming_maps_word_forms_to_one_token(words: tuple[str, ...], stemmed: str) -> None:
    assert {stem(word) for word in words} == {stemmed}


CORPUS = Path(
    os.environ.get("PORTAL_CORPUS", Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "servers")
)
CORPUS_SET = Path(__file__).resolve().parents[1] / "benchmarks" / "search_eval" / "corpus_queries.yaml"


@pytest.fixture(scope="module")
def corpus() -> Catalog:
    if not CORPUS.is_dir():
        pytest.skip(f"corpus not found at {CORPUS}")
    listings = {}
    for path in sorted(CORPUS.glob("*.json")):
        data = json.loads(path.read_text())
        listings[data["server"]] = [Tool.model_validate(item) for item in data["tools"]]
    return Catalog.build(listings)


@pytest.fixture(scope="module")
def corpus_index(corpus: Catalog) -> SearchIndex:
    return SearchIndex(corpus)


def corpus_queries() -> list[tuple[str, list[str]]]:
    data = yaml.safe_load(CORPUS_SET.read_text(encoding="utf-8"))
    return [(str(item["query"]), [str(name) for name in item["expected"]]) for item in data["queries"]]


def test_the_corpus_set_holds_queries_and_names_only_spread_over_many_servers() -> None:
    queries = corpus_queries()
    assert len(queries) == 300
    assert len({query for query, _ in queries}) == len(queries), "a query appears twice"
    assert len({name.split(".")[0] for _, names in queries for name in names}) >= 80
    assert yaml.safe_load(CORPUS_SET.read_text(encoding="utf-8")).keys() == {"queries"}
    # Paraphrases, not the tool's name: no query says a multi-word python name as written.
    copied = [(q, n) for q, names in queries for n in names if "_" in n.split(".")[1] and n.split(".")[1] in q]
    assert copied == []


def test_every_expected_tool_of_the_corpus_set_exists_in_the_corpus(corpus: Catalog) -> None:
    unknown = [(query, name) for query, names in corpus_queries() for name in names if name not in corpus]
    assert unknown == []


@pytest.mark.parametrize(
    ("query", "server"),
    [
        ("open a pull request", "github"),
        ("create a jira issue", "atlassian"),
        ("post a message to a slack channel", "slack_ref"),
        ("take a screenshot of the page with playwright", "playwright"),
        ("create a stripe payment link", "stripe"),
        ("list pods in a kubernetes namespace", "kubernetes_containers"),
        ("current time in a timezone", "time"),
        ("search arxiv for papers", "arxiv"),
    ],
)
def test_queries_over_the_whole_corpus_hit_the_expected_server_first(
    corpus_index: SearchIndex, query: str, server: str
) -> None:
    hits = corpus_index.search(query, limit=3)
    assert hits[0].entry.server == server, [hit.entry.qualified_name for hit in hits]


REPO = Path(__file__).resolve().parents[1]
EVAL_SET = REPO / "benchmarks" / "search_eval" / "queries.yaml"


@pytest.fixture(scope="module")
def bundled() -> Catalog:
    """The bundled catalog, every snapshot in schemas/ under its file name (what the evaluation set is about)."""
    return Catalog.build({path.stem: load_snapshot(path) for path in sorted((REPO / "schemas").glob("*.json"))})


@pytest.fixture(scope="module")
def bundled_index(bundled: Catalog) -> SearchIndex:
    return SearchIndex(bundled)


def eval_queries() -> list[tuple[str, list[str]]]:
    data = yaml.safe_load(EVAL_SET.read_text(encoding="utf-8"))
    return [(str(item["query"]), [str(name) for name in item["expected"]]) for item in data["queries"]]


def test_every_expected_tool_of_the_evaluation_set_exists_in_the_bundled_catalog(bundled: Catalog) -> None:
    queries = eval_queries()
    unknown = [(query, name) for query, names in queries for name in names if name not in bundled]
    assert unknown == []
    assert len(queries) >= 150
    assert len({query for query, _ in queries}) == len(queries), "a query appears twice"
    assert len({name.split(".")[0] for _, names in queries for name in names}) >= 15


def test_evaluation_queries_are_paraphrases_not_tool_names(bundled: Catalog) -> None:
    # One-word names ("echo", "find") are plain words a user says anyway; longer ones must not be copied.
    copied = [
        (query, name)
        for query, names in eval_queries()
        for name in names
        if (entry := bundled.get(name)) is not None
        and "_" in entry.python_name
        and entry.python_name.lower() in query.lower().replace(" ", "_")
    ]
    assert copied == []


def test_recall_at_5_on_the_evaluation_set_is_at_least_90_percent(bundled_index: SearchIndex) -> None:
    queries = eval_queries()
    misses = []
    for query, names in queries:
        found = [hit.entry.qualified_name for hit in bundled_index.search(query, limit=5)]
        if not set(found) & set(names):
            misses.append(query)
    recall = 1 - len(misses) / len(queries)
    assert recall >= 0.9, f"recall@5 {recall:.3f}; missed: {misses}"


def test_a_query_naming_a_service_prefers_that_services_tools(bundled_index: SearchIndex) -> None:
    def top(query: str) -> list[str]:
        return [hit.entry.qualified_name for hit in bundled_index.search(query, limit=3)]

    for query, server, tool in [
        ("create an issue in jira", "atlassian", "jira_create_issue"),
        ("create an issue on gitlab", "gitlab", "create_issue"),
        ("create an issue on github", "github", "create_issue"),
        ("show the logs of a k8s pod", "kubernetes", "kubectl_logs"),
    ]:
        hits = top(query)
        assert all(hit.startswith(f"{server}.") for hit in hits), (query, hits)
        assert f"{server}.{tool}" in hits, (query, hits)


def test_abbreviations_and_idioms_count_like_the_words_they_stand_for(bundled_index: SearchIndex) -> None:
    def top(query: str) -> list[str]:
        return [hit.entry.qualified_name for hit in bundled_index.search(query, limit=3)]

    assert "github.create_pull_request" in top("open a PR on github")
    assert "mongodb.list_collections" in top("list collections in mongo")
    assert "filesystem.create_directory" in top("create a folder on disk")
    assert "github.add_issue_comment" in top("reply on issue 12 of the github repo")
    assert top("what kinds of issues can I file in jira")[0] == "atlassian.jira_get_project_issue_types"
    assert top("latest headlines about the election")[0] == "brave_search.brave_news_search"


def test_server_aliases_are_mined_from_names_and_prefixes_not_common_words(bundled: Catalog) -> None:
    entries = list(bundled)
    aliases = server_aliases(entries, [headline(entry) for entry in entries], [document(entry) for entry in entries])
    assert aliases["jira"] == {"atlassian"}
    assert aliases["kubectl"] == {"kubernetes"}
    assert aliases["browser"] == {"playwright"}  # no other bundled server's prose says "browser" (test_search_routing)
    assert aliases["github"] == {"github"}
    assert "tim" not in aliases  # `time` is a server, but every other server's descriptions say "time" too
    assert "fetch" not in aliases


def test_verb_synonyms_are_mined_from_how_the_catalog_names_and_describes_tools(bundled: Catalog) -> None:
    mined = mined_synonyms(bundled)
    assert "delet" in mined["remov"]
    assert "get" in mined["retriev"]
    assert "creat" in mined["add"]


@pytest.mark.skipif(not list((REPO / "sandbox").glob("*.pyi")), reason="sandbox/ holds no stubs yet")
def test_the_stubs_in_sandbox_cover_every_bundled_server_and_type_check_with_mypy(
    bundled: Catalog, tmp_path: Path
) -> None:
    stubs = sorted((REPO / "sandbox").glob("*.pyi"))
    assert {path.stem for path in stubs} == set(bundled.servers())
    for path in stubs:  # copied: mypy writes its cache next to what it checks
        shutil.copy(path, tmp_path / path.name)
    assert mypy_errors(tmp_path) == ""


def test_paths_and_urls_in_a_query_are_its_data_not_its_words(bundled_index: SearchIndex) -> None:
    # The path's words ("test", "project", "report") would otherwise match GitLab's test report tools.
    hits = bundled_index.search("Write 'done' to ./test_project_root/tests/unit/test_calculations.py", limit=1)
    assert [hit.entry.qualified_name for hit in hits] == ["filesystem.write_file"]
    hits = bundled_index.search("Read /srv/project/test/report.txt", limit=3)
    assert "filesystem.read_file" in [hit.entry.qualified_name for hit in hits]
    assert all(hit.entry.server != "gitlab" for hit in hits)
    assert query_tokens("grant read/write access to ~/notes/today.md and https://example.com/a/b") == [
        "grant",
        "read",
        "writ",
        "access",
    ]
