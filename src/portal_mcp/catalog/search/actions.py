"""What a tool does to its object, and whether the query asked for that: the action verbs of search.

Tools over one object differ by their verb (`jira_add_comment`, `jira_edit_comment`; `add_watcher`,
`remove_watcher`; `get_issue`, `create_issue`), and an agent's query often says the object only ("comment on a
jira issue", "subscribe me to updates on a ticket") or asks in its own words ("file a ticket"). Words and meaning
then tie, and the tie goes to whichever tool's text happens to be closer. Two rules break it:

- changing, removing or stopping something (`MUST_ASK`) has to be asked for, in the query's words or synonyms;
- a query asking to make or change something does not want a tool that only reads. (The converse, a query
  asking to read against a tool that makes things, lost on the train splits: "open a pull request".)
- a question ("which policy engines have we set up", "what is DEPLOY_ENV set to", "is the export finished") asks
  to read whatever verbs it says: they describe what was done, not what to do, so no tool that makes, changes,
  removes or stops things fits it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from portal_mcp.catalog.model import ToolEntry
from portal_mcp.catalog.search.words import WORD, tokenize

VERBS = {
    "read": "get list read fetch search find query show describe view retrieve look see display check lookup",
    "create": "create add new make insert post send write upload submit save report leave put",
    "update": "update edit modify change set patch rename alter replace overwrite",
    "delete": "delete remove drop erase destroy purge clear unset detach unassign unlink revoke",
    "stop": "stop cancel abort kill halt pause terminate disable end",
}
ACTIONS: Mapping[str, str] = {word: action for action, words in VERBS.items() for word in tokenize(words)}
"""Index token -> the action it names."""
MUST_ASK = frozenset({"update", "delete", "stop"})
QUESTIONS = frozenset({"what", "which", "who", "how", "whether", "is", "are", "does", "do"})
"""Words that open a question: a query starting with one asks to read, and only to read."""
QUESTION = frozenset({"read", "question"})
"""What a question asks for (`asked`): "question" marks it as asking to read only."""


def tool_action(entry: ToolEntry) -> str | None:
    """The action of the first verb in the tool's name (`jira_edit_comment` -> update: a server prefix is no
    verb); for a name without one, reading when the tool declares itself read-only (`readOnlyHint`: `board_insights`,
    `budget_notifications`); else None (`take_screenshot`, `convert_time`)."""
    for word in tokenize(entry.name.replace("-", "_")):
        if word in ACTIONS:
            return ACTIONS[word]
    if entry.annotations.get("readOnlyHint") is True:
        return "read"
    return None


def asked(query: str, tokens: Iterable[str]) -> frozenset[str]:
    """The actions a query asks for: those its tokens (its own words, equivalents and related words) name, or
    `QUESTION` when it opens with a question word."""
    words = WORD.findall(query.lower())
    if words and words[0] in QUESTIONS:
        return QUESTION
    return frozenset(ACTIONS[token] for token in tokens if token in ACTIONS)


def unasked(action: str | None, wanted: frozenset[str]) -> bool:
    """True when a tool doing `action` is not what a query asking for `wanted` means."""
    if wanted == QUESTION:
        return action is not None and action != "read"
    if action in MUST_ASK:
        return action not in wanted
    return action == "read" and bool(wanted) and "read" not in wanted
