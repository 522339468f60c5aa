"""The `nnc` command as a user runs it: exit statuses, stdout and stderr.

Exit 0 on success, 1 for a mistake in the model or the data (one located
message, never a traceback), 2 for bad command-line usage (argparse), and a
traceback only with --debug.

`run_cli` starts `python -m nnc` in a subprocess; `run_main` calls the same
entry point in this process, for the many variations where a fresh interpreter
(about a second each) would add only time. Every behaviour a process adds
(exit status, tracebacks, the console script) is checked in real processes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLE_FILES, REPO, nnc_env, run_cli, run_main

import nnc

CIRCUIT = "examples/circuit.nn"
AT = ["--at", "x=-2", "y=5", "z=-4"]


def no_traceback(result) -> None:
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout


@pytest.fixture(scope="module")
def checked_examples() -> dict:
    """`nnc check` on every example, in this process (27 fresh interpreters took ten seconds; what the process
    itself does is tested by the `run_cli` tests here, test_startup.py and test_wheel.py): {path: result}."""
    return {path: run_main("check", path.relative_to(REPO)) for path in EXAMPLE_FILES}


# ---- nnc check ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_check_passes_every_example_and_prints_the_summary(path, checked_examples):
    result = checked_examples[path]
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    model = nnc.load(path)
    assert lines[0] == f"model {model.name}  (examples/{path.name})"
    assert lines[2].split() == ["name", "op", "output", "shape", "params", "MACs"]
    assert any(line.startswith(" parameters: ") for line in lines)
    assert any(line.startswith(" graph: ") and line.endswith(" primitive ops") for line in lines)
    for name in model.inputs:
        assert any(line.split()[:2] == [name, "input"] for line in lines)


def test_check_summary_of_lenet(checked_examples):
    text = checked_examples[REPO / "examples" / "lenet5.nn"].stdout
    rows = {line.split()[0]: line for line in text.splitlines()[4:] if line.startswith(" ") and "─" not in line}
    assert "conv2d → relu → maxpool" in rows["c1"] and "[B, 6, 14, 14]" in rows["c1"]
    assert rows["c1"].split()[-2:] == ["156", "117,600"]                  # params, MACs: 28·28·6·25
    assert "[B, 16, 5, 5]" in rows["c2"] and rows["c2"].split()[-2:] == ["2,416", "240,000"]
    assert "flatten → dense → relu" in rows["h1"] and rows["h1"].split()[-2:] == ["48,120", "48,000"]
    assert " outputs: logits [B, 10]" in text and " loss: cross_entropy" in text


def test_check_every_model_of_a_file_or_the_one_named(tmp_path):
    path = tmp_path / "two.nn"
    path.write_text("model first { input x output x }\nmodel second { input y z = -y output z }\n")
    both = run_main("check", path.name, cwd=tmp_path)
    assert both.returncode == 0
    assert "model first  (two.nn)" in both.stdout and "model second  (two.nn)" in both.stdout
    one = run_main("check", path.name, "--model", "second", cwd=tmp_path)
    assert one.returncode == 0 and "model first" not in one.stdout and "model second" in one.stdout
    missing = run_main("check", path.name, "--model", "third", cwd=tmp_path)
    assert missing.returncode == 1 and "has no model 'third'" in missing.stderr


def test_check_a_missing_file():
    result = run_main("check", "no/such/model.nn")
    assert result.returncode == 1, result.stderr
    assert result.stderr == "error: no such file: no/such/model.nn\n"
    assert result.stdout == ""


# ---- nnc eval ----------------------------------------------------------------------------------


def test_eval_circuit():
    result = run_cli("eval", CIRCUIT, *AT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "f = -12\n"
    assert result.stderr == ""


def test_eval_takes_json_lists_and_float64():
    result = run_main("eval", "examples/and_gate.nn", "--at", "x=[[0,0],[0,1],[1,0],[1,1]]", "--dtype", "float64")
    assert result.returncode == 0, result.stderr
    values = [float(v) for v in re.findall(r"[-\d.e]+", result.stdout.split("=", 1)[1])]
    assert np.round(values).tolist() == [0, 0, 0, 1]


def test_eval_prints_the_loss_when_its_inputs_are_given():
    result = run_main("eval", "examples/linreg.nn", "--at", "x=[[2],[4],[6],[8]]", "y=[[81],[93],[91],[97]]")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == f"loss = {np.mean(np.square([81, 93, 91, 97])):.0f}"


def test_out_save_params_and_params_round_trip(tmp_path):
    inputs = tmp_path / "in.npz"
    rng = np.random.default_rng(0)
    np.savez(inputs, x=rng.normal(size=(5, 2)), target=rng.random((5, 1)))
    out, params = tmp_path / "out.npz", tmp_path / "params.npz"
    first = run_main("eval", "examples/xor.nn", "--inputs", inputs, "--random-params", "--seed", "3", "--out", out,
                     "--save-params", params)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("random parameters (seed 3): h.weight, z.weight\n")
    assert f"wrote {out}" in first.stdout and f"wrote {params}" in first.stdout
    with np.load(out) as saved:
        assert sorted(saved.files) == ["loss", "y"]
        y, loss = saved["y"], saved["loss"]
    assert y.shape == (5, 1) and loss.shape == ()
    with np.load(params) as saved:
        assert sorted(saved.files) == ["h.bias", "h.weight", "z.bias", "z.weight"]
        assert saved["h.weight"].shape == (2, 8)
        expected = nnc.load(REPO / "examples" / "xor.nn").init_params(seed=3)
        for name in saved.files:
            np.testing.assert_array_equal(saved[name], expected[name])
    # the same parameters read back with a different seed give the same outputs
    again_out = tmp_path / "again.npz"
    again = run_main("eval", "examples/xor.nn", "--inputs", inputs, "--params", params, "--seed", "9",
                    "--out", again_out)
    assert again.returncode == 0, again.stderr
    with np.load(again_out) as saved:
        np.testing.assert_array_equal(saved["y"], y)
    other = run_main("eval", "examples/xor.nn", "--inputs", inputs, "--random-params", "--seed", "9")
    assert other.returncode == 0 and other.stdout != first.stdout.split("wrote")[0]


def test_params_file_with_an_unknown_name(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, **{"h.wieght": np.zeros((2, 2))})
    result = run_main("eval", "examples/xor.nn", "--params", bad, "--at", "x=[[0,1]]")
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: unknown parameter 'h.wieght' for model 'xor'\nhint: the model's parameters")
    no_traceback(result)


def test_missing_input_is_a_located_error():
    result = run_cli("eval", CIRCUIT, "--at", "x=1")
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert result.stderr == ("examples/circuit.nn:5:9: error: missing input 'y': expected a number\n"
                             "    input y\n"
                             "          ^\n"
                             "hint: give it with --at y=VALUE or in --inputs FILE.npz\n")


@pytest.mark.parametrize("args, message", [
    (["--at", "x=1", "y=2", "z=3", "w=4"],
     "error: model 'circuit' has no input or parameter 'w'\nhint: its inputs are: x, y, z; it has no parameters\n"),
    (["--at", "x=[1,2]", "y=2", "z=3"], "examples/circuit.nn:4:9: error: input 'x' has shape [2], expected []"),
    (["--params", "missing.npz"] + AT, "error: no such file: missing.npz\n"),
    (["--inputs", "examples/circuit.nn"], "examples/circuit.nn: error: not an .npz archive of inputs\nhint: save"),
    (["--inputs", "examples/data/study_hours.csv"], "examples/data/study_hours.csv: error: not an .npz archive"),
    (["--out", "no/such/dir/out.npz"] + AT, "error: cannot write no/such/dir/out.npz: directory no/such/dir does not"),
])
def test_eval_data_mistakes_exit_1(args, message):
    result = run_main("eval", CIRCUIT, *args)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(message)
    no_traceback(result)


# ---- usage errors, --debug, --version, --help ------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--debug"], "the following arguments are required: COMMAND"),
    (["frobnicate", CIRCUIT], "argument COMMAND: invalid choice: 'frobnicate'"),
    (["check"], "the following arguments are required: MODEL.nn"),
    (["eval", CIRCUIT, "--bogus"], "unrecognized arguments: --bogus"),
    (["eval", CIRCUIT, "--seed", "-1"], "argument --seed: expected 0 or more, got -1"),
    (["eval", CIRCUIT, "--seed", "ten"], "argument --seed: expected a whole number, got 'ten'"),
    (["eval", CIRCUIT, "--at", "x"], "argument --at: expected NAME=VALUE, got 'x'"),
    (["eval", CIRCUIT, "--at", "x=abc"], "argument --at: x: expected a number or a list like [1, 2], got 'abc'"),
    (["eval", CIRCUIT, "--dtype", "float16"], "argument --dtype: invalid choice: 'float16'"),
])
def test_bad_usage_exits_2_like_argparse(args, message):
    result = run_main(*args)
    assert result.returncode == 2, result.stderr
    assert "usage: nnc" in result.stderr
    assert message in result.stderr
    assert result.stdout == ""
    no_traceback(result)


def test_bad_usage_in_a_real_process():
    result = run_cli("eval", CIRCUIT, "--seed", "-1")
    assert result.returncode == 2, result.stderr
    assert result.stderr.endswith("nnc eval: error: argument --seed: expected 0 or more, got -1\n")
    no_traceback(result)


def parallel(*calls) -> list:
    """Run several `run_cli` argument lists at once (cwd given as a keyword in a dict)."""
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return list(pool.map(lambda c: run_cli(*c[0], **c[1]), calls))


def test_debug_shows_the_traceback():
    results = parallel((["--debug", "eval", CIRCUIT, "--at", "x=1"], {}),
                       (["eval", "--debug", CIRCUIT, "--at", "x=1"], {}),
                       (["check", "--debug", "tests/errors/37_dense_needs_flatten.nn"], {}))
    for result in results:
        assert result.returncode == 1, result.stderr
        assert "Traceback (most recent call last)" in result.stderr
        assert "NncError" in result.stderr


def test_without_debug_no_traceback_even_for_broken_files(tmp_path):
    (tmp_path / "binary.nn").write_bytes(bytes(range(256)))
    (tmp_path / "empty.nn").write_text("")
    (tmp_path / "dir.nn").mkdir()
    names = ("binary.nn", "empty.nn", "dir.nn")
    for name, result in zip(names, parallel(*[(["check", name], {"cwd": tmp_path}) for name in names])):
        assert result.returncode == 1, name
        assert result.stderr.count("error: ") == 1
        no_traceback(result)


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout == f"nnc {nnc.__version__}\n"


def test_help_lists_the_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: nnc")
    for command in ("check", "eval"):
        assert re.search(rf"^\s+{command}\s+\S", result.stdout, re.M), command
    for command in ("check", "eval"):
        sub = run_main(command, "--help")
        assert sub.returncode == 0 and sub.stdout.startswith(f"usage: nnc {command}")
    assert "--save-params" in sub.stdout and "--at NAME=VALUE" in sub.stdout


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "nnc"
    assert script.exists(), "install the package: pip install -e '.[dev]'"
    import subprocess
    proc = subprocess.run([str(script), "eval", CIRCUIT, *AT], cwd=REPO, env=nnc_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout == "f = -12\n"


def test_a_reader_that_goes_away_is_not_an_error():
    # The IR is far more than a pipe holds, so nnc is still writing when head exits.
    proc = subprocess.run(f"{sys.executable} -m nnc compile examples/lenet5.nn --emit llvm | head -c 9", shell=True,
                          capture_output=True, text=True, cwd=REPO, env=nnc_env())
    assert proc.stdout == "; ModuleI"
    assert proc.stderr == ""


@pytest.mark.parametrize("suffix, kind", [(".npy", "a .npy array"), (".png", "a .png image"), (".npz", "an .npz file")])
def test_predict_given_a_folder(tmp_path, suffix, kind):
    folder = tmp_path / f"digit{suffix}"
    folder.mkdir()
    result = run_main("predict", "examples/mnist_mlp.nn", "--input", folder)
    assert result.returncode == 1, result.stderr
    assert result.stderr == f"error: {folder} is a directory, expected {kind}\n"
