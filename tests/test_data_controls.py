"""The dataset controls of the train block and their flags: `train_size` (a seeded subset), `label_noise` and
`shuffle_labels` (training labels only), `test` (a table's held-out test split) and `standardize` (training
statistics, kept with the run and applied by nnc eval and nnc predict), recorded in settings.json so that
--resume restores them, and the one clear error each gives where it does not apply."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import EXAMPLES, run_main
from test_runfolder import interrupted_run, results

import nnc
from nnc.data import load_for_model
from nnc.errors import NncError
from nnc.runtime import checkpoint

CLASSIFIER = """model classifier {
  input  x: [B, 4]
  input  label: int[B]
  logits = dense(x, 5)
  output logits
  loss   cross_entropy(logits, label)
}
"""
ONE_HOT = """model soft {
  input  x: [B, 4]
  input  label: [B, 5]
  logits = dense(x, 5)
  output logits
  loss   cross_entropy(logits, label)
}
"""
REGRESSION = """model table {
  input  features: [B, 3]
  input  y: [B, 1]
  pred   = dense(features, 1)
  output pred
  loss   mse(pred, y)
}
"""


def model_file(tmp_path, text: str, train: str = "", name: str = "m.nn"):
    path = tmp_path / name
    path.write_text(text + (f"train {{ {train} }}\n" if train else ""))
    return path


def labelled_npz(tmp_path, n: int = 20_000, n_test: int = 500):
    """x [n, 4] whose first column is the sample's index (so a test can tell samples apart), labels 0..4."""
    rng = np.random.default_rng(7)
    x = np.column_stack([np.arange(n), rng.normal(size=(n, 3))]).astype(np.float32)
    path = tmp_path / "labelled.npz"
    np.savez(path, x=x, label=rng.integers(0, 5, n).astype(np.int64),
             x_test=rng.normal(size=(n_test, 4)).astype(np.float32),
             label_test=rng.integers(0, 5, n_test).astype(np.int64))
    return path


def table_csv(tmp_path, n: int = 40):
    """Columns on very different scales (id 0..n-1, a ~ 1000, b ~ 0.01) and y = 2·id + noise."""
    rng = np.random.default_rng(3)
    ids = np.arange(n)
    a, b = 1000 + 300 * rng.normal(size=n), 0.01 * rng.normal(size=n)
    y = 2 * ids + a / 500 + rng.normal(size=n)
    path = tmp_path / "table.csv"
    path.write_text("id,a,b,y\n" + "".join(f"{i},{p:.6f},{q:.8f},{r:.6f}\n" for i, p, q, r in zip(ids, a, b, y)))
    return path


# ---- train_size ---------------------------------------------------------------------------------------------


def test_train_size_is_a_seeded_subset_of_the_training_part(tmp_path):
    model = nnc.loads(CLASSIFIER)
    data = str(labelled_npz(tmp_path, n=1000))
    full = load_for_model(model, data=data, val=100, seed=3)
    sub = load_for_model(model, data=data, val=100, seed=3, train_size=200)
    assert (sub.n_train, sub.n_val, sub.n_test) == (200, 100, 500)
    ids = sub.train["x"][:, 0]
    assert set(ids) <= set(full.train["x"][:, 0]) and not set(ids) & set(full.val["x"][:, 0])  # no val example
    assert np.all(np.diff(ids) > 0)   # in their original order
    np.testing.assert_array_equal(sub.val["x"], full.val["x"])
    np.testing.assert_array_equal(sub.test["x"], full.test["x"])
    rows = np.searchsorted(full.train["x"][:, 0], ids)
    np.testing.assert_array_equal(sub.train["label"], full.train["label"][rows])   # labels stay with their rows
    again = load_for_model(model, data=data, val=100, seed=3, train_size=200)
    np.testing.assert_array_equal(again.train["x"], sub.train["x"])
    other = load_for_model(model, data=data, val=100, seed=4, train_size=200)
    assert set(other.train["x"][:, 0]) != set(ids)
    smaller = load_for_model(model, data=data, val=100, seed=3, train_size=50)
    assert set(smaller.train["x"][:, 0]) <= set(ids)   # nested: the points of a learning curve
    assert "train_size 200 of 900" in sub.describe()


def test_train_size_in_the_train_block_and_in_a_tables_whole_table_evaluation(tmp_path):
    path = model_file(tmp_path, REGRESSION, f'data = "{table_csv(tmp_path)}"  target = y  train_size = 10')
    data = load_for_model(nnc.load(path))
    assert data.n_train == 10
    assert data.test is data.train   # the whole-table evaluation is on the examples trained on
    assert "the 10 training examples, no separate test set" in data.describe()


