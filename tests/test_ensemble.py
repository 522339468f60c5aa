"""Ensembles (`nnc eval --params A B C`: each member and the mean of their predictions) and models whose only
output is a scalar (`nnc run`'s final evaluation, `nnc eval`, `nnc predict`).

The members are short runs of a spiral classifier, of examples/xor.nn (a binary classifier whose output is
already a sigmoid's) and of a linear regression; the ensemble's figures are checked against NumPy on the
members' outputs from the Python API.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import EXAMPLES, run_cli, run_main

import nnc
from nnc.data import load_for_model
from nnc.runtime import checkpoint
from nnc.train.evaluator import EVAL_BATCH, Evaluator

SPIRAL = """model spiral_mlp {
  input  x: [B, 2]
  input  label: int[B]
  h      = relu(dense(x, 16))
  logits = dense(h, 3)
  output logits
  loss   cross_entropy(logits, label)
}
train { data = spiral  optimizer = adam(lr=0.01)  batch = 16  epochs = 3 }
"""
LINEAR = """model linear {
  input  x: [B, 2]
  input  t: [B, 1]
  param  w: [2, 1]
  y = x @ w
  output y
  loss   mse(y, t)
}
"""
SCALAR = """model scalar {
  input  x: [B, 2]
  input  t: [B, 1]
  param  w: [2, 1]
  y = x @ w
  s = mean(y)
  output s
  loss   mse(y, t)
}
train { optimizer = sgd(lr=0.05)  batch = 16  epochs = 3 }
"""
MEMBER = re.compile(r"member (\d) \((.+)\): test accuracy ([\d.]+)%, cross-entropy ([\d.]+)")
ENSEMBLE = re.compile(r"ensemble of (\d) \(mean of the probabilities\): "
                      r"test accuracy ([\d.]+)%, cross-entropy ([\d.]+)")


def table(path, n: int, seed: int) -> None:
    """x [n, 2] and t = x @ [1, -2] + noise, as an .npz dataset."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)).astype(np.float32)
    t = (x @ np.array([[1.0], [-2.0]], dtype=np.float32) + 0.1 * rng.normal(size=(n, 1))).astype(np.float32)
    np.savez(path, x=x, t=t)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two short spiral runs (seeds 1 and 2), two xor runs and two linear regressions, in one folder."""
    root = tmp_path_factory.mktemp("ensemble")
    (root / "spiral.nn").write_text(SPIRAL)
    (root / "linear.nn").write_text(LINEAR)
    table(root / "table.npz", 200, 0)
    for name, argv in (("a", [root / "spiral.nn"]), ("b", [root / "spiral.nn"]),
                       ("xa", [EXAMPLES / "xor.nn", "--epochs", 30]), ("xb", [EXAMPLES / "xor.nn", "--epochs", 30]),
                       ("la", [root / "linear.nn", "--data", root / "table.npz", "--epochs", 1]),
                       ("lb", [root / "linear.nn", "--data", root / "table.npz", "--epochs", 1])):
        seed = 2 if name.endswith("b") else 1
        done = run_main("run", *argv, "--seed", seed, "--out", root / name, "--quiet")
        assert done.returncode == 0, done.stderr
    return root


def mean_probabilities(model, members, inputs: dict, key: str, f) -> np.ndarray:
    """The members' output `key` from the Python API, through `f` (to probabilities), averaged."""
    return np.mean([f(model.eval(inputs, params=m)[key].astype(np.float64)) for m in members], axis=0)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_ensemble_scores_each_member_and_the_mean_of_their_probabilities(runs):
    a, b = runs / "a", runs / "b"
    done = run_main("eval", runs / "spiral.nn", "--data", "spiral", "--params", a, b)
    assert done.returncode == 0, done.stderr
    members = MEMBER.findall(done.stdout)
    assert [(i, where) for i, where, _, _ in members] == [("1", str(a)), ("2", str(b))]
    ensemble = ENSEMBLE.search(done.stdout)
    assert ensemble and ensemble.group(1) == "2", done.stdout

    # each member's line agrees with `nnc eval --params ONE` (its loss is the plain cross-entropy), which takes
    # the model file after --params as it always did
    for (_, where, accuracy, cross_entropy) in members:
        alone = run_main("eval", "--params", where, runs / "spiral.nn", "--data", "spiral")
        assert alone.returncode == 0, alone.stderr
        assert f"test loss {cross_entropy}  test accuracy {accuracy}%" in alone.stdout
        assert "member" not in alone.stdout and "confusion matrix" in alone.stdout

    # the ensemble's figures from the members' logits, with NumPy
    model = nnc.load(runs / "spiral.nn")
    test = load_for_model(model, data="spiral", val=0.0, seed=0).test
    p = mean_probabilities(model, [a, b], {"x": test["x"]}, "logits", softmax)
    labels = test["label"]
    assert float(ensemble.group(2)) == pytest.approx(100 * (p.argmax(axis=1) == labels).mean(), abs=0.006)
    assert float(ensemble.group(3)) == pytest.approx(-np.log(p[np.arange(len(p)), labels]).mean(), abs=6e-5)
    # and the two members differ: the test would not tell a mean of probabilities from one member otherwise
    assert members[0][3] != members[1][3]


