"""Search: retrieval quality on several evaluation sets, reply size per detail level, and speed at 10,000 tools.

Quality: recall@1, recall@5, MRR@10, nDCG@10 and needed@10 (the share of a query's expected tools in the first
10) of four rankers, per set and per split (train / held-out test, by a hash of the query):
  hybrid    `portal_mcp.catalog.search.SearchIndex` with the bundled embedding model, what `search_api` uses;
  words     the same index with `search: {semantic: false}` (BM25, synonyms, server awareness);
  bm25      plain BM25 (bm25s defaults: its default tokenizer, no stemming, no stopwords) over name + description;
  fastmcp   FastMCP's CodeMode search (`search_eval/fastmcp_rank.py`), run in its own venv because fastmcp pins
            its own mcp; the venv is created on demand (`$PORTAL_FASTMCP_VENV`, default /tmp/fastmcp-venv) and
            this ranker is skipped with a note when it cannot be installed.
Sets: the repo's own `search_eval/queries.yaml` over the bundled catalog (`schemas/`, written by the team), the same
queries joined into whole tasks (`own_tasks`, `search_eval.evaluate.synthetic_tasks`), and the
external sets of `search_eval/external.py` (written by others; the ones built into the cache are skipped when
absent), and each set again in a large catalog (`NAME_large`: its tools plus every other set's as distractors,
`search_eval.evaluate.with_distractors`). Reply size: median cl100k tokens of a `search_api` reply at each detail level, from a real Portal over
`schemas/snapshots.yaml`, for the own queries and for whole-task queries. Scale (in a fresh process, so memory is
the search's own): a catalog of 10,000 real tools (the shared 4,027-tool corpus when present, else the bundled
catalog, replicated under new server names); index build with an empty and with a warm embedding cache, query
p50/p95, and the resident memory the model and the index add.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import bm25s
from common import HERE, SCHEMAS, bundled_listings
from search_eval.evaluate import (
    DEPTH,
    Query,
    by_split,
    corpus_listings,
    evaluation_sets,
    identities,
    load_queries,
    rank_all,
)
from search_eval.external import available, no_tool_queries

from portal_mcp.benchmark import grow_listings
from portal_mcp.catalog.model import Catalog
from portal_mcp.catalog.tokens import count_tokens
from portal_mcp.config import LimitsConfig, load_config
from portal_mcp.portal import Portal

NAME = "search"
FASTMCP_VENV = Path(os.environ.get("PORTAL_FASTMCP_VENV", "/tmp/fastmcp-venv"))
FASTMCP_REQUIREMENT = "fastmcp>=4,<5"
SNAPSHOTS_CONFIG = SCHEMAS / "snapshots.yaml"
DETAILS = ("auto", "full", "signature", "name")
TOKEN_TARGET = 800
SCALE_TOOLS = 10_000
SCALE_ROUNDS = 3
TARGETS = {"build_cold_s": 10.0, "build_warm_s": 1.0, "query_ms_p50": 10.0, "query_ms_p95": 25.0, "extra_rss_mb": 200}
NO_TOOL_CATALOGS = {"own": "the bundled catalog", "metatool": "MetaTool's plugins", "corpus": "the shared corpus"}
"""The sets over whose catalogs MetaTool's no-tool queries are searched, and what their catalogs are called."""
NEW_PACKAGES = ("tokenizers", "safetensors", "huggingface_hub", "hf_xet", "fsspec", "filelock", "tqdm", "threadpoolctl")


