"""`nnc run`, `nnc eval --data` and `nnc predict`: training that users can trust.

Small built-in sets keep these fast; one MNIST run checks the real loader,
the native train step and the reported metrics together.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import nnc
from nnc.cli.main import main, make_parser

ROOT = Path(__file__).resolve().parent.parent


def run(*argv) -> int:
    return main([str(a) for a in argv])


def history(folder: Path) -> list[dict]:
    with open(folder / "history.csv") as f:
        return list(csv.DictReader(f))


def test_xor_learns_all_four_cases(tmp_path, capsys):
    out = tmp_path / "xor"
    assert run("run", ROOT / "examples/xor.nn", "--out", out, "--metrics-json", tmp_path / "m.json") == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["test_accuracy"] == 1.0
    assert set(metrics) >= {"test_accuracy", "test_loss", "train_loss", "epochs", "seconds", "samples_per_second"}
    for name in ("checkpoint.npz", "metrics.json", "history.csv", "curves.png", "confusion.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(history(out)) == 300
    text = capsys.readouterr().out
    assert "test accuracy 100.00%" in text and "confusion matrix" in text


def test_same_seed_same_loss_curve_and_another_seed_differs(tmp_path):
    curves = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        assert run("run", ROOT / "examples/xor.nn", "--epochs", 20, "--seed", seed, "--out", tmp_path / name,
                   "--quiet") == 0
        curves.append([row["train_loss"] for row in history(tmp_path / name)])
    assert curves[0] == curves[1]
    assert curves[0] != curves[2]


def test_resume_continues_exactly(tmp_path):
    assert run("run", ROOT / "examples/xor.nn", "--epochs", 12, "--out", tmp_path / "full", "--quiet") == 0
    assert run("run", ROOT / "examples/xor.nn", "--epochs", 5, "--out", tmp_path / "part", "--quiet") == 0
    assert run("run", ROOT / "examples/xor.nn", "--epochs", 12, "--resume", tmp_path / "part", "--quiet") == 0
    full = [row["train_loss"] for row in history(tmp_path / "full")]
    resumed = [row["train_loss"] for row in history(tmp_path / "part")]
    assert resumed == full


def test_linreg_recovers_the_least_squares_line(tmp_path, capsys):
    assert run("run", ROOT / "examples/linreg.nn", "--out", tmp_path / "lr") == 0
    from nnc.runtime.checkpoint import load

    arrays, _ = load(tmp_path / "lr" / "checkpoint.npz")
    assert float(arrays["a"].reshape(())) == pytest.approx(2.3, abs=0.05)
    assert float(arrays["b"].reshape(())) == pytest.approx(79, abs=0.05)
    assert "fitted parameters" in capsys.readouterr().out


@pytest.mark.parametrize("gate,truth", [("and_gate", [0, 0, 0, 1]), ("or_gate", [0, 1, 1, 1])])
def test_gates_get_every_case_right(tmp_path, gate, truth, capsys):
    out = tmp_path / gate
    assert run("run", ROOT / f"examples/{gate}.nn", "--epochs", 5, "--out", out) == 0
    assert json.loads((out / "metrics.json").read_text())["test_accuracy"] == 1.0
    x = tmp_path / "x.npy"
    np.save(x, np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32))
    capsys.readouterr()
    assert run("predict", ROOT / f"examples/{gate}.nn", "--params", out / "checkpoint.npz", "--input", x) == 0
    classes = [int(line.split("(class ")[1][0]) for line in capsys.readouterr().out.splitlines()]
    assert classes == truth


def test_interrupt_saves_a_checkpoint_and_says_how_to_resume(tmp_path):
    out = tmp_path / "int"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "nnc", "run", str(ROOT / "examples/xor.nn"), "--epochs", "100000",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    line = ""
    while "epoch 1/" not in line and time.monotonic() < deadline:
        line = proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert stdout.splitlines()[-1] == f"resume with: nnc run {ROOT / 'examples/xor.nn'} --resume {out}"
    assert (out / "checkpoint.npz").exists()
    assert "Traceback" not in stderr


def test_a_diverging_run_names_the_first_bad_node_and_keeps_a_checkpoint(tmp_path, capsys):
    model = tmp_path / "diverge.nn"
    model.write_text("""model diverge {
  input  x: [B, 1]
  input  y: [B, 1]
  param  a: [1, 1] = zeros
  pred = x @ a
  output pred
  loss mse(pred, y)
}
train { optimizer = sgd(lr=1.0) batch = 4 epochs = 50 }
""")
    data = tmp_path / "d.csv"
    data.write_text("x,y\n10,1\n20,2\n30,3\n40,4\n")
    assert run("run", model, "--data", data, "--target", "y", "--out", tmp_path / "run") == 1
    err = capsys.readouterr().err
    assert "training stopped: the loss became inf" in err
    assert "diverge.nn:7:8: error:" in err and "first non-finite value" in err
    assert "kept the last good checkpoint" in err
    from nnc.runtime.checkpoint import load

    arrays, meta = load(tmp_path / "run" / "checkpoint.npz")
    assert all(np.isfinite(v).all() for v in arrays.values())


def test_eval_a_checkpoint_on_the_test_set_and_reject_another_models(tmp_path, capsys):
    out = tmp_path / "xor"
    assert run("run", ROOT / "examples/xor.nn", "--out", out, "--quiet") == 0
    assert run("eval", ROOT / "examples/xor.nn", "--params", out / "checkpoint.npz", "--data", "xor") == 0
    assert "accuracy 100.00%" in capsys.readouterr().out
    assert run("eval", ROOT / "examples/mnist_mlp.nn", "--params", out / "checkpoint.npz", "--data", "mnist") == 1
    err = capsys.readouterr().err
    assert "checkpoint.npz: error: the parameters do not fit this model: missing 'h1.weight'" in err


def test_reference_backend_gives_the_same_run(tmp_path):
    for backend in ("llvm", "reference"):
        assert run("run", ROOT / "examples/xor.nn", "--epochs", 10, "--backend", backend,
                   "--out", tmp_path / backend, "--quiet") == 0
    a = [float(r["train_loss"]) for r in history(tmp_path / "llvm")]
    b = [float(r["train_loss"]) for r in history(tmp_path / "reference")]
    np.testing.assert_allclose(a, b, rtol=1e-4)


def test_mnist_mlp_one_epoch_on_real_data(tmp_path, capsys):
    out = tmp_path / "mnist"
    assert run("run", ROOT / "examples/mnist_mlp.nn", "--data", "mnist", "--epochs", 1, "--val", 0.1,
               "--out", out) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.94
    rows = history(out)
    assert rows[0]["val_accuracy"] and float(rows[0]["val_accuracy"]) > 0.93
    text = capsys.readouterr().out
    assert "54,000 train, 6,000 val, 10,000 test" in text


def test_optimizer_flag_keeps_the_train_blocks_lr_setting():
    import argparse

    import nnc
    from nnc.cli.run import config_from

    model = nnc.loads("model m { input x: [B, 1] y = dense(x, 1) output y loss mean(y) } "
                      "train { optimizer = sgd lr = 0.5 }")
    flags = dict(optimizer=None, lr=None, schedule=None, epochs=None, batch=None, weight_decay=None, clip=None,
                 seed=None, backend="reference", threads=None, steps=None, freeze=None, early_stop=None,
                 snapshots=None)
    assert config_from(model, argparse.Namespace(**flags)).optimizer.args["lr"] == 0.5
    flags["optimizer"] = "momentum"
    assert config_from(model, argparse.Namespace(**flags)).optimizer.args == {
        "lr": 0.5, "momentum": 0.9, "nesterov": False}
    flags["lr"] = 0.2
    assert config_from(model, argparse.Namespace(**flags)).optimizer.args["lr"] == 0.2


def test_run_uses_the_cores_it_may_run_on_unless_told(monkeypatch):
    from nnc.cli import run as run_module
    from nnc.train import config as config_module

    monkeypatch.setattr(config_module.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert config_module.default_threads() == 3
    monkeypatch.setattr(config_module.os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert config_module.default_threads() == config_module.MAX_DEFAULT_THREADS
    model = nnc.load(ROOT / "examples/xor.nn")
    args = make_parser().parse_args(["run", "examples/xor.nn"])
    assert run_module.config_from(model, args).threads == config_module.MAX_DEFAULT_THREADS
    args = make_parser().parse_args(["run", "examples/xor.nn", "--threads", "1"])
    assert run_module.config_from(model, args).threads == 1


def test_a_class_index_computed_out_of_range_is_located(tmp_path, capsys):
    model = tmp_path / "shifted.nn"
    model.write_text("model shifted {\n  input x: [B, 2]\n  input label: int[B]\n  logits = dense(x, 3)\n"
                     "  output logits\n  loss cross_entropy(logits, label + 3)\n}\n")
    assert run("run", model, "--data", "spiral", "--epochs", 1, "--out", tmp_path / "run", "--quiet") == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{model}:6:8: error: labels out of range: got class 3, expected 0 to 2"), err
