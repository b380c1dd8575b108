"""The package's layout: imports point one way and form no circle, the core imports no floor above
it, the models import no environment, and pyproject.toml installs every package folder.

The import graph is read from the source with :mod:`ast` (nothing is imported): every import
counts, at module level or inside a function, and ``from package import name`` where ``name`` is a
module counts as importing that module.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {
    "musicgym": ROOT / "musicgym",
    "musicgym.priors": ROOT / "priors",
    "musicgym.agents": ROOT / "agents",
    "musicgym.benchmarks": ROOT / "benchmarks",
}
"""Where each floor of the installed package lives in the repository."""
FLOORS = ("musicgym.priors", "musicgym.agents", "musicgym.benchmarks")
MODELS = ("musicgym.priors.model", "musicgym.priors.note_rnn")


def module_files() -> dict[str, Path]:
    """Every module of the package by its installed name (a package by its own name)."""
    modules = {}
    for name, folder in FOLDERS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((name, *parts))] = path
    return modules


def _floor_of(module: str) -> str:
    return next((f for f in FLOORS if module == f or module.startswith(f + ".")), "musicgym")


def _is_package(module: str, modules: dict[str, Path]) -> bool:
    return modules[module].name == "__init__.py"


def imports_of(module: str, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``module`` imports, anywhere in its file."""
    tree = ast.parse(modules[module].read_text(), str(modules[module]))
    package = module if _is_package(module, modules) else module.rpartition(".")[0]
    found: set[str] = set()

    def add(name: str) -> None:
        while name and name not in modules:  # a name inside a module: the module
            name = name.rpartition(".")[0]
        if name and name != module:
            found.add(name)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                add(submodule if submodule in modules else source)
    return found


def import_graph() -> dict[str, set[str]]:
    """Each module of the package, and the package's modules it imports."""
    modules = module_files()
    return {module: imports_of(module, modules) for module in modules}


def import_cycles(graph: dict[str, set[str]] | None = None) -> list[list[str]]:
    """The import circles of ``graph``: its strongly connected components of two modules or more
    (Tarjan's algorithm), each sorted, sorted."""
    graph = import_graph() if graph is None else graph
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(graph.get(module, ())):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(cycles)


def test_import_cycles_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert import_cycles(graph) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize(
    "module, target",
    [
        ("musicgym.cli", "musicgym.music.midi_cli"),  # from musicgym.music import midi_cli
        ("musicgym.envs.decisions", "musicgym.music.corpus"),  # inside a function
        ("musicgym.priors.distributed", "musicgym.priors.train"),  # a name from a module
    ],
)
def test_the_graph_counts_every_kind_of_import(module, target):
    assert target in import_graph()[module]


def test_no_import_cycles():
    cycles = import_cycles()
    assert cycles == [], "import circles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_imports_point_one_way():
    """The core imports no floor; a floor imports none above it (core <- priors <- agents <-
    benchmarks)."""
    order = ("musicgym", *FLOORS)
    wrong = [
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        for target in sorted(targets)
        if order.index(_floor_of(target)) > order.index(_floor_of(module))
    ]
    assert wrong == []


def test_models_import_no_environment():
    """A model loads with nothing but its own file and the core's music and prior modules."""
    graph = import_graph()
    for model in MODELS:
        envs = sorted(t for t in graph[model] if (t + ".").startswith("musicgym.envs."))
        assert envs == [], f"{model} imports {envs}"


def test_pyproject_installs_every_package_folder():
    """``packages`` names every folder with an ``__init__.py``; ``package-dir`` maps each floor
    to its folder (setuptools finds a floor's sub-packages below it)."""
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {
        name: path.parent.relative_to(ROOT).as_posix()
        for name, path in module_files().items()
        if path.name == "__init__.py"
    }
    assert sorted(setuptools["packages"]) == sorted(packages)
    assert setuptools["package-dir"] == {floor: packages[floor] for floor in FLOORS}