def run() -> dict[str, Any]:
    from portal_mcp.catalog.search import SearchIndex
    from portal_mcp.catalog.search.embeddings import EmbeddingCache, Encoder

    encoder = Encoder.load()
    sets = evaluation_sets(corpus=True)
    quality: dict[str, Any] = {}
    fits: dict[str, Any] = {"with_tool": {"train": [0, 0], "test": [0, 0]}, "no_tool": {}}
    no_tool = [Query(text, ()) for text in no_tool_queries()]
    for name, source, catalog, queries in sets:
        hybrid = SearchIndex(catalog, EmbeddingCache(encoder, None))
        for split, (judged, plain) in _nothing_fits(hybrid, queries).items():
            fits["with_tool"][split][0] += judged
            fits["with_tool"][split][1] += plain
        if name in NO_TOOL_CATALOGS and no_tool:
            fits["no_tool"][name] = {"tools": len(catalog), **_nothing_fits(hybrid, no_tool)}
        words = SearchIndex(catalog)
        rankings = {
            "hybrid": rank_all(_ranker(hybrid), queries),
            "words": rank_all(_ranker(words), queries),
            "bm25": _plain_bm25(catalog, queries),
        }
        fastmcp = _fastmcp(catalog, queries)
        if "rankings" in fastmcp:
            rankings["fastmcp"] = fastmcp.pop("rankings")
        quality[name] = {
            "source": source,
            "tools": len(catalog),
            "queries": len(queries),
            "rankers": {ranker: by_split(ranked, queries, identities(catalog)) for ranker, ranked in rankings.items()},
            "fastmcp": fastmcp,
        }
    tasks = [text for name, _, _, queries in sets if name.endswith("_tasks") for text in (q.text for q in queries)]
    return {
        "quality": quality,
        "nothing_fits": fits,
        "reply_tokens": _reply_tokens(load_queries(), tasks),
        "scale": _scale_in_subprocess(),
        "install": _install_size(),
    }


def _nothing_fits(index: Any, queries: Sequence[Query]) -> dict[str, list[int]]:
    """Per split, [how many, of how many] plain queries (one intent: a whole task is answered step by step instead)
    `search_api` would answer with "nothing fits" (`SearchIndex.weak` on its best 5)."""
    from portal_mcp.catalog.search.intents import split_intents

    counts = {"train": [0, 0], "test": [0, 0]}
    for query in queries:
        if len(split_intents(query.text)) == 1:
            counts[query.split][0] += index.weak(query.text, index.search(query.text, limit=5))
            counts[query.split][1] += 1
    return counts


def _ranker(index: Any) -> Any:
    return lambda text: [hit.entry.qualified_name for hit in index.search(text, limit=DEPTH)]


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


def _fastmcp(catalog: Catalog, queries: list[Query]) -> dict[str, Any]:
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
            source.write_text(json.dumps(_export(catalog, queries)), encoding="utf-8")
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


def _export(catalog: Catalog, queries: list[Query]) -> dict[str, Any]:
    """The catalog as served (tools/list JSON) with our qualified names, and the query texts."""
    tools = []
    for entry in catalog:
        wire: dict[str, Any] = {
            "name": entry.name,
            "description": entry.description,
            "inputSchema": dict(entry.input_schema),
        }
        if entry.title:
            wire["title"] = entry.title
        tools.append({"server": entry.server, "python_name": entry.python_name, "tool": wire})
    return {"tools": tools, "queries": [query.text for query in queries], "depth": DEPTH}