def test_an_ensemble_of_one_run_twice_scores_as_that_run(runs):
    done = run_main("eval", "--params", runs / "a", runs / "a", runs / "spiral.nn", "--data", "spiral")
    assert done.returncode == 0, done.stderr
    member = MEMBER.search(done.stdout)
    ensemble = ENSEMBLE.search(done.stdout)
    assert (ensemble.group(2), ensemble.group(3)) == (member.group(3), member.group(4))
    assert len(MEMBER.findall(done.stdout)) == 2
    missing = run_main("eval", "--params", runs / "a", "--data", "spiral")
    assert missing.returncode == 2 and "the following arguments are required: MODEL.nn" in missing.stderr


def test_a_binary_ensemble_averages_the_sigmoid_outputs(runs):
    done = run_main("eval", EXAMPLES / "xor.nn", "--data", "xor", "--params", runs / "xa", runs / "xb")
    assert done.returncode == 0, done.stderr
    ensemble = ENSEMBLE.search(done.stdout)
    model = nnc.load(EXAMPLES / "xor.nn")
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    truth = np.array([0, 1, 1, 0])
    p = mean_probabilities(model, [runs / "xa", runs / "xb"], {"x": x}, "y", lambda y: y)[:, 0]  # y: sigmoid
    assert float(ensemble.group(2)) == pytest.approx(100 * ((p > 0.5) == truth).mean(), abs=0.006)
    bce = -np.mean(np.where(truth == 1, np.log(p), np.log(1 - p)))
    assert float(ensemble.group(3)) == pytest.approx(bce, abs=6e-5)


def test_a_regression_ensemble_averages_the_outputs(runs):
    done = run_main("eval", runs / "linear.nn", "--data", runs / "table.npz", "--params", runs / "la", runs / "lb")
    assert done.returncode == 0, done.stderr
    found = re.search(r"ensemble of 2 \(mean of the outputs\): test MSE ([\d.e-]+), MAE ([\d.e-]+)", done.stdout)
    assert found, done.stdout
    with np.load(runs / "table.npz") as f:
        x, t = f["x"], f["t"]
    model = nnc.load(runs / "linear.nn")
    y = mean_probabilities(model, [runs / "la", runs / "lb"], {"x": x}, "y", lambda y: y)
    assert float(found.group(1)) == pytest.approx(np.mean((y - t) ** 2), rel=1e-5)
    assert float(found.group(2)) == pytest.approx(np.mean(np.abs(y - t)), rel=1e-5)
    assert len(re.findall(r"member \d \(.+\): test MSE", done.stdout)) == 2


def test_the_outputs_of_an_ensemble_without_data_are_the_members_mean(runs, tmp_path):
    x = np.array([[0.5, 0.1], [-1.0, 0.3]], dtype=np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    spiral = runs / "spiral.nn"
    done = run_main("eval", spiral, "--params", runs / "a", runs / "b", "--inputs", tmp_path / "in.npz",
                    "--out", tmp_path / "out.npz")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"each value is the mean over the 2 members ({runs / 'a'}, {runs / 'b'}):\nlogits")
    model = nnc.load(spiral)
    expected = np.mean([model.eval({"x": x}, params=runs / m)["logits"] for m in "ab"], axis=0)
    with np.load(tmp_path / "out.npz") as out:
        np.testing.assert_allclose(out["logits"], expected, rtol=1e-6)
    refused = run_main("eval", spiral, "--params", runs / "a", runs / "b", "--inputs", tmp_path / "in.npz",
                       "--save-params", tmp_path / "p.npz")
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: --save-params writes one set of parameters: got 2 with --params")


