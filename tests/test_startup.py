"""What a command pays before it starts: `nnc check` imports neither the training stack nor LLVM, and the
grammar's parse tables come from nnc's cache folder after the first parse."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

from conftest import nnc_env

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

LOADED = """
import sys
from nnc.cli.main import main
status = main(sys.argv[1:])
heavy = ("llvmlite", "nnc.backend.jit", "nnc.train.trainer", "matplotlib")
print(status, *sorted(m for m in heavy if m in sys.modules))
"""


def loaded_by(argv: list[str], tmp_path) -> list[str]:
    env = dict(nnc_env(), NNC_CACHE_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", LOADED, *argv], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split("\n")[-2].split()


def test_check_imports_no_training_stack_and_no_llvm(tmp_path):
    assert loaded_by(["check", str(EXAMPLES / "lenet5.nn")], tmp_path) == ["0"]


def test_an_unknown_command_still_lists_every_command(tmp_path):
    env = dict(nnc_env(), NNC_CACHE_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-m", "nnc", "chek", "m.nn"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert "choose from 'check', 'eval', 'predict'" in done.stderr and "did you mean 'check'?" in done.stderr


def test_the_grammar_tables_are_cached(tmp_path):
    env = dict(nnc_env(), NNC_CACHE_DIR=str(tmp_path))
    code = "import nnc; nnc.load(sys.argv[1]); print('ok')"
    for _ in range(2):   # the first builds and writes the tables, the second reads them
        done = subprocess.run([sys.executable, "-c", "import sys; " + code, str(EXAMPLES / "xor.nn")], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.stdout == "ok\n", done.stderr
        assert (tmp_path / "grammar.lark-cache").stat().st_size > 1000


def test_check_loads_neither_the_passes_nor_the_runtime(tmp_path):
    """`nnc check` builds and shape-checks: what transforms or runs a graph (the pass pipeline, the interpreter,
    running, initializing and checkpoints) stays unloaded, so does difflib (for a mistake's hint), and numpy while
    the command line is read."""
    probe = """
import sys
from nnc.cli.main import main, make_parser, parse
parse(make_parser(sys.argv[1:]), sys.argv[1:])
before = 'numpy' in sys.modules
status = main(sys.argv[1:])
unused = ("nnc.passes.pipeline", "nnc.passes.autodiff", "nnc.ir.interp", "nnc.runtime.execute", "nnc.runtime.init",
          "nnc.runtime.checkpoint", "difflib")
print(status, before, *sorted(m for m in unused if m in sys.modules))
"""
    env = dict(nnc_env(), NNC_CACHE_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", probe, "check", str(EXAMPLES / "lenet5.nn")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2].split() == ["0", "False"]


def test_check_pauses_the_cycle_collector_and_restores_it(monkeypatch, capsys):
    """What `nnc check` loads lives until it exits, so the collector is paused while the command runs (it would
    only scan those objects again and again) and, in a Python session, is on again after it, nothing frozen."""
    import nnc.model
    from nnc.cli.main import main

    collecting, load_all = [], nnc.model.load_all

    def spy(path):
        collecting.append(gc.isenabled())
        return load_all(path)

    monkeypatch.setattr(nnc.model, "load_all", spy)
    frozen = gc.get_freeze_count()
    assert main(["check", str(EXAMPLES / "lenet5.nn")]) == 0 and "lenet5" in capsys.readouterr().out
    assert main(["check", str(EXAMPLES / "lenet5.nn"), "--model", "x"]) == 1   # a mistake ends it too
    assert "has no model 'x'" in capsys.readouterr().err
    assert collecting == [False, False] and gc.isenabled() and gc.get_freeze_count() == frozen


def test_check_as_the_program_leaves_what_it_loaded_to_the_exit(tmp_path):
    """Run as the program (`nnc check`: main() reads the command line), the process ends with the command: what it
    loaded is frozen out of the collector's scans, which Python's exit would make once more."""
    probe = "import gc, sys; from nnc.cli.main import main; print(main(), gc.get_freeze_count() > 1000, gc.isenabled())"
    env = dict(nnc_env(), NNC_CACHE_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", probe, "check", str(EXAMPLES / "lenet5.nn")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2].split() == ["0", "True", "True"]
