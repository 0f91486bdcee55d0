"""The layering the layout promises, checked on the import graph of the repository's own packages.

The graph is read with ``ast``, not by importing: every ``import`` counts, at
module level, inside functions and under ``if TYPE_CHECKING:`` alike. Importing
``a.b.c`` also runs the package ``a.b``, so it counts as an edge to ``a.b`` too
(unless the importer lives inside ``a.b``, which is then already running).
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("growth", "app", "worker", "migrations")


def module_files(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted module name → file, for every ``.py`` file under ``packages``."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names.add(prefix)
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` only mod.
            names.update(f"{prefix}.{alias.name}" for alias in node.names)
    return names


def import_graph(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    """Module → the repository modules it imports (see the module docstring for what counts)."""
    modules = module_files(root, packages)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        own_packages = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        if is_package:
            own_packages.add(module)
        targets: set[str] = set()
        for name in _imported_names(ast.parse(path.read_text(), str(path)), module, is_package):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                target = ".".join(parts[:i])
                if target in modules and target not in own_packages and target != module:
                    targets.add(target)
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_finder_sees_a_cycle_closed_by_a_type_checking_import(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from .sub import b\n")
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..a import thing\n"
    )
    (tmp_path / "pkg" / "c.py").write_text("def f():\n    import pkg.a\n")
    graph = import_graph(tmp_path, ("pkg",))
    assert graph["pkg.a"] == {"pkg.sub", "pkg.sub.b"}
    assert graph["pkg.c"] == {"pkg.a"}
    assert cycles(graph) == [["pkg.a", "pkg.sub.b"]]


def test_growth_has_no_import_cycle() -> None:
    graph = import_graph()
    growth = {m: {t for t in targets if _in(t, "growth")} for m, targets in graph.items() if _in(m, "growth")}
    assert len(growth) > 20  # the walk found the library
    assert cycles(growth) == []


def test_growth_imports_nothing_from_the_service() -> None:
    graph = import_graph()
    service = ("app", "worker", "migrations")
    leaks = {m: sorted(t for t in targets if any(_in(t, p) for p in service))
             for m, targets in graph.items() if _in(m, "growth")}
    assert {m: t for m, t in leaks.items() if t} == {}


# --------------------------------------------------------------------------- app/ and worker/

RUNNERS = "worker.runners"


def _imports_of(graph: dict[str, set[str]], package: str, forbidden: str) -> dict[str, list[str]]:
    """Modules inside ``package`` that import something inside ``forbidden``, with what they import."""
    leaks = {m: sorted(t for t in targets if _in(t, forbidden)) for m, targets in graph.items() if _in(m, package)}
    return {m: t for m, t in leaks.items() if t}


def test_the_graph_sees_imports_inside_functions_and_type_checking_blocks(tmp_path: Path) -> None:
    # The checks below are only worth something if a hidden import shows up as an edge.
    (tmp_path / "app").mkdir()
    (tmp_path / "worker" / "runners").mkdir(parents=True)
    for package in ("app", "worker", "worker/runners"):
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "worker" / "runners" / "embedded.py").write_text("")
    (tmp_path / "worker" / "runners" / "tasks.py").write_text("")
    (tmp_path / "app" / "typed.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from worker.runners import embedded\n")
    (tmp_path / "app" / "lazy.py").write_text("def f():\n    import worker.runners.tasks\n")
    graph = import_graph(tmp_path, ("app", "worker"))
    assert _imports_of(graph, "app", RUNNERS) == {
        "app.lazy": ["worker.runners", "worker.runners.tasks"],
        "app.typed": ["worker.runners", "worker.runners.embedded"]}


def test_app_imports_nothing_from_the_runners() -> None:
    graph = import_graph()
    assert any(target.startswith("worker.store") for target in graph["app.api.routes.jobs"])  # the graph is real
    assert _imports_of(graph, "app", RUNNERS) == {}


def test_the_job_store_imports_nothing_from_the_runners() -> None:
    graph = import_graph()
    assert "worker.store.session" in graph["worker.store.jobs"]
    assert _imports_of(graph, "worker.store", RUNNERS) == {}
    assert _imports_of(graph, "worker.store", "app") == {}
    assert not graph["worker"], "worker/__init__.py runs for every worker import: it imports nothing"


def test_the_runner_the_store_starts_by_name_exists() -> None:
    # The one place the store reaches a runner: by import path, so a rename must show up here.
    import pkgutil

    from worker.runners.embedded import start_embedded
    from worker.store.dispatch import IN_PROCESS_RUNNER

    assert pkgutil.resolve_name(IN_PROCESS_RUNNER) is start_embedded
