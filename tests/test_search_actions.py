"""Names in search: a tool that changes, removes or stops something is found when the query asks for that, a query
asking to make something prefers the tool that makes it over the one that reads it, a question prefers tools that
read whatever verbs it says, and a name the query says as written (plural and all) beats one that only shares its
stems; the words of asking politely ask for nothing."""

from __future__ import annotations

from typing import Any

import pytest
from mcp_types import Tool, ToolAnnotations

from portal_mcp.catalog.model import Catalog
from portal_mcp.catalog.search import SearchIndex
from portal_mcp.catalog.search.actions import QUESTION, asked, tool_action, unasked
from portal_mcp.catalog.search.query import query_tokens
from portal_mcp.catalog.search.words import forms, tokenize


def tool(name: str, description: str) -> Tool:
    schema: dict[str, Any] = {"type": "object", "properties": {}}
    return Tool(name=name, description=description, input_schema=schema)


CATALOG = Catalog.build(
    {
        "jira": [
            tool("jira_edit_comment", "Edit a comment on a Jira issue."),
            tool("jira_add_comment", "Add a comment to a Jira issue."),
            tool("jira_remove_watcher", "Remove a user from the watchers of a Jira issue."),
            tool("jira_add_watcher", "Add a user as a watcher of a Jira issue."),
            tool("jira_get_issue", "Get the details of a Jira issue: status, assignee, comments."),
            tool("jira_create_issue", "Create a Jira issue."),
        ],
        "video": [
            tool("stop_video", "Stop the video recording of the browser session."),
            tool("start_video", "Start a video recording of the browser session."),
        ],
    }
)


def first(query: str) -> str:
    return SearchIndex(CATALOG).search(query, limit=1)[0].entry.qualified_name


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("comment on a jira issue", "jira.jira_add_comment"),
        ("edit my comment on a jira issue", "jira.jira_edit_comment"),
        ("watcher of a jira issue", "jira.jira_add_watcher"),
        ("remove a watcher from a jira issue", "jira.jira_remove_watcher"),
        ("record the browser session as a video", "video.start_video"),
        ("stop recording the video", "video.stop_video"),
        ("file a new jira issue for the login bug", "jira.jira_create_issue"),
        ("what is the status of a jira issue", "jira.jira_get_issue"),
    ],
)
def test_a_tool_that_changes_removes_or_stops_comes_first_only_when_the_query_asks_for_that(
    query: str, expected: str
) -> None:
    assert first(query) == expected


def test_a_tools_action_is_its_names_first_verb_past_a_server_prefix() -> None:
    actions = {entry.name: tool_action(entry) for entry in CATALOG}
    assert actions["jira_edit_comment"] == "update"
    assert actions["jira_remove_watcher"] == "delete"
    assert actions["stop_video"] == "stop"
    assert actions["jira_get_issue"] == "read"
    assert actions["jira_add_comment"] == "create"


def test_a_name_without_a_verb_reads_when_the_tool_declares_itself_read_only() -> None:
    def action(name: str, read_only: bool | None) -> str | None:
        hints = None if read_only is None else ToolAnnotations(read_only_hint=read_only)
        listed = Tool(name=name, description="", input_schema={"type": "object"}, annotations=hints)
        return tool_action(next(iter(Catalog.build({"s": [listed]}))))

    assert action("board_insights", True) == "read"
    assert action("board_insights", False) is None
    assert action("board_insights", None) is None
    assert action("delete_board", True) == "delete"


def test_a_question_asks_to_read_only_and_verbs_or_their_synonyms_ask_for_their_action() -> None:
    assert asked("which users watch this issue", ["user", "watch", "issue"]) == QUESTION
    assert asked("which issues did we create", ["issu", "creat"]) == QUESTION
    assert asked("get rid of the comment", ["delet", "comment"]) == {"delete"}
    assert asked("comment on the issue", ["comment", "issue"]) == frozenset()


def test_reading_is_unasked_only_when_the_query_asks_for_something_else() -> None:
    assert unasked("read", frozenset({"create"}))
    assert not unasked("read", frozenset())
    assert not unasked("read", frozenset({"create", "read"}))
    assert unasked("delete", frozenset())
    assert not unasked("delete", frozenset({"delete"}))
    assert not unasked("create", frozenset({"read"}))


def test_a_question_leaves_out_every_tool_that_makes_changes_removes_or_stops() -> None:
    assert not unasked("read", QUESTION)
    assert not unasked(None, QUESTION)
    assert all(unasked(action, QUESTION) for action in ("create", "update", "delete", "stop"))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("the open pull requests of a repository", "github.pull_requests"),
        ("that pull request of a repository", "github.pull_request"),
    ],
)
def test_a_name_the_query_says_as_written_beats_one_sharing_only_its_stems(query: str, expected: str) -> None:
    same = "Pull requests of a repository."
    catalog = Catalog.build({"github": [tool("pull_request", same), tool("pull_requests", same)]})
    assert SearchIndex(catalog).search(query, limit=1)[0].entry.qualified_name == expected


def test_the_forms_of_a_name_are_its_words_as_written() -> None:
    assert forms("list_pullRequests") == {"list", "pull", "requests"}
    assert forms("show me the open pull requests") >= {"pull", "requests"}


def test_asking_politely_is_not_what_is_asked_for() -> None:
    catalog = Catalog.build(
        {
            "docs": [tool("help_center", "Help and assistance articles.")],
            "news": [tool("headlines", "Latest news headlines about a topic.")],
        }
    )
    hits = SearchIndex(catalog).search("hi, can you help me with the latest news headlines", limit=5)
    assert [hit.entry.qualified_name for hit in hits] == ["news.headlines"]
    assert query_tokens("kindly help me find news") == ["find", "news"]
    assert tokenize("help") == ["help"]
