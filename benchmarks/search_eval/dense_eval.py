"""Score an embedding model alone (no words, no fusion): the tools ranked by cosine to the query, per set and split.

    python benchmarks/search_eval/dense_eval.py [--model FOLDER] [--split train|test] [--teacher NAME]

`--model` is a folder in model2vec's format (default: the bundled model); `--teacher` scores a sentence encoder
itself instead (`teachers.py`: minilm, mpnet, e5, e5-sym; a teacher is about the ceiling of what a static copy
distilled from it reaches). The tool's text is `dense_text`, as the index embeds it. The development loop for
`tokenlearn.py` and `contrastive.py`: train splits only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from portal_mcp.catalog.search.embeddings import Encoder  # noqa: E402
from portal_mcp.catalog.search.text import dense_text  # noqa: E402


def sets() -> list[tuple[str, list[str], list[str], list[Any]]]:
    """(name, tool names, tool texts, queries) of every set."""
    from search_eval.evaluate import Query, bundled_catalog, load_queries, synthetic_tasks
    from search_eval.external import available

    own = load_queries()
    catalog = bundled_catalog()
    found = [("own", catalog, own), ("own_tasks", catalog, synthetic_tasks(own))]
    found += [(e.name, e.catalog, [Query(t, x) for t, x in e.queries]) for e in available()]
    return [
        (name, [e.qualified_name for e in catalog], [dense_text(e) for e in catalog], queries)
        for name, catalog, queries in found
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--split", default="train", choices=["train", "test"])
    parser.add_argument("--teacher", help="a teacher's own vectors (teachers.py) instead of a static model")
    args = parser.parse_args()
    if args.teacher:
        from search_eval.teachers import load

        teacher = load(args.teacher)
        encode_queries, encode_tools = teacher.queries, teacher.tools
    else:
        encode_queries = encode_tools = Encoder.load(args.model).encode
    means, count = np.zeros(2), 0
    for name, names, texts, queries in sets():
        queries = [q for q in queries if q.split == args.split]
        tools = encode_tools(texts)
        scores = encode_queries([q.text for q in queries]) @ tools.T
        order = np.argsort(-scores, axis=1)[:, :5]
        top1 = np.mean([names[o[0]] in q.expected for o, q in zip(order, queries, strict=True)])
        top5 = np.mean([any(names[i] in q.expected for i in o) for o, q in zip(order, queries, strict=True)])
        means += (top1, top5)
        count += 1
        print(f"{name:15} {args.split} {len(queries):4} recall@1 {top1:.3f} recall@5 {top5:.3f}")
    print(f"{'mean':15} {args.split}      recall@1 {means[0] / count:.3f} recall@5 {means[1] / count:.3f}")


if __name__ == "__main__":
    main()
