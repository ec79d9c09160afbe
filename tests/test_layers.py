"""The import layers of `src/portal_mcp` (docs/architecture.md draws them): a module imports only from layers below
its own, never from a sibling unit of its own layer, wherever the import stands (inside functions too), and no
modules import each other in a cycle."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "portal_mcp"

LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"errors", "naming", "tools", "logs", "sdk"}),
    frozenset({"__init__"}),
    frozenset({"config"}),
    frozenset({"catalog"}),
    frozenset({"control"}),
    frozenset({"downstream", "sandbox"}),
    frozenset({"runs", "search_api"}),
    frozenset({"portal"}),
    frozenset({"surface"}),
    frozenset({"benchmark"}),
    frozenset({"cli"}),
    frozenset({"__main__", "__face__"}),
)
"""Units (a top-level module or package of portal_mcp), lowest first."""

FACE = "portal_mcp.__face__"
"""The root's embedding face: what `portal_mcp/__init__.py` loads on first use (its `__getattr__`, and the
`if TYPE_CHECKING:` imports naming the same for type checkers) counts as a unit of its own at the top, while the
root itself, imported by every submodule's import, stays low."""


def is_face(node: ast.stmt) -> bool:
    if isinstance(node, ast.FunctionDef):
        return node.name == "__getattr__"
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def parse(name: str, source: str) -> dict[str, ast.Module]:
    """The module's AST; the root's split in two: the root and its face."""
    tree = ast.parse(source)
    if name != "portal_mcp":
        return {name: tree}
    return {
        name: ast.Module([node for node in tree.body if not is_face(node)], []),
        FACE: ast.Module([node for node in tree.body if is_face(node)], []),
    }


def layer_of(unit: str) -> int:
    for index, units in enumerate(LAYERS):
        if unit in units:
            return index
    raise AssertionError(f"{unit!r} is in no layer: add it to LAYERS in tests/test_layers.py and docs/architecture.md")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["portal_mcp", *parts])


def imported_modules(tree: ast.AST, known: frozenset[str]) -> Iterator[str]:
    """Every portal_mcp module an AST imports, anywhere in it (`from pkg import mod` counts as importing mod)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.split(".")[0] == "portal_mcp")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "portal_mcp":
                continue
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                yield child if child in known else node.module


def unit_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def graph(sources: Mapping[str, str]) -> dict[str, set[str]]:
    """module -> the portal_mcp modules it imports, from {module name: source}."""
    known = frozenset(sources)
    trees = {unit: tree for name, source in sources.items() for unit, tree in parse(name, source).items()}
    return {name: set(imported_modules(tree, known)) - {name} for name, tree in trees.items()}


def wrong_way(imports: Mapping[str, set[str]]) -> list[str]:
    found = []
    for module, targets in sorted(imports.items()):
        source = unit_of(module)
        for target in sorted(targets):
            dest = unit_of(target)
            if dest != source and layer_of(dest) >= layer_of(source):
                found.append(f"{module} imports {target} (layer {layer_of(dest)} >= {layer_of(source)})")
    return found


def cycles(imports: Mapping[str, set[str]]) -> list[list[str]]:
    """The import cycles among modules (one per strongly connected component of more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in imports.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(imports):
        if node not in index:
            visit(node)
    return found


def package_sources() -> dict[str, str]:
    return {module_name(path, PACKAGE): path.read_text(encoding="utf-8") for path in PACKAGE.rglob("*.py")}


def test_every_import_in_the_package_runs_down_the_layers() -> None:
    assert wrong_way(graph(package_sources())) == []


def test_no_modules_import_each_other_in_a_cycle() -> None:
    assert cycles(graph(package_sources())) == []


def test_every_unit_of_the_package_has_a_layer() -> None:
    for unit in {unit_of(module) for module in package_sources()}:
        layer_of(unit)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("portal_mcp.control.metrics", "from portal_mcp.surface.server import PortalServer"),
        ("portal_mcp.catalog.search", "def late():\n    from portal_mcp.portal import Portal\n"),
        ("portal_mcp.sandbox.host", "import portal_mcp.downstream"),
        ("portal_mcp.config.models", "from portal_mcp import catalog"),
        ("portal_mcp", "from portal_mcp.config import load_config"),
    ],
)
def test_a_wrong_way_import_is_caught_even_inside_a_function(module: str, source: str) -> None:
    sources = package_sources()
    sources[module] = sources[module] + "\n" + source + "\n"
    assert len(wrong_way(graph(sources))) == 1


def test_an_import_cycle_is_caught() -> None:
    sources = package_sources()
    sources["portal_mcp.naming"] += "\nfrom portal_mcp import errors\n"
    sources["portal_mcp.errors"] += "\nfrom portal_mcp.naming import python_name\n"
    assert cycles(graph(sources)) == [["portal_mcp.errors", "portal_mcp.naming"]]


MAX_LINES = 400
OVER_THE_LIMIT: frozenset[str] = frozenset()
"""Modules still over MAX_LINES, each being split in its own change: the list only shrinks."""


def test_no_module_is_over_400_lines() -> None:
    lengths = {
        path.relative_to(PACKAGE).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    over = {name for name, lines in lengths.items() if lines > MAX_LINES}
    assert sorted(over - OVER_THE_LIMIT) == [], (
        f"split these into modules of one concept each: { {n: lengths[n] for n in over - OVER_THE_LIMIT} }"
    )
    assert sorted(OVER_THE_LIMIT - over) == [], "these are within the limit now: take them off OVER_THE_LIMIT"


def test_the_top_level_holds_at_most_12_modules_besides_packages() -> None:
    modules = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(modules) <= 12, modules