def _reply_tokens(queries: list[Query], tasks: Sequence[str]) -> dict[str, Any]:
    """Median (p90, max) cl100k tokens of a 5-result search_api reply per detail level, from a real Portal, for the
    own queries and for whole-task queries (the multi-tool queries of the external sets)."""

    def summary(counts: list[int]) -> dict[str, int]:
        counts = sorted(counts) or [0]
        return {
            "median": int(statistics.median(counts)),
            "p90": counts[int(0.9 * (len(counts) - 1))],
            "max": counts[-1],
        }

    async def measure() -> dict[str, Any]:
        config = load_config(SNAPSHOTS_CONFIG)
        # Thousands of searches in a minute or two: over the default per-user rate, which would answer with a refusal.
        limits = config.limits.model_copy(update={"searches_per_minute": 1_000_000})
        async with Portal.open(config.model_copy(update={"user": "benchmark", "limits": limits})) as portal:
            sizes = {}
            # A task longer than the portal takes (`limits.max_query_chars`) would be refused, not measured.
            taken = [text for text in tasks if len(text) <= limits.max_query_chars]
            for label, texts in (("queries", [q.text for q in queries]), ("tasks", taken)):
                for detail in DETAILS:
                    replies = [portal.search_api(text, portal.local, limit=5, detail=detail) for text in texts]  # type: ignore[arg-type]
                    refused = [reply for reply in replies if reply.startswith("search_api: ")]
                    assert not refused, f"a search was refused, not measured: {refused[0]}"
                    sizes[f"{label}, {detail}"] = summary([count_tokens(reply) for reply in replies])
            return sizes

    return {"limit": 5, "target": TOKEN_TARGET, "by_detail": anyio.run(measure)}


