"""Docs that cannot drift: the README's and docs/benchmarks.md's figures are the benchmark results, no figure is typed
into the README by hand, its config example loads, and its links lead somewhere."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from portal_mcp.config import load_config

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def figures_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchmark_figures", ROOT / "benchmarks" / "figures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("benchmark_figures", module)
    spec.loader.exec_module(module)
    return module


FIGURES = figures_module()
FIGURE = re.compile(r"\d[\d,.]*\s?(?:%|x\b|ms\b|M\b|K\b|tokens\b|tools\b|servers\b|queries\b|workflows\b|attacks\b)")
"""Something that reads as a measured figure: a number with a unit or a count of things."""


@pytest.mark.parametrize("relative", sorted(FIGURES.BLOCKS))
def test_each_generated_block_says_what_the_results_files_say(relative: str) -> None:
    name, render = FIGURES.BLOCKS[relative]
    text = (ROOT / relative).read_text(encoding="utf-8")
    assert FIGURES.block(text, name) == render(FIGURES.load()), (
        f"{relative} quotes figures that are not the ones in benchmarks/results/: run `.venv/bin/python "
        "benchmarks/figures.py` (benchmarks/run.py does it after a run)"
    )


def test_a_changed_result_changes_the_readme(tmp_path: Path) -> None:
    results = FIGURES.load()
    results["tokens"]["rows"][0]["tokens"] = 123_456_789
    name, render = FIGURES.BLOCKS["README.md"]
    assert "123,456,789 tokens" in render(results)
    assert FIGURES.block(README.read_text(encoding="utf-8"), name) != render(results)


def test_no_figure_is_typed_into_the_readme_outside_its_generated_block() -> None:
    text = README.read_text(encoding="utf-8")
    name, _ = FIGURES.BLOCKS["README.md"]
    prose = text.replace(FIGURES.block(text, name), "")
    prose = re.sub(r"```.*?```", "", prose, flags=re.DOTALL)  # commands and config examples
    prose = re.sub(r"`[^`]*`", "", prose)
    assert FIGURE.findall(prose) == []


def test_the_readme_config_example_loads(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    example = text[text.index("```yaml\n# portal.yaml\n") + len("```yaml\n") :]
    (tmp_path / "portal.yaml").write_text(example[: example.index("```")], encoding="utf-8")
    config = load_config(tmp_path / "portal.yaml", environ={"GITHUB_TOKEN": "gh-value", "LINEAR_TOKEN": "lin-value"})
    assert set(config.servers) == {"github", "linear", "time"}
    assert config.policy.default.approve == "destructive"


def test_every_link_in_the_readme_and_docs_leads_to_a_file() -> None:
    for page in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to {target}, which is missing"
