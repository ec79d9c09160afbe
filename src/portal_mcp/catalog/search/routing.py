"""Which servers a query names: the words that name servers, mined from the catalog, and the servers a query's words
name (the index lifts their tools: `search/index.py`, "server awareness").

A word names a server when it is a word of the server's name, or the word most of its tools' names start with
(`jira_` for atlassian, `kubectl_` for kubernetes), and hardly any tool of a server not carrying it says it in its
headline (`ALIAS_PURITY`): `sqlite` and `jira` name servers, `time` and `fetch` (which every description says) do
not. Two rules keep big catalogs, where servers share words, routed:

- A word several servers carry names them all (`github` names github and github_enterprise, `aws` every aws_*
  server); the query's other words then choose among them, and a query saying more of one's name prefers it
  (`named`: "github enterprise" is github_enterprise, "aws cost explorer" aws_billing_cost).
- A name prefix that is not a word of the server's name is a name only when the catalog's prose does not use it
  either (`PREFIX_PURITY` over every tool's whole text): `kubectl` is a name, but `browser` (Playwright's
  `browser_click`) is a word other servers' descriptions say too, so it names no server by itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence

from portal_mcp.catalog.model import ToolEntry
from portal_mcp.catalog.search.words import tokenize

ALIAS_PURITY = 0.9
"""A word names the servers carrying it when at least this share of the tool headlines saying it are theirs."""
ALIAS_COVERAGE = 0.3
"""A tool-name prefix is a candidate when it starts this share of its server's tools (and at least two)."""
PREFIX_PURITY = 0.9
"""A prefix that is not a word of its server's name must also be this pure in every tool's whole text."""


def server_aliases(
    entries: Sequence[ToolEntry], headlines: Sequence[Sequence[str]], documents: Sequence[Sequence[str]]
) -> dict[str, set[str]]:
    """Words that name servers in this catalog, each with the servers it names (`headlines[i]` and `documents[i]`
    are the headline and whole text of `entries[i]`)."""
    named = {(server, word) for server in {entry.server for entry in entries} for word in tokenize(server)}
    prefixed = name_prefixes(entries) - named
    carriers: dict[str, set[str]] = {}
    for server, word in named | prefixed:
        carriers.setdefault(word, set()).add(server)
    said = _uses(entries, headlines, carriers)
    written = _uses(entries, documents, {word for server, word in prefixed})
    aliases: dict[str, set[str]] = {}
    for word, servers in sorted(carriers.items()):
        if not _pure(said.get(word, Counter()), servers, ALIAS_PURITY):
            continue
        # A prefix only (no carrier's name says it) must be a name in the prose too, not a word every server uses.
        named_by = {server for server in servers if (server, word) in named}
        if named_by or _pure(written.get(word, Counter()), servers, PREFIX_PURITY):
            aliases[word] = servers
    return aliases


def name_prefixes(entries: Sequence[ToolEntry]) -> set[tuple[str, str]]:
    """(server, word) for the words that start `ALIAS_COVERAGE` of a server's tool names (`jira` of atlassian's
    `jira_create_issue`, `browser` of Playwright's `browser_click`)."""
    size = Counter(entry.server for entry in entries)
    prefixes = Counter((entry.server, words[0]) for entry in entries if (words := tokenize(entry.name)))
    return {
        (server, word) for (server, word), count in prefixes.items() if count >= max(2, ALIAS_COVERAGE * size[server])
    }


def named(
    tokens: Sequence[str],
    aliases: Mapping[str, Collection[int]],
    names: Sequence[frozenset[str]],
    extra: Iterable[str] = (),
) -> set[int]:
    """The servers a query names by `aliases` (word -> servers), from its `tokens` in order and `extra` ones (its
    synonyms), the most specific of them: a server is left out when each phrase naming it (a run of the query's
    words of its name, `names[server]`: the words of its name and its aliases) is part of a longer one naming another
    server. So "github enterprise" names github_enterprise, not github too, and "aws cost explorer" aws_billing_cost
    of every aws_* server; "security" away from "aws" in a query does not choose aws_well_architected_security.
    """
    extra = [token for token in extra if token in aliases]
    found = {server for token in (*tokens, *extra) for server in aliases.get(token, ())}
    phrases = {
        server: _phrases(tokens, names[server], aliases, server)
        | {frozenset([t]) for t in extra if server in aliases[t]}
        for server in found
    }
    return {
        server
        for server in found
        if not all(any(phrase < longer for other in found for longer in phrases[other]) for phrase in phrases[server])
    }


def _phrases(
    tokens: Sequence[str], name: frozenset[str], aliases: Mapping[str, Collection[int]], server: int
) -> set[frozenset[str]]:
    """The runs of consecutive `tokens` that are words of `name`, holding a word that names `server`."""
    phrases: set[frozenset[str]] = set()
    run: list[str] = []
    for token in (*tokens, None):
        if token is not None and token in name:
            run.append(token)
            continue
        if any(server in aliases.get(word, ()) for word in run):
            phrases.add(frozenset(run))
        run = []
    return phrases


def _uses(
    entries: Sequence[ToolEntry], texts: Sequence[Sequence[str]], words: Collection[str]
) -> dict[str, Counter[str]]:
    """For each of `words`, how many tools of each server say it in their text."""
    uses: dict[str, Counter[str]] = {}
    for entry, tokens in zip(entries, texts, strict=True):
        for token in set(tokens).intersection(words):
            uses.setdefault(token, Counter())[entry.server] += 1
    return uses


def _pure(used: Counter[str], servers: Collection[str], purity: float) -> bool:
    """Whether at most `1 - purity` of the tools saying a word are of servers other than `servers`."""
    total = used.total()
    return total - sum(used[server] for server in servers) <= (1 - purity) * total