def _scale_in_subprocess() -> dict[str, Any]:
    """`_scale` in a fresh interpreter, so its resident memory is the search's alone."""
    done = subprocess.run(
        [sys.executable, __file__, "--scale"], capture_output=True, text=True, check=True, cwd=HERE, timeout=1200
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def _scale() -> dict[str, Any]:
    """Build time (empty and warm embedding cache), query latency and added memory at SCALE_TOOLS tools."""
    queries = [q.text for q in load_queries()] + [text for s in available() for text, _ in s.queries[:200]]
    corpus = corpus_listings()
    source = "shared corpus" if corpus else "bundled catalog"
    listings = corpus or bundled_listings()
    catalog = Catalog.build(grow_listings(listings, SCALE_TOOLS))
    before = _rss_mb()
    from portal_mcp.catalog.search import SearchIndex
    from portal_mcp.catalog.search.embeddings import EmbeddingCache, Encoder
    from portal_mcp.catalog.search.meaning import one_blas_thread
    from portal_mcp.catalog.search.stored import IndexStore

    one_blas_thread()  # as the portal's composition root does
    started = time.perf_counter()
    encoder = Encoder.load()
    load_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as folder:
        # Cold: nothing cached. Warm: a restart on the same catalog (the index and the vectors read back).
        # Rebuilt: the index built again with every vector cached (what a changed catalog costs at most).
        started = time.perf_counter()
        cold = EmbeddingCache(encoder, Path(folder))
        index = SearchIndex(catalog, cold, store=IndexStore(Path(folder)))
        cold_s = time.perf_counter() - started
        warm_builds, rebuilds = [], []
        for _ in range(SCALE_ROUNDS):
            started = time.perf_counter()
            warm, store = EmbeddingCache(encoder, Path(folder)), IndexStore(Path(folder))
            index = SearchIndex(catalog, warm, store=store)
            warm_builds.append(time.perf_counter() - started)
            assert warm.embedded == 0 and store.loaded == 1
            started = time.perf_counter()
            SearchIndex(catalog, EmbeddingCache(encoder, Path(folder)))
            rebuilds.append(time.perf_counter() - started)
    words_builds = []
    for _ in range(SCALE_ROUNDS):
        started = time.perf_counter()
        SearchIndex(catalog)
        words_builds.append(time.perf_counter() - started)
    timings = []
    for _ in range(SCALE_ROUNDS):
        for text in queries:
            started = time.perf_counter()
            index.search(text, limit=5)
            timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    # Queries a hostile or broken client may send, as long as `limits.max_query_chars` lets them be: the word and
    # intent patterns once cost the square of such a query's length (30 to 50 ms at 1,000 characters).
    size = LimitsConfig().max_query_chars
    hostile = _hostile_queries(size)
    hostile_ms = []
    for text in hostile.values():
        started = time.perf_counter()
        index.search(text, limit=5)
        hostile_ms.append((time.perf_counter() - started) * 1000)
    return {
        "tools": len(catalog),
        "servers": len(catalog.servers()),
        "source": source,
        "model_load_s": round(load_s, 3),
        "build_cold_s": round(cold_s, 3),
        "build_warm_s": round(statistics.median(warm_builds), 3),
        "build_rebuilt_s": round(statistics.median(rebuilds), 3),
        "build_words_only_s": round(statistics.median(words_builds), 3),
        "embedded_cold": cold.embedded,
        "query_ms_p50": round(statistics.median(timings), 3),
        "query_ms_p95": round(timings[int(0.95 * (len(timings) - 1))], 3),
        "queries_timed": len(timings),
        "hostile_query_chars": size,
        "hostile_shapes": list(hostile),
        "hostile_ms_max": round(max(hostile_ms), 3),
        "extra_rss_mb": round(_rss_mb() - before, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3, 1),
        "targets": TARGETS,
    }


def _install_size() -> dict[str, Any]:
    """Bytes on disk of the packages the embedding model added, and of the bundled model."""
    from importlib import metadata

    from portal_mcp.catalog.search.embeddings import BUNDLED_MODEL

    sizes = {}
    for package in NEW_PACKAGES:
        try:
            files = metadata.distribution(package).files or []
        except metadata.PackageNotFoundError:
            continue
        sizes[package] = round(sum(f.size or 0 for f in files) / 1e6, 1)
    model = round(sum(p.stat().st_size for p in BUNDLED_MODEL.iterdir()) / 1e6, 1)
    return {"packages_mb": sizes, "total_packages_mb": round(sum(sizes.values()), 1), "bundled_model_mb": model}


def _hostile_queries(size: int) -> dict[str, str]:
    """Queries of about `size` characters in shapes that made regular expressions backtrack, by name."""
    return {
        "one word": "a" * size,
        "spaces": " " * (size - 1) + "a",
        "dots": "a." * (size // 2),
        "commas": "a, " * (size // 3),
        "slashes": "a/" * (size // 2),
        "CJK": "热" * size,
        "repeated 'then'": "then " * (size // 5),
        "CJK and letters": "".join(chr(0x4E00 + i % 500) + "a" for i in range(size // 2)),
        # WordPiece tries every prefix of a word: runs of 99 different characters, each a word of its own.
        "CJK runs": " ".join("".join(chr(0x4E00 + (i * 99 + j) % 6000) for j in range(99)) for i in range(size // 100)),
    }


NAMES = {
    "hybrid": "portal-mcp (words + meaning)",
    "words": "portal-mcp, `semantic: false`",
    "bm25": "plain BM25",
    "fastmcp": "FastMCP CodeMode",
}


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "## Search quality",
        "",
        "Per set and split: recall@k counts a query when one of its expected tools is in the first k; MRR and nDCG "
        "are cut at 10; needed@10 is the share of a query's expected tools in the first 10 (for whole tasks). Test "
        "splits (a hash of the query text) were held out: every weight was tuned on train splits only.",
        "",
        "| set | ranker | split | queries | recall@1 | recall@5 | MRR | nDCG@10 | needed@10 |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for name, data in results["quality"].items():
        for ranker, splits in data["rankers"].items():
            for split in ("train", "test"):
                m = splits[split]
                lines.append(
                    f"| {name} | {NAMES.get(ranker, ranker)} | {split} | {m['queries']} | {m['recall@1']:.3f} | "
                    f"{m['recall@5']:.3f} | {m['mrr']:.3f} | {m['ndcg@10']:.3f} | {m['needed@10']:.3f} |"
                )
        notes.append(f"- {name}: {data['tools']} tools, {data['queries']} queries; {data['source']}")
        if "note" in data["fastmcp"]:
            notes.append(f"  FastMCP: {data['fastmcp']['note']}")
    lines += ["", *notes]
    if "nothing_fits" in results:  # results recorded before it was measured have none
        lines += _nothing_fits_markdown(results["nothing_fits"])
    tokens = results["reply_tokens"]
    lines += [
        "",
        f"### `search_api` reply size ({tokens['limit']} results, cl100k tokens)",
        "",
        "| queries, detail | median | p90 | max |",
        "|---|---:|---:|---:|",
    ]
    for detail, size in tokens["by_detail"].items():
        lines.append(f"| {detail} | {size['median']} | {size['p90']} | {size['max']} |")
    lines.append(f"\nTarget: median <= {tokens['target']} at the default detail (`auto`).")
    scale = results["scale"]
    t = scale["targets"]
    lines += [
        "",
        f"### Search at {scale['tools']:,} tools ({scale['servers']} servers, the {scale['source']} replicated)",
        "",
        "| model load | build, empty cache | build, warm cache | rebuilt, vectors cached | build, words only | "
        "query p50 | query p95 | added RSS |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {scale['model_load_s']:.2f} s | {scale['build_cold_s']:.2f} s | {scale['build_warm_s']:.2f} s | "
        f"{scale['build_rebuilt_s']:.2f} s | {scale['build_words_only_s']:.2f} s | {scale['query_ms_p50']:.2f} ms | "
        f"{scale['query_ms_p95']:.2f} ms | {scale['extra_rss_mb']} MB |",
        "",
        "Warm: a restart on the same catalog reads the built index and the vectors back (`search/stored.py`); "
        "rebuilt: a changed catalog builds the index again, embedding only the tools whose text changed.",
        "",
        f"Hostile queries of {scale['hostile_query_chars']} characters (the `limits.max_query_chars` default; "
        f"{', '.join(scale['hostile_shapes'])}): the slowest took {scale['hostile_ms_max']:.2f} ms.",
        "",
        f"Targets: build <= {t['build_cold_s']} s cold and <= {t['build_warm_s']} s warm, query p50 <= "
        f"{t['query_ms_p50']} ms and p95 <= {t['query_ms_p95']} ms, added RSS <= {t['extra_rss_mb']} MB.",
        "",
        f"Gauge of the machine during this run: the words-only build took {scale['build_words_only_s']:.2f} s. Its "
        "code is what search changes touch least, so on a shared machine compare it between two runs before "
        "comparing their query percentiles (a slower build means a loaded period, and a higher p95 with it).",
    ]
    install = results["install"]
    lines += [
        "",
        f"Install size added by the embedding model: {install['total_packages_mb']} MB of packages "
        f"({', '.join(f'{k} {v}' for k, v in install['packages_mb'].items())}) and the bundled model "
        f"{install['bundled_model_mb']} MB.",
    ]
    return "\n".join(lines)


def _nothing_fits_markdown(fits: dict[str, Any]) -> list[str]:
    def share(counts: list[int]) -> str:
        return f"{counts[1]} | {counts[0] / max(1, counts[1]):.1%}"

    lines = [
        "",
        '### "Nothing fits"',
        "",
        '`search_api` answers a plain query whose best tools fit it poorly with "nothing fits" and the closest servers '
        "(`search/fit.py`). The share of plain queries so answered: of those that have a tool (every set above, "
        "which should be near 0), and of MetaTool's queries that need none (public, MIT: \"Write an opinion piece "
        'about ...", "Does Crimea belong to Russia?"; which should be high), over three catalogs.',
        "",
        "| queries | catalog | split | plain queries | nothing fits |",
        "|---|---|---|---:|---:|",
    ]
    for split in ("train", "test"):
        lines.append(f"| with a tool | their set's | {split} | {share(fits['with_tool'][split])} |")
    for name, data in fits["no_tool"].items():
        for split in ("train", "test"):
            catalog = f"{NO_TOOL_CATALOGS[name]} ({data['tools']:,} tools)"
            lines.append(f"| needing none | {catalog} | {split} | {share(data[split])} |")
    return lines


if __name__ == "__main__":
    if sys.argv[1:] == ["--scale"]:
        print(json.dumps(_scale()))
