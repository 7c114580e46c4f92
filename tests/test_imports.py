"""The shape of the code: one-way imports, no cycles, a network that depends on torch alone, and
no script that edits sys.path to find the package (setup installs it)."""

from __future__ import annotations

import ast
import subprocess
import sys

from conftest import ROOT

PACKAGE = ROOT / "bert4rec"
# What model.py may import: torch, and two leaf modules that import only torch themselves.
NETWORK_IMPORTS = {"vocab", "packed_dropout"}


def project_imports(path) -> set[str]:
    """The bert4rec modules a file imports, anywhere in it (inside functions too: an import
    hidden in a function is still a dependency, and still a cycle)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:
                found.update(alias.name for alias in node.names)
            elif node.module and node.module.split(".")[0] == "bert4rec":
                parts = node.module.split(".")
                found.update([parts[1]] if len(parts) > 1 else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "bert4rec" and len(parts) > 1:
                    found.add(parts[1])
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    return found & modules - {path.stem}


def import_graph() -> dict[str, set[str]]:
    return {p.stem: project_imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}


def test_every_module_imports_alone_in_a_fresh_interpreter():
    names = sorted(import_graph())
    code = "import importlib, sys\nfor n in sys.argv[1:]: importlib.import_module('bert4rec.' + n)"
    result = subprocess.run(
        [sys.executable, "-c", code, *names], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr


def test_no_import_cycle_in_the_package():
    graph = import_graph()
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = path[path.index(name) :] + [name]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        for dependency in sorted(graph.get(name, ())):
            visit(dependency, [*path, name])
        done.add(name)

    for module in sorted(graph):
        visit(module, [])


def test_the_network_depends_on_torch_alone():
    graph = import_graph()
    assert graph["model"] <= NETWORK_IMPORTS, graph["model"]
    for leaf in NETWORK_IMPORTS:
        assert graph[leaf] == set(), (leaf, graph[leaf])
    tree = ast.parse((PACKAGE / "model.py").read_text(encoding="utf-8"))
    outside = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
    }
    assert outside <= {"torch", "__future__", "dataclasses"}, outside


def project_files() -> list:
    """The project's own Python files (not .venv's, nor other hidden folders')."""
    folders = [p for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return [*ROOT.glob("*.py"), *(f for folder in folders for f in folder.rglob("*.py"))]


def test_no_file_edits_sys_path():
    edits = ("sys.path.insert", "sys.path.append")
    offenders = [
        str(path.relative_to(ROOT))
        for path in project_files()
        if path.name != "test_imports.py"
        and any(edit in path.read_text(encoding="utf-8") for edit in edits)
    ]
    assert offenders == []