def test_train_size_larger_than_the_training_set_is_one_error(tmp_path):
    model = nnc.loads(CLASSIFIER)
    with pytest.raises(NncError, match=r"train_size: got 1,001, expected at most 1,000, the training examples"):
        load_for_model(model, data=str(labelled_npz(tmp_path, n=1000)), train_size=1001)
    with pytest.raises(NncError, match=r"expected at most 900, .* left after holding out 100 for validation"):
        load_for_model(model, data=str(labelled_npz(tmp_path, n=1000)), train_size=901, val=100)
    done = run_main("run", EXAMPLES / "mnist_mlp.nn", "--train-size", "60001", "--out", tmp_path / "r")
    assert done.stderr == ("error: train_size: got 60,001, expected at most 60,000, the training examples of mnist\n"
                           "hint: train_size = 60000 or fewer\n")
    assert done.returncode == 1 and not (tmp_path / "r").exists()


# ---- label_noise and shuffle_labels -------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_label_noise_changes_about_p_of_the_training_labels_to_other_classes(tmp_path, p):
    model = nnc.loads(CLASSIFIER)
    data = str(labelled_npz(tmp_path))
    clean = load_for_model(model, data=data, val=2000, seed=1)
    noisy = load_for_model(model, data=data, val=2000, seed=1, label_noise=p)
    np.testing.assert_array_equal(noisy.train["x"], clean.train["x"])
    was, now = clean.train["label"], noisy.train["label"]
    changed = now != was
    assert abs(changed.mean() - p) < 0.015   # 18,000 labels: 4 standard deviations at most
    steps = (now[changed] - was[changed]) % 5   # the other classes alike: each about a quarter of the changes
    assert set(np.unique(steps)) == {1, 2, 3, 4}
    assert np.abs(np.bincount(steps, minlength=5)[1:] / changed.sum() - 0.25).max() < 0.02
    np.testing.assert_array_equal(noisy.val["label"], clean.val["label"])     # never validation labels
    np.testing.assert_array_equal(noisy.test["label"], clean.test["label"])   # nor test labels
    again = load_for_model(model, data=data, val=2000, seed=1, label_noise=p)
    np.testing.assert_array_equal(again.train["label"], now)                 # seeded
    whole = load_for_model(model, data=data, seed=1).train["label"]          # no validation split: the same
    other = load_for_model(model, data=data, seed=2, label_noise=p).train["label"]   # examples, another seed
    assert abs((other != whole).mean() - p) < 0.015
    assert not np.array_equal(other != whole, load_for_model(model, data=data, seed=1, label_noise=p)
                              .train["label"] != whole)
    assert f"label noise {p:g}: {changed.sum():,} of 18,000 labels changed" in noisy.describe()


def test_label_noise_keeps_the_kept_classes_and_one_hot_rows(tmp_path):
    data = str(labelled_npz(tmp_path, n=3000))
    kept = load_for_model(nnc.loads(CLASSIFIER), data=data, classes=(1, 3), label_noise=1.0)
    assert set(np.unique(kept.train["label"])) == {1, 3}
    clean = load_for_model(nnc.loads(CLASSIFIER), data=data, classes=(1, 3))
    np.testing.assert_array_equal(kept.train["label"], 4 - clean.train["label"])  # p = 1: every label the other
    soft = nnc.loads(ONE_HOT)
    np.savez(tmp_path / "hot.npz", x=np.zeros((2000, 4), np.float32),
             label=np.eye(5, dtype=np.float32)[np.arange(2000) % 5])
    noisy = load_for_model(soft, data=str(tmp_path / "hot.npz"), label_noise=0.3)
    rows = noisy.train["label"]
    assert rows.dtype == np.float32 and np.all(rows.sum(axis=1) == 1) and set(np.unique(rows)) == {0, 1}
    assert abs((rows.argmax(axis=1) != np.arange(2000) % 5).mean() - 0.3) < 0.05
    assert np.array_equal(noisy.test["label"], np.eye(5, dtype=np.float32)[np.arange(2000) % 5])  # the table: true


