"""Hard negatives for `contrastive.py --hard K`: for each (query, tool) pair, tools like its tool that it does not need.

Why: most first-place misses on the shared corpus are siblings (the right server, the wrong tool of it:
`get_job_status` against `control_job`), and the in-batch negatives of a source of thousands of tools almost never
hold a sibling of the positive, so the in-batch loss never asks the model to tell siblings apart.

A pair's candidates, in this order, `pool` of them at most:
- its group, nearest the positive first (by the start model's vectors): the other tools of the positive's server
  (own, mcptoolbench: the qualified name's server), ToolAlpaca's other functions of the same API, BFCL's other
  candidate functions listed with the question (its "multiple" kinds);
- then the source's catalog, nearest the positive first (Seal-Tools and MetaTool have no servers to go by).
Every positive of the query (all its pairs of the source, not only the batch's) and every text equal to the
positive are left out, so a tool the query also needs is never pushed away. Public sets retell one function many
times (BFCL's `solve_quadratic` and `solve_quadratic_equation`), so the nearest tools are often the positive
under another name: `margin` keeps only candidates the query is less similar to than that share of its positive
(NV-Retriever's positive-aware mining, 0.95 there), and `fill=False` keeps the groups alone. `contrastive.train` draws K of a pair's
candidates at each step (the seeded generator: the same command writes the same file).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Pair = tuple[str, str]
POOL = 10
"""Candidates kept per pair; K of them are drawn at each step, so repeated epochs see different ones."""


def mine(
    encode: Any,
    pairs: Sequence[Pair],
    catalog: Sequence[str],
    groups: Mapping[Pair, Sequence[str]],
    pool: int = POOL,
    fill: bool = True,
    margin: float | None = None,
) -> dict[Pair, list[str]]:
    """Each pair's hard-negative candidates (texts), nearest the positive first: its group, then (`fill`) the
    catalog; with `margin`, only those the query is less similar to than `margin` times its positive."""
    positives = positives_of(pairs)
    texts = sorted(set(catalog) | {t for _, t in pairs} | {t for group in groups.values() for t in group})
    row = {text: i for i, text in enumerate(texts)}
    vectors = encode(texts)
    queries = sorted({query for query, _ in pairs})
    asked = dict(zip(queries, encode(queries), strict=True))
    columns = np.array([row[text] for text in dict.fromkeys(catalog)])
    tools = sorted({tool for _, tool in pairs})
    nearest: dict[str, list[str]] = {}
    depth = pool + 16  # room for the positives a query leaves out
    for start in range(0, len(tools), 512):
        chunk = tools[start : start + 512]
        scores = vectors[[row[t] for t in chunk]] @ vectors[columns].T
        top = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
        for tool, order in zip(chunk, top, strict=True):
            nearest[tool] = [texts[columns[i]] for i in order]
    mined: dict[Pair, list[str]] = {}
    for query, tool in pairs:
        ceiling = np.inf if margin is None else margin * float(asked[query] @ vectors[row[tool]])

        def fits(text: str, query: str = query, tool: str = tool, ceiling: float = ceiling) -> bool:
            return text not in positives[query] and text != tool and float(asked[query] @ vectors[row[text]]) < ceiling

        group = [t for t in dict.fromkeys(groups.get((query, tool), ())) if fits(t)]
        if len(group) > 1:
            similarity = vectors[[row[t] for t in group]] @ vectors[row[tool]]
            group = [group[i] for i in np.argsort(-similarity, kind="stable")]
        chosen = group[:pool]
        for text in nearest[tool] if fill else ():
            if len(chosen) >= pool:
                break
            if fits(text) and text not in chosen:
                chosen.append(text)
        mined[(query, tool)] = chosen
    return mined


def positives_of(pairs: Sequence[Pair]) -> dict[str, set[str]]:
    """Each query's positives: every tool it is paired with."""
    found: dict[str, set[str]] = {}
    for query, tool in pairs:
        found.setdefault(query, set()).add(tool)
    return found
