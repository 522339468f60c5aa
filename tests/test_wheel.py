"""The built wheel works on its own: installed in a fresh venv and run from another directory.

Builds the wheel from this checkout, installs it (without dependencies) in a
new virtual environment whose only view of lark, numpy and networkx is this
dev venv's site-packages (added by a .pth line, which does not activate the
editable install living there), then runs the `nnc` console script of the new
venv on an absolute path from a temporary directory. The grammar must come
from inside the wheel (grammars/ is force-included as nnc/grammars).
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import REPO


def run(*cmd, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """Build the wheel, make a fresh venv, install it; {wheel, venv, bin, site, elsewhere}."""
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", dist, REPO,
        cwd=root)
    (wheel,) = dist.glob("nnc-*.whl")
    venv = root / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=root)
    run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--no-deps", "--quiet", wheel,
        cwd=root)
    site = Path(run(venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                    cwd=root).stdout.strip())
    (site / "dev_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    return {"wheel": wheel, "venv": venv, "bin": venv / "bin", "site": site, "elsewhere": elsewhere, "env": env}


def test_wheel_contains_the_package_and_the_grammar(installed):
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    assert "nnc/__init__.py" in names and "nnc/cli/main.py" in names and "nnc/ir/ops/registry.py" in names
    assert "nnc/grammars/nn.lark" in names
    assert not any(n.startswith(("tests/", "examples/", "grammars/")) for n in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "nnc = nnc.cli:main" in zipfile.ZipFile(installed["wheel"]).read(entry_points).decode()


def test_installed_nnc_checks_a_model_from_another_directory(installed):
    model = (REPO / "examples" / "lenet5.nn").resolve()
    result = run(installed["bin"] / "nnc", "check", model, cwd=installed["elsewhere"], env=installed["env"])
    assert result.stdout.startswith(f"model lenet5  ({model})")
    assert "[B, 16, 5, 5]" in result.stdout and "parameters: 61,706 trainable" in result.stdout
    assert result.stderr == ""


def test_nnc_and_its_grammar_come_from_the_fresh_venv(installed):
    probe = ("import nnc, nnc.front.syntax, pathlib; from importlib import resources; "
             "print(nnc.__file__); print(resources.files('nnc').joinpath('grammars', 'nn.lark')); "
             "grammar = resources.files('nnc') / 'grammars' / 'nn.lark'; "
             "print(nnc.front.syntax.grammar_text() == open(str(grammar)).read())")
    lines = run(installed["bin"] / "python", "-c", probe, cwd=installed["elsewhere"],
                env=installed["env"]).stdout.splitlines()
    venv = installed["venv"].resolve()
    assert Path(lines[0]).resolve().is_relative_to(venv), lines[0]
    assert Path(lines[1]).resolve().is_relative_to(venv) and Path(lines[1]).is_file()
    assert lines[2] == "True"
    # the source-tree fallback (grammars/ beside the package) does not exist in an installed package
    assert not (Path(lines[0]).parent.parent / "grammars").exists()
    assert (REPO / "grammars" / "nn.lark").read_text() == Path(lines[1]).read_text()


def test_installed_eval_and_errors(installed):
    circuit = (REPO / "examples" / "circuit.nn").resolve()
    result = run(installed["bin"] / "nnc", "eval", circuit, "--at", "x=-2", "y=5", "z=-4", cwd=installed["elsewhere"],
                 env=installed["env"])
    assert result.stdout == "f = -12\n"
    bad = installed["elsewhere"] / "bad.nn"
    bad.write_text("model m {\n  input x: [B, 4]\n  y = dense(x)\n  output y\n}\n")
    proc = subprocess.run([str(installed["bin"] / "nnc"), "check", "bad.nn"], cwd=installed["elsewhere"],
                          env=installed["env"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.startswith("bad.nn:3:7: error: dense: missing argument 'units'")
