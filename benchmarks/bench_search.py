"""Search: retrieval quality on the evaluation set, reply size per detail level, and speed at 10,000 tools.

Quality: recall@1, recall@5 and MRR@10 of three rankers over the bundled catalog (`schemas/`, 850 tools) on the
queries of `search_eval/queries.yaml`, split into train and a held-out test split (by a hash of the query):
  ours      `portal_mcp.catalog.search.SearchIndex`, what `search_api` uses;
  bm25      plain BM25 (bm25s defaults: its default tokenizer, no stemming, no stopwords) over name + description;
  fastmcp   FastMCP's CodeMode search (`search_eval/fastmcp_rank.py`), run in its own venv because fastmcp pins
            its own mcp; the venv is created on demand (`$PORTAL_FASTMCP_VENV`, default /tmp/fastmcp-venv) and
            this ranker is skipped with a note when it cannot be installed.
Reply size: median cl100k tokens of a 5-result `search_api` reply at each detail level, from a real Portal over
`schemas/snapshots.yaml`. Scale: the catalog replicated to 10,000 tools under new server names; index build time,
query p50/p95 over the evaluation queries, and the memory the index holds (tracemalloc).
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import anyio
import bm25s
from common import HERE, SCHEMAS, bundled_listings
from search_eval.evaluate import DEPTH, Query, bundled_catalog, by_split, load_queries, rank_all

from portal_mcp.benchmark import grow_listings
from portal_mcp.catalog.model import Catalog
from portal_mcp.catalog.search import SearchIndex
from portal_mcp.catalog.snapshot import load_snapshot
from portal_mcp.catalog.stubs import render_stubs
from portal_mcp.catalog.tokens import count_tokens
from portal_mcp.config import load_config
from portal_mcp.portal import Portal

NAME = "search"
FASTMCP_VENV = Path(os.environ.get("PORTAL_FASTMCP_VENV", "/tmp/fastmcp-venv"))
FASTMCP_REQUIREMENT = "fastmcp>=4,<5"
SNAPSHOTS_CONFIG = SCHEMAS / "snapshots.yaml"
DETAILS = ("full", "signature", "name")
TOKEN_TARGET = 800
SCALE_TOOLS = 10_000
SCALE_ROUNDS = 5


def run() -> dict[str, Any]:
    queries = load_queries()
    catalog = bundled_catalog()
    rankers: dict[str, Any] = {"ours": _ours(catalog, queries), "bm25": _plain_bm25(catalog, queries)}
    fastmcp = _fastmcp(queries)
    quality = {name: by_split(rankings, queries) for name, rankings in rankers.items()}
    if "rankings" in fastmcp:
        quality["fastmcp"] = by_split(fastmcp["rankings"], queries)
    return {
        "queries": len(queries),
        "servers": len({name.split(".")[0] for query in queries for name in query.expected}),
        "tools": len(catalog),
        "quality": quality,
        "fastmcp": {key: value for key, value in fastmcp.items() if key != "rankings"},
        "reply_tokens": _reply_tokens(queries),
        "scale": _scale(queries),
        "semantic": "none: the lexical ranking reaches the target without an embedding model",
    }


def _ours(catalog: Catalog, queries: list[Query]) -> dict[str, list[str]]:
    index = SearchIndex(catalog)
    return rank_all(lambda text: [hit.entry.qualified_name for hit in index.search(text, limit=DEPTH)], queries)


def _plain_bm25(catalog: Catalog, queries: list[Query]) -> dict[str, list[str]]:
    """The baseline: bm25s with its defaults over `name description`, nothing else."""
    entries = list(catalog)
    corpus = bm25s.tokenize([f"{entry.name} {entry.description}" for entry in entries], return_ids=False)
    index = bm25s.BM25()
    index.index(corpus, show_progress=False)

    def rank(text: str) -> list[str]:
        tokens = [token for token in bm25s.tokenize([text], return_ids=False)[0] if token in index.vocab_dict]
        if not tokens:
            return []
        scores = index.get_scores(tokens)
        order = [int(i) for i in scores.argsort()[::-1][:DEPTH] if scores[i] > 0]
        return [entries[i].qualified_name for i in order]

    return rank_all(rank, queries)


def _fastmcp(queries: list[Query]) -> dict[str, Any]:
    """FastMCP CodeMode's rankings, from a script run in FastMCP's own venv; a note instead when it cannot run."""
    python = FASTMCP_VENV / "bin" / "python"
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(FASTMCP_VENV)], check=True, capture_output=True)
        probe = subprocess.run([str(python), "-c", "import fastmcp"], capture_output=True, check=False)
        if probe.returncode != 0:
            subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", FASTMCP_REQUIREMENT],
                check=True,
                capture_output=True,
                timeout=600,
            )
        with tempfile.TemporaryDirectory() as folder:
            source, target = Path(folder) / "in.json", Path(folder) / "out.json"
            source.write_text(json.dumps(_export(queries)), encoding="utf-8")
            subprocess.run(
                [str(python), str(HERE / "search_eval" / "fastmcp_rank.py"), str(source), str(target)],
                check=True,
                capture_output=True,
                timeout=600,
            )
            result: dict[str, Any] = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, subprocess.SubprocessError) as error:
        detail = getattr(error, "stderr", b"") or b""
        note = f"skipped: could not run fastmcp in {FASTMCP_VENV}: {error} {detail.decode(errors='replace')[-500:]}"
        return {"note": note.strip()}
    return {"version": result["version"], "rankings": result["rankings"], "venv": str(FASTMCP_VENV)}


def _export(queries: list[Query]) -> dict[str, Any]:
    """The bundled catalog as served (tools/list JSON) with our qualified names, and the query texts."""
    tools = []
    catalog = bundled_catalog()
    for path in sorted(SCHEMAS.glob("*.json")):
        for tool, entry in zip(load_snapshot(path), catalog.by_server(path.stem), strict=True):
            wire = tool.model_dump(mode="json", by_alias=True, exclude_none=True)
            tools.append({"server": path.stem, "python_name": entry.python_name, "tool": wire})
    return {"tools": tools, "queries": [query.text for query in queries], "depth": DEPTH}


def _reply_tokens(queries: list[Query]) -> dict[str, Any]:
    """Median (p90, max) cl100k tokens of a 5-result search_api reply per detail level, from a real Portal.

    Two what-ifs are measured alongside, rendered from the same hits with the same stub renderer (nothing in the
    portal changes): `tiered` gives full stubs for the first 2 hits and signatures for the rest; `cutoff` keeps
    full stubs but drops hits scoring under half the best score.
    """

    def summary(counts: list[int]) -> dict[str, int]:
        counts = sorted(counts)
        return {
            "median": int(statistics.median(counts)),
            "p90": counts[int(0.9 * (len(counts) - 1))],
            "max": counts[-1],
        }

    async def measure() -> dict[str, Any]:
        async with Portal.open(load_config(SNAPSHOTS_CONFIG), user="benchmark") as portal:
            sizes = {
                detail: summary([count_tokens(portal.search_api(q.text, limit=5, detail=detail)) for q in queries])
                for detail in DETAILS
            }
            tiered, cutoff = [], []
            for query in queries:
                hits = portal.index().search(query.text, limit=5)
                head = f"{len(hits)} of {len(portal.catalog)} tools match. Call them in execute_code as `await server.tool(...)`.\n\n"
                entries = [hit.entry for hit in hits]
                tiered.append(
                    count_tokens(
                        head
                        + render_stubs(entries[:2], detail="full")
                        + "\n"
                        + render_stubs(entries[2:], detail="signature")
                    )
                )
                kept = [hit.entry for hit in hits if hit.score >= 0.5 * hits[0].score] if hits else []
                cutoff.append(count_tokens(head + render_stubs(kept, detail="full")))
            sizes["what-if tiered (full top 2, signature rest)"] = summary(tiered)
            sizes["what-if cutoff (full, hits >= 50% of top score)"] = summary(cutoff)
            return sizes

    return {"limit": 5, "target": TOKEN_TARGET, "by_detail": anyio.run(measure)}


def _scale(queries: list[Query]) -> dict[str, Any]:
    """Build time, query latency and held memory of an index over the catalog replicated to SCALE_TOOLS tools."""
    catalog = Catalog.build(grow_listings(bundled_listings(), SCALE_TOOLS))
    builds = []
    for _ in range(3):
        started = time.perf_counter()
        index = SearchIndex(catalog)
        builds.append(time.perf_counter() - started)
    timings = []
    for _ in range(SCALE_ROUNDS):
        for query in queries:
            started = time.perf_counter()
            index.search(query.text, limit=5)
            timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    del index
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    index = SearchIndex(catalog)
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "tools": len(catalog),
        "servers": len(catalog.servers()),
        "build_s": round(statistics.median(builds), 3),
        "query_ms_p50": round(statistics.median(timings), 3),
        "query_ms_p95": round(timings[int(0.95 * (len(timings) - 1))], 3),
        "queries_timed": len(timings),
        "index_mb": round((held - before) / 1e6, 1),
        "build_peak_mb": round((peak - before) / 1e6, 1),
        "targets": {"build_s": 2.0, "query_ms_p50": 5.0},
        "index_size": len(index),
    }


def markdown(results: dict[str, Any]) -> str:
    quality = results["quality"]
    names = {"ours": "portal-mcp `SearchIndex`", "bm25": "plain BM25 (bm25s defaults)", "fastmcp": "FastMCP CodeMode"}
    sizes = {split: quality["ours"][split]["queries"] for split in ("train", "test", "all")}
    lines = [
        "## Search quality",
        "",
        f"{results['queries']} queries phrased as an agent asks (`benchmarks/search_eval/queries.yaml`), over the "
        f"bundled catalog ({results['tools']} tools), expecting tools of {results['servers']} servers. A query is "
        "found at k when one of its expected tools is in the first k results; MRR is cut at 10. The test split "
        f"({sizes['test']} queries, chosen by a hash of the text) was held out while the ranking was tuned on train "
        f"({sizes['train']}).",
        "",
        "| ranker | split | recall@1 | recall@5 | MRR |",
        "|---|---|---:|---:|---:|",
    ]
    for ranker, splits in quality.items():
        for split in ("train", "test", "all"):
            m = splits[split]
            lines.append(
                f"| {names.get(ranker, ranker)} | {split} | {m['recall@1']:.3f} | {m['recall@5']:.3f} | {m['mrr']:.3f} |"
            )
    fastmcp = results["fastmcp"]
    if "note" in fastmcp:
        lines += ["", f"FastMCP CodeMode: {fastmcp['note']}"]
    else:
        lines += [
            "",
            f"FastMCP {fastmcp['version']}: CodeMode's default `Search` (BM25 over name, description, parameters).",
        ]
    tokens = results["reply_tokens"]
    lines += [
        "",
        f"### `search_api` reply size ({tokens['limit']} results, cl100k tokens over the same queries)",
        "",
        "| detail | median | p90 | max |",
        "|---|---:|---:|---:|",
    ]
    for detail, size in tokens["by_detail"].items():
        lines.append(f"| {detail} | {size['median']} | {size['p90']} | {size['max']} |")
    lines.append(f"\nTarget: median <= {tokens['target']} at the default detail (`full`).")
    scale = results["scale"]
    lines += [
        "",
        f"### Search at {scale['tools']:,} tools ({scale['servers']} servers, the bundled catalog replicated)",
        "",
        "| index build | query p50 | query p95 | index memory | build peak |",
        "|---:|---:|---:|---:|---:|",
        f"| {scale['build_s']:.2f} s | {scale['query_ms_p50']:.2f} ms | {scale['query_ms_p95']:.2f} ms | "
        f"{scale['index_mb']} MB | {scale['build_peak_mb']} MB |",
        "",
        f"Targets: build <= {scale['targets']['build_s']} s, query p50 <= {scale['targets']['query_ms_p50']} ms. "
        f"Memory is what tracemalloc sees the index allocate (held after the build, and the peak during it).",
    ]
    return "\n".join(lines)
