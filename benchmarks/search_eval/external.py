"""Evaluation sets nobody on the team wrote: public tool-selection benchmarks turned into (catalog, queries).

Each set is a JSON file `{"name", "source", "licence", "servers": {server: [MCP Tool dicts]}, "queries":
[{"query", "expected": [qualified names]}]}`, split into train and test by a hash of the query (`split_of`).

- `metatool` (HowieHwong/MetaTool, MIT): 199 ChatGPT-plugin tools and queries naming the one tool they need,
  written for the MetaTool paper; a hash-chosen twentieth of its 20,615 queries. Small enough and licensed to be
  kept in this folder (`datasets/metatool.json`, with the licence in `datasets/LICENSE-metatool`).
- `metatool_tasks`: the same tools and MetaTool's multi-tool queries (two tools each: "latest news about Tesla
  and how it moved the stock" -> FinanceTool + NewsTool), scored as whole tasks.
- `no_tool/metatool.json`: MetaTool's queries that need no tool (the negatives of its tool-usage-awareness task:
  "Write an opinion piece about ...", "Prove that 5 + 3 = 9."), the judge of "nothing fits" (`no_tool_queries`);
  kept apart from the sets, since they name no tool.
- `cross_lingual/`: MetaTool again across languages, translated for this benchmark by a language model told to
  translate faithfully and add nothing (a sample read): `metatool_zh`, its descriptions in Simplified Chinese with
  its English queries; `metatool_zh_hant`, the same descriptions in Traditional characters (OpenCC s2tw);
  `metatool_zh_queries`, its queries in Simplified Chinese over its English descriptions (each in its English
  original's split: the model was fitted on the English train queries).
- `mcptoolbench` (mcp-tool-bench/MCPToolBenchPP, no licence file): agent queries over the real tool lists of
  playwright, puppeteer, filesystem, tavily, google-search and a finance server. Without a licence it is not
  copied here: `python benchmarks/search_eval/external.py --mcptoolbench GIT_DIR` builds it from a clone into
  the cache folder (`$PORTAL_SEARCH_EVAL_CACHE`, default ~/.cache/portal-mcp/search-eval); the benchmark skips
  it when absent.
- `traject_tasks` (PengfeiHePower/TRAJECT-Bench, MIT): multi-step agent tasks over 674 RapidAPI endpoints of 160
  APIs in ten domains (each API a server, each endpoint a tool), each task needing 3 to 10 of them: its sequential
  tasks ("first list the countries, then ...") and its parallel ones in both wordings, the plain one ("check the
  snow at Badger Pass, grab the latest observations and flag any alerts") and the hard one, whose steps are
  implicit ("Family in tow and nap windows to hit ... start with mountain snowpack ..."); a hash-chosen tenth of
  its 5,270 tasks, scored as whole tasks. Built into the cache like `mcptoolbench` (snapshot data stays out of
  the repo): `--traject GIT_DIR`. Its labels name tools by "API: endpoint"; the few that name an endpoint its
  domain's tool list lacks are dropped.

    python benchmarks/search_eval/external.py --metatool METATOOL_GIT_DIR --mcptoolbench MCPTOOLBENCH_GIT_DIR \
        --traject TRAJECT_GIT_DIR

(GIT_DIR is a clone or a bare mirror: files are read with `git show HEAD:PATH`, nothing of their code is used.)
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import subprocess
import sys
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portal_mcp.catalog.model import Catalog
from portal_mcp.catalog.snapshot import parse_snapshot

HERE = Path(__file__).resolve().parent
DATASETS = HERE / "datasets"
NO_TOOL = DATASETS / "no_tool" / "metatool.json"
CROSS_LINGUAL = DATASETS / "cross_lingual"
CACHE = Path(os.environ.get("PORTAL_SEARCH_EVAL_CACHE", Path.home() / ".cache" / "portal-mcp" / "search-eval"))
SAMPLE = 20  # metatool: keep queries whose adler32 is 0 modulo this
MCPTOOLBENCH_FILES = (
    "data/browser/browser_0724_single_v3.json",
    "data/file_system/filesystem_0723_single.json",
    "data/finance/finance_0724_single_v3.json",
    "data/search/search_0725_single_v2.json",
)


@dataclass(frozen=True)
class ExternalSet:
    name: str
    source: str
    licence: str
    catalog: Catalog
    queries: list[tuple[str, tuple[str, ...]]]
    originals: Mapping[str, str] = field(default_factory=dict)
    """A translated query -> the query it translates, whose split it takes (`datasets/cross_lingual/`): a translation
    of a train query the model was fitted on must not be scored as held out."""


def available() -> Iterator[ExternalSet]:
    """Every set present: the ones kept in `datasets/`, then the ones built into the cache."""
    for folder in (DATASETS, CACHE):
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            yield load(path)


def cross_lingual() -> Iterator[ExternalSet]:
    """The sets whose tools are described in another language than their queries are asked in (English queries
    over tools of Chinese servers, `metatool_zh` and `metatool_zh_hant`; Chinese queries over English tools,
    `metatool_zh_queries`): kept apart from `available`, so they are no other set's distractors."""
    for path in sorted(CROSS_LINGUAL.glob("*.json")):
        yield load(path)