def test_a_member_that_does_not_fit_is_named(runs, tmp_path):
    spiral = runs / "spiral.nn"
    other = run_main("eval", spiral, "--data", "spiral", "--params", runs / "a", runs / "xa")
    assert other.returncode == 1 and other.stdout == ""
    assert other.stderr.startswith(f"error: member 2 of the ensemble ({runs / 'xa'}): the parameters do not fit "
                                   "this model: 'h.weight' has shape [2, 8], expected [2, 16]"), other.stderr
    assert "Traceback" not in other.stderr
    with np.load(runs / "a" / "checkpoint.npz") as f:
        np.savez(tmp_path / "part.npz", **{k: f[k] for k in ("h.weight", "h.bias", "logits.bias")})
    partial = run_main("eval", spiral, "--data", "spiral", "--params", tmp_path / "part.npz", runs / "b")
    assert partial.returncode == 1
    assert partial.stderr.startswith(f"error: member 1 of the ensemble ({tmp_path / 'part.npz'}): no values for the "
                                     "randomly initialized parameters of model 'spiral_mlp': logits.weight"), \
        partial.stderr


def test_a_scalar_output_over_chunks_is_their_mean_weighted_by_size():
    model = nnc.load(SCALAR)
    n = EVAL_BATCH + EVAL_BATCH // 2       # two chunks of unequal size
    rng = np.random.default_rng(3)
    data = {"x": rng.normal(size=(n, 2)).astype(np.float32), "t": np.zeros((n, 1), np.float32)}
    data["x"][EVAL_BATCH:] += 5            # the second chunk's mean differs from the first's
    w = np.array([[1.0], [2.0]], dtype=np.float32)
    loss, s = Evaluator(model, "llvm", {"w": w}).predict(data)
    assert s.shape == ()
    assert float(s) == pytest.approx(float((data["x"].astype(np.float64) @ w).mean()), rel=1e-5)
    assert loss == pytest.approx(float(((data["x"].astype(np.float64) @ w) ** 2).mean()), rel=1e-5)


def test_a_model_whose_only_output_is_a_scalar_runs_evaluates_and_predicts(tmp_path):
    (tmp_path / "scalar.nn").write_text(SCALAR)
    table(tmp_path / "table.npz", 64, 1)
    trained = run_cli("run", "scalar.nn", "--data", "table.npz", "--out", "r", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    final = re.search(r"\ntest loss ([\d.e-]+)\n", trained.stdout)
    assert final, trained.stdout
    assert (tmp_path / "r" / "metrics.json").exists()

    evaluated = run_cli("eval", "scalar.nn", "--params", "r", "--data", "table.npz", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert evaluated.stdout == f"test loss {final.group(1)}\n"

    x = np.array([[1.0, 2.0], [3.0, -1.0]], dtype=np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    w = checkpoint.load(tmp_path / "r" / "checkpoint.npz")[0]["w"]
    predicted = run_cli("predict", "scalar.nn", "--params", "r", "--input", "in.npz", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    found = re.fullmatch(r"s = ([-\d.e]+)\n", predicted.stdout)
    assert found, predicted.stdout
    assert float(found.group(1)) == pytest.approx(float((x @ w).mean()), rel=1e-5)

    forward = run_main("eval", tmp_path / "scalar.nn", "--params", tmp_path / "r", "--inputs", tmp_path / "in.npz")
    assert forward.returncode == 0 and forward.stdout.startswith("s = "), forward.stderr

    refused = run_main("eval", tmp_path / "scalar.nn", "--params", tmp_path / "r", tmp_path / "r",
                       "--data", tmp_path / "table.npz")
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: cannot score output 's' [] of an ensemble: got target 't' [64, 1], "
                                     "expected a target of the output's shape"), refused.stderr
