"""The command line as a package (nnc/cli): one module per command, the shared options declared once (in
options.py), no module reaching into another's private names or argparse's, and nothing below the commands
importing them."""

from __future__ import annotations

import ast

import pytest
from conftest import REPO

from nnc.cli.main import COMMANDS, make_parser

# the smallest command line each command accepts, for finding the function it runs
ARGV = {"check": ["m.nn"], "eval": ["m.nn"], "predict": ["m.nn", "--input", "x.png"], "grad": ["m.nn"],
        "run": ["m.nn"], "generate": ["m.nn", "--prime", "a"],
        "explain": ["m.nn"], "viz": [], "compile": ["m.nn"], "bench": ["m.nn"], "export": ["m.nn"],
        "import": ["m.onnx"]}


def python_files(*folders: str):
    for folder in folders:
        yield from sorted((REPO / folder).rglob("*.py"))


def imports(path):
    """(module imported from, name) for every `from ... import` of the file, and (module, None) for `import`."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            yield from ((module, alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from ((alias.name, None) for alias in node.names)


@pytest.mark.parametrize("module", [m.__name__.rsplit(".", 1)[1] for m in COMMANDS])
def test_each_command_runs_a_function_of_its_own_module(module):
    name = module.rstrip("_")   # nnc import: nnc/cli/import_.py (import is a Python keyword)
    args = make_parser().parse_args([name, *ARGV[name]])
    assert args.command == name and args.func.__module__ == f"nnc.cli.{module}"


# options several commands share; `nnc run --seed` is its own option (no default: the train block's seed holds)
SHARED = ("--model", "--at", "--inputs", "--random-inputs", "--params", "--random-params", "--dtype", "--backend")


def declared_flags(path) -> list[str]:
    return [call.args[0].value for call in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "add_argument"
            and call.args and isinstance(call.args[0], ast.Constant)]


def test_shared_options_are_declared_once_in_options_py():
    declared = {path.name: declared_flags(path) for path in python_files("nnc/cli")}
    for flag in SHARED:
        where = [name for name, flags in declared.items() for f in flags if f == flag]
        assert where == ["options.py"], f"{flag} is declared in {where}"


def test_no_module_imports_a_private_name_of_another():
    private = [f"{path.relative_to(REPO)}: from {module} import {name}"
               for path in python_files("nnc/cli", "nnc/train", "nnc/viz", "bench")
               for module, name in imports(path)
               if name and name.startswith("_") and not name.startswith("__")]
    assert not private, "\n".join(private)


def test_only_the_commands_import_the_command_line():
    cli = REPO / "nnc" / "cli"
    outside = [f"{path.relative_to(REPO)}: from {module} import {name}"
               for path in python_files("nnc", "bench") if cli not in path.parents and path.name != "__main__.py"
               for module, name in imports(path)
               if module.startswith("nnc.cli") or module.lstrip(".").startswith("cli") or name == "cli"]
    assert not outside, "\n".join(outside)


def test_no_command_edits_argparse_internals():
    for path in python_files("nnc/cli"):
        assert "._actions" not in path.read_text(encoding="utf-8"), f"{path.relative_to(REPO)}: argparse's _actions"
