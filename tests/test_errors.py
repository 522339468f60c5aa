"""Golden error messages: each malformed model gets one exact, located message and exit status 1.

Every `tests/errors/NN_short_name.nn` is a model with one mistake and
`NN_short_name.err` is the exact stderr of `nnc check NN_short_name.nn` run
from inside tests/errors (so messages read `NN_short_name.nn:LINE:COL: error: ...`).
Each case must exit 1, print exactly its golden text and never a traceback.

After changing a message on purpose, rewrite the golden files and review the
diff as a user would read it:

    NNC_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_errors.py
    git diff tests/errors

A fresh interpreter per case costs about a second, so all cases run through
`nnc.cli.main` in one subprocess; a sample of them also runs as separate
`python -m nnc check` processes to show both paths print the same bytes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import nnc_env, run_cli

ERRORS = Path(__file__).resolve().parent / "errors"
CASES = sorted(ERRORS.glob("*.nn"))
UPDATE = os.environ.get("NNC_UPDATE_GOLDEN") == "1"
MIN_CASES = 30


# Runs each argv of a JSON list on stdin through the real entry point (conftest.run_main) in
# tests/errors, and answers a JSON list of [exit status, stdout, stderr].
BATCH_DRIVER = f"""
import json, sys
sys.path.insert(0, {str(ERRORS.parent)!r})
from conftest import run_main
results = [run_main(*argv, cwd={str(ERRORS)!r}) for argv in json.load(sys.stdin)]
json.dump([[r.returncode, r.stdout, r.stderr] for r in results], sys.stdout)
"""
SAMPLE = ("01_missing_brace", "04_not_utf8", "37_dense_needs_flatten", "70_shape_error_in_block", "77_no_model")


@pytest.fixture(scope="module")
def checked() -> dict:
    """Result of `nnc check` on every case, by file stem: {stem: (status, stdout, stderr)}."""
    argvs = [["check", case.name] for case in CASES]
    proc = subprocess.run([sys.executable, "-c", BATCH_DRIVER], input=json.dumps(argvs), cwd=ERRORS,
                          env=nnc_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return {case.stem: tuple(r) for case, r in zip(CASES, json.loads(proc.stdout))}


def test_there_are_enough_distinct_cases():
    assert len(CASES) >= MIN_CASES
    prefixes = [case.name.split("_", 1)[0] for case in CASES]
    assert len(set(prefixes)) == len(prefixes), "two cases share a number"
    assert all(p.isdigit() for p in prefixes), "cases are named NN_short_name.nn"
    texts = [case.read_bytes() for case in CASES]
    assert len(set(texts)) == len(texts), "two cases are the same model"


def test_every_golden_file_has_its_model():
    orphans = [err.name for err in ERRORS.glob("*.err") if not err.with_suffix(".nn").exists()]
    assert not orphans


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_golden_message(case: Path, checked: dict):
    status, stdout, stderr = checked[case.stem]
    assert "Traceback" not in stderr, stderr
    assert status == 1, f"exit {status}\n{stderr}"
    assert stdout == "", "a failed check prints nothing on stdout"
    golden = case.with_suffix(".err")
    if UPDATE:
        golden.write_text(stderr, encoding="utf-8")
    assert golden.exists(), f"no golden file {golden.name}; run with NNC_UPDATE_GOLDEN=1 and review it"
    assert stderr == golden.read_text(encoding="utf-8")


def test_separate_processes_print_the_same(checked: dict):
    """`python -m nnc check` as a user runs it: same status, same bytes, no traceback."""
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        results = list(pool.map(lambda stem: run_cli("check", f"{stem}.nn", cwd=ERRORS), SAMPLE))
    for stem, result in zip(SAMPLE, results):
        assert (result.returncode, result.stdout, result.stderr) == checked[stem]
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_message_is_one_located_error(case: Path, checked: dict):
    """The house format: `file:line:col: error: ...`, the source line, a caret (or `file: error:`)."""
    lines = checked[case.stem][2].splitlines()
    assert lines, "no message"
    assert lines[0].startswith(case.name + ":")
    assert sum(": error: " in line for line in lines) == 1
    if lines[0].startswith(f"{case.name}: error:"):
        return  # a whole-file error has no position
    assert len(lines) >= 3 and lines[2].lstrip().startswith("^"), "the source line and a caret follow"
    assert all(line.startswith(("  ", "note: ", "hint: ")) for line in lines[1:])
