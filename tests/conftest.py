"""Shared test setup: the data directory, paths of the repository, and running `nnc` as a user would.

`NNC_DATA_DIR` defaults to `<repo>/../shared/data` (where the MNIST files live)
unless the environment already sets it; `NNC_VERIFY_PASSES=1` checks the graph
invariants after every pass of every pipeline that runs in the tests. The `run_nnc` fixture runs the command
line in a subprocess (`sys.executable -m nnc ...`) so exit statuses, stdout and
stderr are exactly what a user sees.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.nn"))

os.environ.setdefault("NNC_DATA_DIR", str(REPO.parent / "shared" / "data"))
os.environ["NNC_VERIFY_PASSES"] = "1"   # every pass of every pipeline is followed by verify(), here and in subprocesses


@dataclass
class Completed:
    """What one `nnc` invocation did: exit status and the text it printed."""

    returncode: int
    stdout: str
    stderr: str


def nnc_env() -> dict:
    """The environment for a subprocess: this checkout's nnc first on the path, no colour, no .pyc files."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("NNC_DEBUG", None)
    return env


def run_cli(*args, cwd: Path | str = REPO, timeout: float = 120) -> Completed:
    """Run `python -m nnc ARGS` and capture its output."""
    proc = subprocess.run([sys.executable, "-m", "nnc", *map(str, args)], cwd=cwd, env=nnc_env(),
                          capture_output=True, text=True, timeout=timeout)
    return Completed(proc.returncode, proc.stdout, proc.stderr)


def run_main(*args, cwd: Path | str = REPO) -> Completed:
    """Run the same entry point in this process: for the many cases where a fresh interpreter adds only time.

    Exit statuses match a subprocess (`python -m nnc` exits with what `main` returns, argparse exits 2).
    """
    from nnc.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main([str(a) for a in args])
            except SystemExit as exc:
                status = exc.code
    finally:
        os.chdir(here)
    return Completed(status, out.getvalue(), err.getvalue())


@pytest.fixture
def run_nnc():
    """`run_nnc("check", "examples/circuit.nn")` -> Completed(returncode, stdout, stderr)."""
    return run_cli


@pytest.fixture(params=EXAMPLE_FILES, ids=lambda p: p.stem)
def example(request) -> Path:
    """Each model file of examples/, one test per file."""
    return request.param


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """(the dataset tests) A private NNC_DATA_DIR and XDG_CACHE_HOME (both empty) and no mirror override."""
    user, xdg = tmp_path / "user-data", tmp_path / "xdg-cache"
    user.mkdir()
    monkeypatch.setenv("NNC_DATA_DIR", str(user))
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    monkeypatch.delenv("NNC_DATASET_MIRROR", raising=False)
    return user, xdg / "nnc" / "datasets"