def test_shuffled_labels_are_a_permutation_of_the_training_labels(tmp_path):
    model = nnc.loads(CLASSIFIER)
    data = str(labelled_npz(tmp_path, n=2000))
    clean = load_for_model(model, data=data, val=200, seed=5)
    shuffled = load_for_model(model, data=data, val=200, seed=5, shuffle_labels=True)
    was, now = clean.train["label"], shuffled.train["label"]
    np.testing.assert_array_equal(np.sort(now), np.sort(was))   # the same labels ...
    assert (now != was).mean() > 0.7                            # ... given to other examples (4/5 by chance)
    np.testing.assert_array_equal(shuffled.train["x"], clean.train["x"])
    np.testing.assert_array_equal(shuffled.val["label"], clean.val["label"])
    np.testing.assert_array_equal(shuffled.test["label"], clean.test["label"])
    np.testing.assert_array_equal(load_for_model(model, data=data, val=200, seed=5, shuffle_labels=True)
                                  .train["label"], now)
    assert "training labels shuffled" in shuffled.describe()


def test_changed_labels_of_a_table_are_never_those_it_is_evaluated_on(tmp_path):
    """A table without a test part is evaluated on its training examples: with their true labels."""
    path = tmp_path / "gates.csv"
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    path.write_text("a,b,c,d,label\n" + "".join(f"{r[0]},{r[1]},{r[2]},{r[3]},{k}\n"
                                                for r, k in zip(x, rng.integers(0, 5, 300))))
    model = nnc.loads(CLASSIFIER)
    data = load_for_model(model, data=str(path), target="label", label_noise=0.5, shuffle_labels=True)
    true = load_for_model(model, data=str(path), target="label")
    np.testing.assert_array_equal(data.test["label"], true.train["label"])
    assert (data.train["label"] != true.train["label"]).mean() > 0.5


def test_label_controls_on_a_regression_are_one_error(tmp_path):
    path = model_file(tmp_path, REGRESSION, f'data = "{table_csv(tmp_path)}"  target = y')
    for flag, setting in (("--label-noise", "label_noise"), ("--shuffle-labels", "shuffle_labels")):
        done = run_main("run", path, flag, *(["0.1"] if flag == "--label-noise" else []), "--out", tmp_path / "r")
        assert done.returncode == 1, flag
        assert done.stderr == (f"error: {setting} changes the labels of a classification, and model 'table' is a "
                               f"regression (its target 'y' holds numbers to predict)\n"
                               f"hint: drop `{setting}`; it applies to models trained with cross_entropy or "
                               f"binary_cross_entropy on class labels\n")


def test_label_noise_above_one_is_refused_where_it_is_written(tmp_path):
    path = model_file(tmp_path, CLASSIFIER, "label_noise = 1.5")
    done = run_main("check", path)
    assert done.returncode == 1
    assert done.stderr.startswith(f"{path}:8:23: error: label_noise is a probability: got 1.5, expected a number "
                                  f"from 0 to 1\n")
    path = model_file(tmp_path, CLASSIFIER, "shuffle_labels = 3")
    assert "error: shuffle_labels must be true or false, got 3" in run_main("check", path).stderr
    done = run_main("run", EXAMPLES / "xor.nn", "--label-noise", "1.5")
    assert done.returncode == 2 and "expected a probability from 0 to 1, got 1.5" in done.stderr


# ---- test ---------------------------------------------------------------------------------------------------


def test_a_tables_test_split_is_held_out_disjoint_and_seeded(tmp_path):
    path = model_file(tmp_path, REGRESSION, f'data = "{table_csv(tmp_path)}"  target = y')
    model = nnc.load(path)
    data = load_for_model(model, test=0.25, val=5, seed=2)
    ids = {part: set(getattr(data, part)["features"][:, 0].astype(int)) for part in ("train", "val", "test")}
    assert (len(ids["train"]), len(ids["val"]), len(ids["test"])) == (25, 5, 10)
    assert ids["train"] | ids["val"] | ids["test"] == set(range(40))
    assert not (ids["train"] & ids["test"] or ids["val"] & ids["test"] or ids["train"] & ids["val"])
    assert "10 samples held out at random, seed 2" in data.describe()
    same = load_for_model(model, test=10, val=5, seed=2)   # a count or a fraction
    assert set(same.test["features"][:, 0].astype(int)) == ids["test"]
    other = load_for_model(model, test=0.25, val=5, seed=3)
    assert set(other.test["features"][:, 0].astype(int)) != ids["test"]
    block = model_file(tmp_path, REGRESSION, f'data = "{table_csv(tmp_path)}"  target = y  test = 0.25  seed = 2',
                       name="block.nn")
    assert set(load_for_model(nnc.load(block), val=5).test["features"][:, 0].astype(int)) == ids["test"]


