"""Tune the search weights on the train splits only: every set's train queries, a grid over one or two weights.

    python benchmarks/search_eval/tune.py DENSE_WEIGHT=0.5,1,1.5 SERVER_WEIGHT=0.25,0.5,1 [--model FOLDER]
    python benchmarks/search_eval/tune.py DENSE_WEIGHT=1000 SERVER_WEIGHT=0     # the vectors alone, nearly

Each weight is a module constant of `portal_mcp.catalog.search.index`, changed in this process only; the report is
recall@1, recall@5 and MRR per set on its train split, and their mean over sets (the objective: every set counts
the same, whatever its size). Test splits are never scored here. `--model FOLDER` ranks with another model in
model2vec's format (a candidate built by `tokenlearn.py --out`) instead of the bundled one; `--large` adds every set
in the large catalog (`evaluate.with_distractors`) to the report and the mean, `--corpus` every set among the shared
corpus (`NAME_corpus`, when the corpus is present). The `corpus` set (the team's queries over the shared corpus)
counts whenever the corpus is present.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

from portal_mcp.catalog.search import index as search_index
from portal_mcp.catalog.search.embeddings import EmbeddingCache, Encoder

METRICS = ("recall@1", "recall@5", "mrr")


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from search_eval.evaluate import DEPTH, evaluation_sets, identities, rank_all, score

    large, corpus = "--large" in argv, "--corpus" in argv
    argv = [arg for arg in argv if arg not in ("--large", "--corpus")]
    model = None
    if "--model" in argv:
        at = argv.index("--model")
        model, argv = argv[at + 1], argv[:at] + argv[at + 2 :]
    grid = {name: [float(value) for value in values.split(",")] for name, _, values in (a.partition("=") for a in argv)}
    for name in grid:
        if not hasattr(search_index, name):
            raise SystemExit(f"no weight {name} in portal_mcp.catalog.search.index")
    encoder = Encoder.load(model)
    indexes = [
        (
            name,
            search_index.SearchIndex(catalog, EmbeddingCache(encoder, None)),
            [q for q in queries if q.split == "train"],
            identities(catalog),
        )
        for name, _, catalog, queries in evaluation_sets(large, corpus)
    ]
    for values in itertools.product(*grid.values()):
        for name, value in zip(grid, values, strict=True):
            setattr(search_index, name, type(getattr(search_index, name))(value))
        row = []
        means = dict.fromkeys(METRICS, 0.0)
        for name, index, queries, same in indexes:
            ranked = rank_all(
                lambda text, index=index: [hit.entry.qualified_name for hit in index.search(text, limit=DEPTH)],
                queries,
            )
            metrics = score(ranked, queries, same)
            row.append(f"{name} {metrics['recall@1']:.3f}/{metrics['recall@5']:.3f}/{metrics['mrr']:.3f}")
            for metric in METRICS:
                means[metric] += metrics[metric] / len(indexes)
        setting = " ".join(f"{name}={value:g}" for name, value in zip(grid, values, strict=True))
        print(
            f"{setting:40} mean {means['recall@1']:.3f}/{means['recall@5']:.3f}/{means['mrr']:.3f}  " + "  ".join(row)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
