"""The examples that reproduce the course: its tables, their least-squares answers, and XOR from every seed.

The course's figures quoted in docs/course.md are re-measured by test_doc_figures.py; here they are checked
against what they mean: the apartment table gives the course's predictions for all-ones weights, `nnc run`
reaches the weights numpy.linalg.lstsq computes from the CSV files, and examples/xor.nn learns XOR from each
seed 0 to 9 while its 2-2-1 model sticks for most of them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import EXAMPLES, run_main

import nnc

TABLES = {"apartment": ("apartments.csv", "price"), "advertising": ("advertising.csv", "sales")}


def table(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The features and the target of an example's CSV file, columns in file order."""
    file, target = TABLES[name]
    data = np.genfromtxt(EXAMPLES / "data" / file, delimiter=",", names=True)
    features = [c for c in data.dtype.names if c != target]
    return np.stack([data[c] for c in features], axis=1), data[target]


def test_apartment_table_gives_the_courses_all_ones_predictions():
    """With every weight 1 and no bias: 54, 44.3, 31.5, 52.5, 35.5 and an MSE of 575.048 (the course says half)."""
    features, price = table("apartment")
    assert features.shape == (5, 4)
    model = nnc.load(EXAMPLES / "apartment.nn")
    out = model.eval({"features": features, "price": price[:, None]}, {"w": np.ones((4, 1)), "b": np.zeros(1)},
                     float_dtype=np.float64)
    np.testing.assert_allclose(out["pred"][:, 0], [54, 44.3, 31.5, 52.5, 35.5], rtol=1e-12)
    assert float(out["loss"]) == pytest.approx(575.048, rel=1e-12)


@pytest.mark.parametrize("name", sorted(TABLES))
def test_run_reaches_the_least_squares_weights(name, tmp_path):
    features, target = table(name)
    exact, *_ = np.linalg.lstsq(np.c_[features, np.ones(len(target))], target, rcond=None)
    done = run_main("run", EXAMPLES / f"{name}.nn", "--out", tmp_path / "run", "--quiet")
    assert done.returncode == 0, done.stderr
    with np.load(tmp_path / "run" / "checkpoint.npz") as params:
        fitted = np.r_[params["w"][:, 0], params["b"]]
    np.testing.assert_allclose(fitted, exact, rtol=1e-4, atol=1e-4)


def accuracy(tmp_path, *argv) -> float:
    metrics = tmp_path / "m.json"
    done = run_main("run", EXAMPLES / "xor.nn", *argv, "--out", tmp_path / "run", "--overwrite", "--quiet",
                    "--metrics-json", metrics)
    assert done.returncode == 0, done.stderr
    return json.loads(metrics.read_text())["test_accuracy"]


def test_xor_learns_from_every_seed_and_the_2_2_1_net_sticks_for_most(tmp_path):
    """docs/course.md: eight hidden units learn XOR from every seed 0 to 9, two from seeds 0, 6 and 8 only."""
    assert [accuracy(tmp_path, "--seed", k) for k in range(10)] == [1.0] * 10
    learnt = [k for k in range(10) if accuracy(tmp_path, "--model", "xor_221", "--seed", k) == 1.0]
    assert learnt == [0, 6, 8]