def test_test_with_data_that_has_its_own_test_set_is_one_error(tmp_path):
    done = run_main("run", EXAMPLES / "mnist_mlp.nn", "--test", "0.2", "--out", tmp_path / "r")
    assert done.returncode == 1
    assert done.stderr == ("error: test = 0.2 holds a test split out of the training data, and 'mnist' has its own "
                           "test set (the t10k files)\n"
                           "hint: drop `test` (--test): the final evaluation is on that test set\n")
    with pytest.raises(NncError, match="has its own test set"):
        load_for_model(nnc.loads(CLASSIFIER), data=str(labelled_npz(tmp_path, n=100)), test=10)


def test_nnc_eval_of_a_run_scores_the_test_split_the_run_held_out(tmp_path):
    path = model_file(tmp_path, REGRESSION, f'data = "{table_csv(tmp_path)}"  target = y  optimizer = sgd(lr=0.1)'
                      f'  batch = 8  epochs = 30  standardize = true')
    run = tmp_path / "run"
    done = run_main("run", path, "--test", "0.25", "--seed", "4", "--out", run)
    assert done.returncode == 0, done.stderr
    final = next(line for line in done.stdout.splitlines() if line.startswith("test loss"))
    evaluated = run_main("eval", path, "--params", run, "--data", tmp_path / "table.csv", "--target", "y")
    assert evaluated.returncode == 0, evaluated.stderr
    assert final in evaluated.stdout.splitlines()
    whole = run_main("eval", path, "--params", run, "--data", tmp_path / "table.csv", "--target", "y", "--test", "0")
    assert final not in whole.stdout.splitlines()


# ---- standardize --------------------------------------------------------------------------------------------


