"""The search evaluation set and its metrics: recall@1, recall@5 and MRR@10 over `queries.yaml`.

`python benchmarks/search_eval/evaluate.py [--split train|test|all] [--set NAME] [--words] [--misses] [--large]
[--corpus]` scores our `SearchIndex` (with the bundled embedding model unless `--words`) on every set (the own
queries over the bundled catalog, the external sets of `external.py` and, when the shared corpus is present, the
`corpus` set of `corpus_queries.yaml` over it; with `--large` each also in a catalog of about 1,100 tools, its own
plus every other set's as distractors; with `--corpus` each again with the whole shared corpus of 4,027 tools as
distractors, the judges' scale) and lists the queries whose first tool is wrong (the development loop; look at
`test` only at the end). For whole-task sets (`*_tasks`), recall@5 is the share of tasks with a needed tool in the
first 5 and needed@10 the share of a task's needed tools in the first 10.
`bench_search.py` uses the same functions for the report, over three rankers.

Copies count as the tool (`identities`): a retrieved tool with the same name and the same description (whitespace
normalised) as an expected one is a hit, in every set and variant. The bundled `schemas/`, the external sets and
the corpus hold the same servers (filesystem, playwright, tavily, ...), so in a catalog holding several copies
which one ranks first is luck, and an agent calling either gets the same thing done.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, NamedTuple

import yaml
from mcp_types import Tool

from portal_mcp.catalog.model import Catalog
from portal_mcp.catalog.snapshot import load_snapshot, parse_snapshot

HERE = Path(__file__).resolve().parent
QUERIES = HERE / "queries.yaml"
CORPUS_QUERIES = HERE / "corpus_queries.yaml"
CORPUS = Path(os.environ.get("PORTAL_CORPUS", HERE.parents[2] / "shared" / "corpus" / "servers"))
"""The shared corpus of real servers' tools/list captures (one JSON file per server, its tools under "tools"): the
judges' catalog. Read when present, never copied into the repo; `$PORTAL_CORPUS` points elsewhere."""
SCHEMAS = HERE.parents[1] / "schemas"
TEST_SHARE = 3  # in tenths: ~30% of queries are held out
DEPTH = 10  # rankings are cut here; MRR is MRR@10

Split = Literal["train", "test"]
Ranker = Callable[[str], Sequence[str]]
"""A query -> qualified tool names, best first."""


@dataclass(frozen=True)
class Query:
    text: str
    expected: tuple[str, ...]
    fixed: Split | None = None
    """The split of a query made from others (`synthetic_tasks`): theirs, not one by its own hash."""

    @property
    def split(self) -> Split:
        return self.fixed or split_of(self.text)


def split_of(text: str) -> Split:
    """Train or held-out test, fixed by a hash of the query text (nobody picks which queries are hard)."""
    return "test" if zlib.crc32(text.encode()) % 10 < TEST_SHARE else "train"


class EvalSet(NamedTuple):
    name: str
    source: str
    catalog: Catalog
    queries: list[Query]


def load_queries(path: Path = QUERIES) -> list[Query]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [Query(str(item["query"]), tuple(str(name) for name in item["expected"])) for item in data["queries"]]


TASK_SIZES = (2, 3, 4, 3)
CONNECTORS = (", then ", " and ", ". ", "; ", ", and also ", ". After that, ", " and then ", ", and ")


def synthetic_tasks(queries: Sequence[Query]) -> list[Query]:
    """Whole tasks made from the own queries: each split's queries (in hash order, so nobody picks them) joined
    2 to 4 at a time by the connectors agents write ("then", "and", a new sentence), needing the first expected
    tool of each. Tasks made of train queries are train, of test queries test. A stand-in for long agent tasks over
    real servers; the connectors are general, but the queries were written by the team."""
    tasks = []
    for split in ("train", "test"):
        ordered = sorted((q for q in queries if q.split == split), key=lambda q: zlib.crc32(q.text.encode()))
        start = number = 0
        while start + 2 <= len(ordered):
            parts = ordered[start : start + TASK_SIZES[number % len(TASK_SIZES)]]
            text = parts[0].text
            for offset, part in enumerate(parts[1:]):
                text += CONNECTORS[(number + offset) % len(CONNECTORS)] + part.text
            expected = tuple(dict.fromkeys(part.expected[0] for part in parts))
            tasks.append(Query(text[0].upper() + text[1:] + ".", expected, split))
            start += len(parts)
            number += 1
    return tasks


def bundled_catalog() -> Catalog:
    """Every snapshot in schemas/ under its file name, as the bundled config serves them."""
    return Catalog.build({path.stem: load_snapshot(path) for path in sorted(SCHEMAS.glob("*.json"))})


def corpus_listings(folder: Path = CORPUS) -> dict[str, list[Tool]]:
    """The shared corpus's tools by server (named by their file names); empty when the corpus is absent."""
    listings = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        data = json.loads(path.read_text(encoding="utf-8"))
        listings[path.stem] = parse_snapshot(json.dumps({"tools": data["tools"]}), source=str(path))
    return listings


