"""The package's layers depend one way (docs/architecture.md): a test of the import graph.

Every `import` and `from ... import` of an nnc module counts, at module level
and inside functions alike. Each module belongs to one layer; a layer may use
only the layers listed for it, and no modules import each other in a cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys

import networkx as nx
import pytest
from conftest import REPO, nnc_env

PACKAGE = REPO / "nnc"

# layer -> the module prefixes it holds (the longest prefix wins)
LAYERS = {
    "base": ("nnc.errors", "nnc.fileio", "nnc.limits", "nnc.text", "nnc.specs", "nnc.version"),
    "ir": ("nnc.ir",),
    "front end": ("nnc.front",),
    "transformations": ("nnc.passes",),
    "backend": ("nnc.backend",),
    "runtime": ("nnc.runtime",),
    "data": ("nnc.data",),
    "training": ("nnc.train",),
    "viz": ("nnc.viz",),
    "interchange": ("nnc.onnx",),
    "facade": ("nnc", "nnc.model", "nnc.summary"),
    "commands": ("nnc.cli", "nnc.__main__"),
}
# layer -> the layers it may import (besides itself)
USES = {
    "base": set(),
    "ir": {"base"},
    "front end": {"base", "ir"},
    "transformations": {"base", "ir"},
    "backend": {"base", "ir"},
    "runtime": {"base", "ir", "transformations", "backend"},
    "data": {"base", "ir", "runtime"},
    "training": {"base", "ir", "transformations", "backend", "runtime", "data"},
    "viz": {"base", "ir", "transformations", "backend", "runtime"},
    "interchange": {"base", "ir", "front end", "transformations", "backend", "runtime"},
    "facade": {"base", "ir", "front end", "transformations", "backend", "runtime", "data", "training", "viz",
               "interchange"},
    "commands": set(LAYERS) - {"commands"},
}


def module_name(path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str, path, known: set) -> set:
    """The nnc modules `name` imports anywhere in its body."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").split(".")[0] == "nnc":
                target = node.module
            else:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    return {m for m in found if m in known and m != name}


def import_graph() -> nx.DiGraph:
    mods = modules()
    g = nx.DiGraph()
    g.add_nodes_from(mods)
    for name, path in mods.items():
        g.add_edges_from((name, target) for target in imports_of(name, path, set(mods)))
    return g


def layer_of(module: str) -> str:
    best = max(((prefix, layer) for layer, prefixes in LAYERS.items() for prefix in prefixes
                if module == prefix or module.startswith(prefix + ".")), key=lambda pl: len(pl[0]))
    return best[1]


def test_every_module_is_in_a_layer():
    for module in modules():
        assert layer_of(module) in USES, module


def test_no_import_cycles():
    cycles = [sorted(c) for c in nx.strongly_connected_components(import_graph()) if len(c) > 1]
    assert not cycles, f"modules importing each other: {cycles}"


def test_layers_import_only_the_layers_below_them():
    wrong = []
    for a, b in import_graph().edges:
        la, lb = layer_of(a), layer_of(b)
        if la != lb and lb not in USES[la]:
            wrong.append(f"{a} ({la}) imports {b} ({lb})")
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    """A guard on the guard: an import inside a function, relative, is an edge of the graph."""
    path = tmp_path / "probe.py"
    path.write_text("def f():\n    from ..viz import render\n    from . import fusion\n")
    found = imports_of("nnc.backend.probe", path, {"nnc.viz.render", "nnc.viz", "nnc.backend.fusion"})
    assert found == {"nnc.viz.render", "nnc.backend.fusion"}


@pytest.mark.parametrize("module", ["nnc.ir.graph", "nnc.front.builder", "nnc.passes.pipeline", "nnc"])
def test_building_and_transforming_graphs_does_not_load_llvm(module):
    probe = f"import sys, {module}; print('llvmlite' in sys.modules, 'matplotlib' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], env=nnc_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"], f"importing {module} loads llvmlite or matplotlib"