def test_standardize_takes_its_statistics_from_the_training_part_only(tmp_path):
    path = model_file(tmp_path, REGRESSION, f'data = "{table_csv(tmp_path)}"  target = y')
    model = nnc.load(path)
    raw = load_for_model(model, val=8, test=8, seed=1)
    data = load_for_model(model, val=8, test=8, seed=1, standardize=True)
    stats = data.standardization
    train = raw.train["features"].astype(np.float64)
    np.testing.assert_allclose(stats.mean["features"], train.mean(axis=0))
    np.testing.assert_allclose(stats.std["features"], train.std(axis=0))
    assert list(stats.mean) == ["features"]   # the target is not scaled
    np.testing.assert_array_equal(data.train["y"], raw.train["y"])
    np.testing.assert_allclose(data.train["features"].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(data.train["features"].std(axis=0), 1, atol=1e-5)
    for part in ("val", "test"):   # scaled with the training statistics, not their own
        np.testing.assert_allclose(getattr(data, part)["features"],
                                   (getattr(raw, part)["features"] - train.mean(axis=0)) / train.std(axis=0),
                                   rtol=1e-5, atol=1e-5)
    whole = load_for_model(model, standardize=True).standardization
    assert not np.allclose(whole.mean["features"], stats.mean["features"])
    assert "features standardized (training statistics)" in data.describe()


def test_a_constant_feature_keeps_std_one(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("a,b,c,y\n" + "".join(f"{i},5,{i % 3},{i}\n" for i in range(10)))
    data = load_for_model(nnc.loads(REGRESSION), data=str(path), target="y", standardize=True)
    assert data.standardization.std["features"][1] == 1
    assert np.all(data.train["features"][:, 1] == 0)


def test_standardize_is_saved_with_the_run_and_applied_by_predict_and_eval(tmp_path):
    """The round trip: `nnc predict` on a raw feature row prints the model applied to the standardized row."""
    csv = table_csv(tmp_path)
    path = model_file(tmp_path, REGRESSION, f'data = "{csv}"  target = y  optimizer = sgd(lr=0.1)  batch = 8  '
                      f'epochs = 40')
    run = tmp_path / "run"
    done = run_main("run", path, "--standardize", "--val", "8", "--seed", "1", "--out", run)
    assert done.returncode == 0, done.stderr
    assert json.loads((run / "settings.json").read_text())["standardize"] is True
    saved = json.loads((run / "standardize.json").read_text())["features"]
    raw = load_for_model(nnc.load(path), val=8, seed=1)   # the run's training part, unscaled
    np.testing.assert_allclose(saved["mean"], raw.train["features"].astype(np.float64).mean(axis=0))
    np.testing.assert_allclose(saved["std"], raw.train["features"].astype(np.float64).std(axis=0))

    row = [12.0, 1150.0, -0.004]
    predicted = run_main("predict", path, "--params", run, "--at", f"features={json.dumps(row)}")
    assert predicted.returncode == 0, predicted.stderr
    assert predicted.stdout.splitlines()[0] == "features standardized with the run's training statistics"
    value = float(re.search(r"pred = \[?\s*([-+.\de]+)", predicted.stdout).group(1))   # 6 significant digits
    model = nnc.load(path)
    params = checkpoint.model_params(str(run), model)
    scaled = ((np.array([row]) - saved["mean"]) / saved["std"]).astype(np.float32)
    expected = model.eval({"features": scaled}, params)["pred"]
    assert value == pytest.approx(float(expected.ravel()[0]), rel=1e-5)
    unscaled = model.eval({"features": np.array([row], np.float32)}, params)["pred"]
    assert value != pytest.approx(float(unscaled.ravel()[0]), rel=1e-2)

    final = next(line for line in done.stdout.splitlines() if line.startswith("test loss"))
    for params_source in (run, run / "checkpoint.npz"):
        evaluated = run_main("eval", path, "--params", params_source, "--data", csv, "--target", "y")
        assert evaluated.returncode == 0, evaluated.stderr
        assert final in evaluated.stdout.splitlines()


def test_parameters_without_the_runs_statistics_are_refused_for_a_standardizing_model(tmp_path):
    csv = table_csv(tmp_path)
    path = model_file(tmp_path, REGRESSION, f'data = "{csv}"  target = y  standardize = true')
    model = nnc.load(path)
    plain = tmp_path / "plain.npz"
    np.savez(plain, **model.init_params(seed=0))
    for argv in (["predict", path, "--params", plain, "--at", "features=[1, 2, 3]"],
                 ["eval", path, "--params", plain, "--data", csv, "--target", "y"]):
        done = run_main(*argv)
        assert done.returncode == 1, argv
        assert done.stderr.startswith(f"error: model 'table' standardizes its features (standardize = true), and "
                                      f"--params {plain} has no standardize.json"), done.stderr


def test_standardize_on_images_is_one_error(tmp_path):
    done = run_main("run", EXAMPLES / "mnist_mlp.nn", "--standardize", "--out", tmp_path / "r")
    assert done.returncode == 1
    assert done.stderr == ("error: standardize scales the features of a table (a CSV or NPZ file), and mnist is "
                           "images whose pixels are already scaled to 0..1\n"
                           "hint: drop `standardize` (--standardize)\n")


# ---- recorded and resumed -----------------------------------------------------------------------------------


def test_the_controls_are_recorded_and_a_resumed_run_keeps_them(tmp_path, monkeypatch):
    csv = tmp_path / "points.csv"
    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 4)) * [1, 10, 100, 1000]
    csv.write_text("a,b,c,d,label\n" + "".join(f"{r[0]},{r[1]},{r[2]},{r[3]},{int(r[0] > 0) + 2 * int(r[1] > 0)}\n"
                                                for r in x))
    path = model_file(tmp_path, CLASSIFIER, f'data = "{csv}"  target = label  optimizer = adam(lr=0.01)  '
                      f'batch = 16  epochs = 3')
    flags = ["--test", "0.2", "--train-size", "200", "--label-noise", "0.1", "--shuffle-labels", "--standardize",
             "--val", "40", "--seed", "3", "--quiet"]
    full, part = tmp_path / "full", tmp_path / "part"
    assert run_main("run", path, *flags, "--out", full).returncode == 0
    settings = json.loads((full / "settings.json").read_text())
    assert {k: settings[k] for k in ("test", "train_size", "label_noise", "shuffle_labels", "standardize")} == {
        "test": 0.2, "train_size": 200, "label_noise": 0.1, "shuffle_labels": True, "standardize": True}
    assert interrupted_run(monkeypatch, "run", path, *flags, "--out", part, steps=200 // 16 + 3) == 130
    assert (part / "standardize.json").read_text() == (full / "standardize.json").read_text()
    assert run_main("run", path, "--resume", part, "--quiet").returncode == 0
    assert results(part) == results(full)
    resumed, _ = checkpoint.load(part / "checkpoint.npz")
    uninterrupted, _ = checkpoint.load(full / "checkpoint.npz")
    for name in uninterrupted:
        np.testing.assert_array_equal(resumed[name], uninterrupted[name], err_msg=name)
    for flag, value, was in (("--label-noise", "0.3", "0.1"), ("--train-size", "100", "200"), ("--test", "0.5", "0.2")):
        done = run_main("run", path, "--resume", part, flag, value, "--epochs", "4")
        assert done.returncode == 1, flag
        assert done.stderr.startswith(f"error: {flag} {value} contradicts the run being resumed "
                                      f"({flag.lstrip('-')} {was})"), done.stderr