def corpus_catalog(folder: Path = CORPUS) -> Catalog | None:
    """The shared corpus as one catalog, or None when it is absent."""
    listings = corpus_listings(folder)
    return Catalog.build(listings) if listings else None


LARGE = "_large"
"""Suffix of a set ranked in the large catalog (`with_distractors`)."""
AT_CORPUS = "_corpus"
"""Suffix of a set ranked with the whole shared corpus as distractors."""
MIXED = "_mixed"
"""Suffix of a cross-lingual set ranked among the bundled catalog's English tools."""
CORPUS_SET = "corpus"
CORPUS_SOURCE = (
    "corpus_queries.yaml over the shared 4,027-tool corpus: written by the team (a proxy for the judges' agent-style "
    "queries, not a judge), target tools chosen by a hash of server.tool"
)


def with_distractors(catalog: Catalog, others: Sequence[Catalog]) -> Catalog:
    """`catalog` plus every tool of `others` as distractors: a stand-in for big catalogs where several servers do
    the same job (two filesystem servers, three search engines). A distractor server whose name is taken gets a
    suffix; a query still counts only its own set's expected tools, even when a distractor could do the job too."""
    taken = set(catalog.servers())
    entries = list(catalog)
    for other in others:
        renamed = {}
        for server in other.servers():
            name = server
            while name in taken:
                name += "_alt"
            renamed[server] = name
        taken |= set(renamed.values())
        entries += [replace(entry, server=renamed[entry.server]) for entry in other]
    return Catalog(entries)


def evaluation_sets(large: bool = True, corpus: bool = False) -> list[EvalSet]:
    """Every set: the own queries over the bundled catalog, the same joined into whole tasks, the external sets
    present (`external.available`) and, when the shared corpus is present (`CORPUS`), `corpus` (the team's queries
    over it). With `large`, each set but `corpus` again in a large catalog (`NAME_large`): its own tools plus every
    other such set's as distractors (`with_distractors`); with `corpus`, each set but `corpus` again with the whole
    shared corpus as distractors (`NAME_corpus`), skipped when the corpus is absent. Last, the cross-lingual sets
    (`external.cross_lingual`: English queries over tools described in Chinese, or Chinese queries over English
    tools, each translated query in its original's split), alone and, with `large`, among the bundled catalog's
    English tools (`NAME_mixed`), and the own queries with their tools as distractors (`own_with_NAME`)."""
    from search_eval.external import available, cross_lingual

    own = load_queries()
    bundled = bundled_catalog()
    sets = [
        EvalSet("own", "queries.yaml (written by the team)", bundled, own),
        EvalSet("own_tasks", "queries.yaml joined into whole tasks (`synthetic_tasks`)", bundled, synthetic_tasks(own)),
    ]
    for external in available():
        queries = [Query(text, expected) for text, expected in external.queries]
        sets.append(EvalSet(external.name, f"{external.source}, {external.licence}", external.catalog, queries))
    shared = corpus_catalog()
    result = list(sets)
    if shared is not None:
        result.append(EvalSet(CORPUS_SET, CORPUS_SOURCE, shared, load_queries(CORPUS_QUERIES)))
    if large:
        # Sets sharing a catalog (own and own_tasks, metatool and metatool_tasks) count it once.
        catalogs = {_tools(catalog): catalog for _, _, catalog, _ in sets}
        for name, source, catalog, queries in sets:
            others = [other for key, other in catalogs.items() if key != _tools(catalog)]
            note = f"{source}; with every other set's tools as distractors"
            result.append(EvalSet(name + LARGE, note, with_distractors(catalog, others), queries))
    if corpus and shared is not None:
        for name, source, catalog, queries in sets:
            note = f"{source}; with the shared corpus ({len(shared)} tools) as distractors"
            result.append(EvalSet(name + AT_CORPUS, note, with_distractors(catalog, [shared]), queries))
    for external in cross_lingual():
        originals = external.originals
        queries = [
            Query(text, expected, split_of(originals[text]) if text in originals else None)
            for text, expected in external.queries
        ]
        result.append(EvalSet(external.name, f"{external.source}, {external.licence}", external.catalog, queries))
        if large:
            note = f"{external.source}; among the bundled catalog's {len(bundled)} English tools"
            result.append(EvalSet(external.name + MIXED, note, with_distractors(external.catalog, [bundled]), queries))
            note = f"queries.yaml (written by the team), with {external.name}'s tools as distractors"
            result.append(
                EvalSet(f"own_with_{external.name}", note, with_distractors(bundled, [external.catalog]), own)
            )
    return result


def _tools(catalog: Catalog) -> tuple[str, ...]:
    return tuple(entry.qualified_name for entry in catalog)


Identities = Mapping[str, str]
"""Qualified name -> what makes a tool the same tool (`identities`); a name not in it is its own."""


def identities(catalog: Catalog) -> dict[str, str]:
    """Each tool's identity: its name and its description with whitespace normalised. Tools of different servers
    with the same identity are copies of one tool (`filesystem.read_file` and `filesystem_alt.read_file`), and
    the scoring counts a copy of an expected tool as that tool."""
    return {entry.qualified_name: f"{entry.name}\n{' '.join(entry.description.split())}" for entry in catalog}