def load(path: Path) -> ExternalSet:
    data = json.loads(path.read_text(encoding="utf-8"))
    listings = {
        server: parse_snapshot(json.dumps({"tools": tools}), source=str(path))
        for server, tools in data["servers"].items()
    }
    catalog = Catalog.build(listings)
    # Labels name tools as `server.name` on the wire; the catalog's qualified names use python names.
    qualified = {f"{entry.server}.{entry.name}": entry.qualified_name for entry in catalog}
    queries = [(str(q["query"]), tuple(qualified[name] for name in q["expected"])) for q in data["queries"]]
    originals = {str(q["query"]): str(q["source"]) for q in data["queries"] if "source" in q}
    return ExternalSet(data["name"], data["source"], data["licence"], catalog, queries, originals)


def _show(git_dir: Path, path: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(git_dir), "show", f"HEAD:{path}"], check=True, capture_output=True, text=True
    ).stdout


def _tool(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "description": description, "inputSchema": {"type": "object", "properties": {}}}


def metatool(git_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The single-tool set (sampled) and the multi-tool set, over one server `metatool` of 199 tools."""
    merged = json.loads(_show(git_dir, "dataset/big_tool_des.json"))
    plugins = {name.lower(): text for name, text in json.loads(_show(git_dir, "dataset/plugin_des.json")).items()}
    rows = list(csv.DictReader(io.StringIO(_show(git_dir, "dataset/data/all_clean_data.csv"))))
    names = sorted({row["Tool"] for row in rows})
    tools = [_tool(name, merged.get(name) or plugins[name.lower()]) for name in names]
    single = [
        {"query": row["Query"], "expected": [f"metatool.{row['Tool']}"]}
        for row in rows
        if zlib.adler32(row["Query"].encode()) % SAMPLE == 0  # not crc32, which also picks the split
    ]
    multi = [
        {"query": item["query"], "expected": [f"metatool.{name}" for name in item["tool"]]}
        for item in json.loads(_show(git_dir, "dataset/data/multi_tool_query_golden.json"))
        if all(name in names for name in item["tool"])
    ]
    source = "https://github.com/HowieHwong/MetaTool (dataset/)"
    base = {"source": source, "licence": "MIT", "servers": {"metatool": tools}}
    return {"name": "metatool", **base, "queries": single}, {"name": "metatool_tasks", **base, "queries": multi}


def metatool_no_tool(git_dir: Path) -> dict[str, Any]:
    """MetaTool's queries that need no tool: the negatives of its awareness task (Task1), as the user asked them."""
    rows = json.loads(_show(git_dir, "dataset/tmp_dataset/Task1.json"))
    asked = [
        row["thought_prompt"].split("[User Query Begins]\n", 1)[1].split("\n[User Query Ends]", 1)[0].strip()
        for row in rows
        if row["label"] == "negative"
    ]
    source = "https://github.com/HowieHwong/MetaTool (dataset/tmp_dataset/Task1.json, negatives)"
    return {"name": "metatool_no_tool", "source": source, "licence": "MIT", "queries": sorted(set(asked))}


def no_tool_queries() -> list[str]:
    """Queries no tool answers (`NO_TOOL`), [] when the file is absent."""
    if not NO_TOOL.exists():
        return []
    return [str(query) for query in json.loads(NO_TOOL.read_text(encoding="utf-8"))["queries"]]


def mcptoolbench(git_dir: Path) -> dict[str, Any]:
    servers: dict[str, dict[str, dict[str, Any]]] = {}
    queries = []
    for path in MCPTOOLBENCH_FILES:
        for item in json.loads(_show(git_dir, path)):
            by_name = {tool["name"]: tool for tool in item["tools"]}
            for server, names in item["mcp_tools_dict"].items():
                for name in names:
                    tool = by_name[name]
                    servers.setdefault(_server(server), {})[name] = {
                        "name": name,
                        "description": tool.get("description") or "",
                        "inputSchema": tool.get("input_schema") or {"type": "object"},
                    }
            expected = [f"{_server(label['mcp_server'])}.{label['name']}" for label in item["function_call_label"]]
            queries.append({"query": item["query"], "expected": expected})
    return {
        "name": "mcptoolbench",
        "source": "https://github.com/mcp-tool-bench/MCPToolBenchPP (data/)",
        "licence": "none stated: built locally, not redistributed",
        "servers": {server: list(tools.values()) for server, tools in sorted(servers.items())},
        "queries": queries,
    }


def _server(name: str) -> str:
    return name.replace("-", "_").lower()


TRAJECT_DOMAINS = (
    "Education", "Email", "Finance", "Gaming", "Mapping", "Music", "News_Media", "Travel", "Weather", "eCommerce"
)  # fmt: skip
TRAJECT_FILES = ("sequential/{}/traj_query.json", "parallel/{}/simple_ver.json", "parallel/{}/hard_ver.json")
TRAJECT_SAMPLE = 10  # keep tasks whose adler32 is 0 modulo this
_TYPES = {"NUMBER": "number", "BOOLEAN": "boolean", "ARRAY": "array", "OBJECT": "object"}


def traject(git_dir: Path) -> dict[str, Any]:
    """TRAJECT-Bench's tools (one server per API) and a sample of its tasks; files too big for a snapshot (its
    News_Media parallel tasks in some copies) are skipped."""
    servers: dict[str, dict[str, dict[str, Any]]] = {}
    labels: dict[str, str] = {}
    for domain in TRAJECT_DOMAINS:
        for tool in json.loads(_show(git_dir, f"public_data/tools/{domain}_tool.json")):
            server = _slug(tool["parent tool name"])
            tools = servers.setdefault(server, {})
            if tool["tool name"] in labels:
                continue
            name = _slug(tool["API name"])
            while name in tools:
                name += "_2"
            tools[name] = {
                "name": name,
                "title": tool["API name"],
                "description": tool.get("tool description") or "",
                "inputSchema": _schema(tool.get("required_parameters") or [], tool.get("optional_parameters") or []),
            }
            labels[tool["tool name"]] = f"{server}.{name}"
    queries = []
    for domain in TRAJECT_DOMAINS:
        for pattern in TRAJECT_FILES:
            try:
                items = json.loads(_show(git_dir, "public_data/" + pattern.format(domain)))
            except subprocess.CalledProcessError:
                continue
            for item in items:
                text = str(item["query"])
                expected = list(
                    dict.fromkeys(labels[t["tool name"]] for t in item["tool list"] if t["tool name"] in labels)
                )
                if expected and zlib.adler32(text.encode()) % TRAJECT_SAMPLE == 0:
                    queries.append({"query": text, "expected": expected})
    return {
        "name": "traject_tasks",
        "source": "https://github.com/PengfeiHePower/TRAJECT-Bench (public_data/)",
        "licence": "MIT: built locally, not redistributed",
        "servers": {server: list(tools.values()) for server, tools in sorted(servers.items())},
        "queries": queries,
    }


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "tool"


def _schema(required: list[dict[str, Any]], optional: list[dict[str, Any]]) -> dict[str, Any]:
    properties = {
        str(param["name"]): {
            "type": _TYPES.get(str(param.get("type", "")).upper(), "string"),
            "description": str(param.get("description") or ""),
        }
        for param in [*required, *optional]
    }
    return {"type": "object", "properties": properties, "required": [str(param["name"]) for param in required]}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--metatool", type=Path, help="git dir of HowieHwong/MetaTool: rewrites datasets/metatool*.json, no_tool/"
    )
    parser.add_argument("--mcptoolbench", type=Path, help="git dir of mcp-tool-bench/MCPToolBenchPP: builds the cache")
    parser.add_argument("--traject", type=Path, help="git dir of PengfeiHePower/TRAJECT-Bench: builds the cache")
    args = parser.parse_args(argv)
    written = []
    if args.metatool:
        DATASETS.mkdir(exist_ok=True)
        for data in metatool(args.metatool):
            written.append(DATASETS / f"{data['name']}.json")
            written[-1].write_text(json.dumps(data, indent=0, ensure_ascii=False) + "\n", encoding="utf-8")
        NO_TOOL.parent.mkdir(exist_ok=True)
        written.append(NO_TOOL)
        NO_TOOL.write_text(json.dumps(metatool_no_tool(args.metatool), indent=0, ensure_ascii=False) + "\n", "utf-8")
    if args.mcptoolbench:
        CACHE.mkdir(parents=True, exist_ok=True)
        written.append(CACHE / "mcptoolbench.json")
        written[-1].write_text(json.dumps(mcptoolbench(args.mcptoolbench), ensure_ascii=False), encoding="utf-8")
    if args.traject:
        CACHE.mkdir(parents=True, exist_ok=True)
        written.append(CACHE / "traject_tasks.json")
        written[-1].write_text(json.dumps(traject(args.traject), ensure_ascii=False), encoding="utf-8")
    for path in written:
        print(path, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    raise SystemExit(main(sys.argv[1:]))
