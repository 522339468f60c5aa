"""What a command pays before it starts: `nnc check` imports neither the training stack nor LLVM, and the
grammar's parse tables come from nnc's cache folder after the first parse."""

from __future__ import annotations

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