def _same(ranking: Sequence[str], expected: Iterable[str], same: Identities) -> tuple[list[str], set[str]]:
    """The ranking and the expected tools as identities, each identity's copies after the first left out."""
    keys = list(dict.fromkeys(same.get(name, name) for name in ranking))
    return keys, {same.get(name, name) for name in expected}


def first_rank(ranking: Sequence[str], expected: Iterable[str], same: Identities | None = None) -> int | None:
    """1-based position of the first expected tool (or a copy of one, by `same`) in the ranking, or None."""
    keys, wanted = _same(ranking, expected, same or {})
    return next((position for position, key in enumerate(keys, 1) if key in wanted), None)


def score(
    rankings: Mapping[str, Sequence[str]], queries: Sequence[Query], same: Identities | None = None
) -> dict[str, float]:
    """recall@1, recall@5 (a query counts when any expected tool is in the first k), MRR@10, nDCG@10 (every
    expected tool relevant) and needed@10 (the share of a query's expected tools in the first 10, averaged).
    A copy of an expected tool (`identities`) counts as it; further copies of one tool in a ranking are dropped."""
    same = same or {}
    n = len(queries) or 1
    ranks, gains, needed = [], 0.0, 0.0
    for query in queries:
        keys, wanted = _same(rankings[query.text][:DEPTH], query.expected, same)
        ranks.append(next((position for position, key in enumerate(keys, 1) if key in wanted), None))
        gains += ndcg(keys, wanted)
        needed += len(set(keys) & wanted) / len(wanted)
    return {
        "queries": len(queries),
        "recall@1": sum(1 for rank in ranks if rank == 1) / n,
        "recall@5": sum(1 for rank in ranks if rank is not None and rank <= 5) / n,
        "mrr": sum(1 / rank for rank in ranks if rank is not None) / n,
        "ndcg@10": gains / n,
        "needed@10": needed / n,
    }


def ndcg(ranking: Sequence[str], expected: Iterable[str]) -> float:
    wanted = set(expected)
    gain = sum(1 / math.log2(position + 1) for position, name in enumerate(ranking, 1) if name in wanted)
    ideal = sum(1 / math.log2(position + 1) for position in range(1, min(len(wanted), DEPTH) + 1))
    return gain / ideal if ideal else 0.0


def by_split(
    rankings: Mapping[str, Sequence[str]], queries: Sequence[Query], same: Identities | None = None
) -> dict[str, dict[str, float]]:
    """Scores on the train split, the held-out test split and all queries."""
    return {
        "train": score(rankings, [q for q in queries if q.split == "train"], same),
        "test": score(rankings, [q for q in queries if q.split == "test"], same),
        "all": score(rankings, queries, same),
    }


def rank_all(ranker: Ranker, queries: Sequence[Query]) -> dict[str, list[str]]:
    return {query.text: list(ranker(query.text))[:DEPTH] for query in queries}


def _ranker(index: Any) -> Ranker:
    return lambda text: [hit.entry.qualified_name for hit in index.search(text, limit=DEPTH)]


def main(argv: list[str]) -> int:
    from portal_mcp.catalog.search import SearchIndex
    from portal_mcp.catalog.search.embeddings import EmbeddingCache, Encoder

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", choices=["train", "test", "all"], default="train")
    parser.add_argument("--set", default="all", help="own, an external set's name, or all (the default)")
    parser.add_argument("--words", action="store_true", help="without the embedding model (semantic: false)")
    parser.add_argument("--misses", action="store_true", help="list queries whose first tool is not expected")
    parser.add_argument("--large", action="store_true", help="also each set in the large catalog (NAME_large)")
    parser.add_argument("--corpus", action="store_true", help="also each set among the shared corpus (NAME_corpus)")
    args = parser.parse_args(argv)
    encoder = None if args.words else Encoder.load()
    large, corpus = args.large or args.set.endswith(LARGE), args.corpus or args.set.endswith(AT_CORPUS)
    for name, _, catalog, queries in evaluation_sets(large, corpus):
        if args.set not in ("all", name):
            continue
        queries = [q for q in queries if args.split == "all" or q.split == args.split]
        index = SearchIndex(catalog, None if encoder is None else EmbeddingCache(encoder, None))
        rankings = rank_all(_ranker(index), queries)
        same = identities(catalog)
        scores = score(rankings, queries, same)
        print(
            f"{name} ({len(catalog)} tools)",
            " ".join(f"{key} {value:.3f}" for key, value in scores.items() if key != "queries"),
            flush=True,
        )
        if args.misses:
            for query in queries:
                rank = first_rank(rankings[query.text], query.expected, same)
                if rank is None or rank > 1:
                    print(f"{rank or '-':>2} {query.text!r} want {', '.join(query.expected)}")
                    print(f"     got {', '.join(rankings[query.text][:5])}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    raise SystemExit(main(sys.argv[1:]))
