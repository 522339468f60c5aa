"""Time series for forecasting (nnc/data/sequences.py, the `sine` set of nnc/data/toy.py, a CSV column with
`window = N`): sliding windows and their targets, the held-out parts by position, the "repeat the last value"
baseline, and `nnc run` reporting the test MSE next to it; the contiguous holdouts of nnc/data/splits.py."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from conftest import run_main

import nnc
from nnc.data import load_dataset, open_dataset
from nnc.data.sequences import Layout, cut_windows, last_value_baseline
from nnc.data.splits import contiguous_indices
from nnc.data.toy import SINE_TEST_SEED, SINE_TRAIN_SEED, SINE_TRAIN_STEPS, sine_series
from nnc.errors import NncError


def model_file(tmp_path, text: str, name: str = "m.nn"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return nnc.load(path)


def forecaster(tmp_path, window="12", values=", 1", target="[B, 1]", train: str = ""):
    """An MLP over a window of `window` values ([B, T, 1], or [B, T] with values=""); dense needs a number of
    features, so a symbolic window is averaged."""
    if window.isdigit():
        flat = "reshape(x, [B, -1])"
    else:   # [B, T, 1] -> [B, 1]; [B, T] -> [B, 1]
        flat = "mean(x, axis=1)" if values else "mean(x, axis=1, keepdims=true)"
    pred = "dense(relu(dense(flat, 16)), 1)" if target == "[B, 1]" else "reshape(dense(flat, 1), [B])"
    return model_file(tmp_path, f"""
        model forecaster {{
          input x: [B, {window}{values}]
          input next: {target}
          flat = {flat}
          pred = {pred}
          output pred
          loss mse(pred, next)
        }}
        {train}
    """)


# ---- windows -------------------------------------------------------------------------------------------------


def test_series_windows_slide_one_step_and_the_target_is_the_next_value():
    values = np.arange(10, dtype=np.float32)
    x, y = cut_windows(values, Layout("x", "next", 3, False, "the model"), 1)
    assert x.tolist()[:2] == [[0, 1, 2], [1, 2, 3]] and len(x) == 7
    np.testing.assert_array_equal(y, x[:, -1] + 1)
    x, y = cut_windows(values, Layout("x", "next", 3, True, "the model"), 1)
    np.testing.assert_array_equal(y, x + 1)


def test_the_last_value_baseline_repeats_each_value():
    x = np.array([[0.0, 1.0], [1.0, 3.0]])
    next_only = last_value_baseline({"x": x, "y": np.array([3.0, 3.0])}, Layout("x", "y", 2, False, ""))
    assert (next_only.metric, next_only.value) == ("mse", pytest.approx(2.0))   # errors 2 and 0
    shifted = last_value_baseline({"x": x, "y": np.array([[1.0, 3.0], [3.0, 5.0]])}, Layout("x", "y", 2, True, ""))
    assert shifted.value == pytest.approx((1 + 4 + 4 + 4) / 4)
    assert shifted.text() == "baseline (repeat the last value): MSE 3.25"


# ---- the sine set --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("values, target", [(", 1", "[B, 1]"), ("", "[B]")])
def test_sine_is_noisy_windows_of_one_draw_tested_on_another(tmp_path, values, target):
    data = load_dataset("sine", forecaster(tmp_path, "12", values, target))
    wave = sine_series(SINE_TRAIN_STEPS, SINE_TRAIN_SEED)
    x, y = data.train["x"], data.train["next"]
    assert x.shape[1:] == ((12, 1) if values else (12,)) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0].ravel(), wave[:12])
    np.testing.assert_array_equal(y[0].ravel(), wave[12:13])
    test_wave = sine_series(500, SINE_TEST_SEED)
    np.testing.assert_array_equal(data.test["x"][0].ravel(), test_wave[:12])
    assert data.n_test == 500 - 12 and data.n_train == SINE_TRAIN_STEPS - 12
    angle = 2 * np.pi * np.arange(SINE_TRAIN_STEPS) / 25                  # a sine of period 25 plus noise 0.1
    basis = np.stack([np.sin(angle), np.cos(angle)], axis=1)
    fit, *_ = np.linalg.lstsq(basis, wave, rcond=None)
    assert np.hypot(*fit) == pytest.approx(1.0, abs=0.02)
    assert np.std(wave - basis @ fit) == pytest.approx(0.1, abs=0.01)
    expected = np.mean((data.test["x"][:, -1].ravel().astype(np.float64) - data.test["next"].ravel()) ** 2)
    assert data.baseline.value == pytest.approx(expected)
    assert 0.03 < data.baseline.value < 0.08
    again = load_dataset("sine", forecaster(tmp_path, "12", values, target))
    np.testing.assert_array_equal(again.train["x"], x)


def test_sine_validation_is_held_out_in_blocks_the_training_windows_do_not_overlap(tmp_path):
    data = load_dataset("sine", forecaster(tmp_path), val=0.1, seed=2)
    wave = sine_series(SINE_TRAIN_STEPS, SINE_TRAIN_SEED)
    start = {float(v): i for i, v in enumerate(wave)}
    held = {start[float(v)] for v in data.val["x"][:, 0, 0]}
    trained = {start[float(v)] for v in data.train["x"][:, 0, 0]}
    assert not held & trained and 150 <= len(held) <= 250
    assert min(abs(a - b) for a in held for b in trained) > 12     # no shared value: the next window is 13 away


def test_a_symbolic_window_takes_the_window_setting(tmp_path):
    model = forecaster(tmp_path, "T")
    with pytest.raises(NncError, match=r"reads windows of T steps \(x: \[B, T, 1\]\)"):
        load_dataset("sine", model)
    assert load_dataset("sine", model, window=30).train["x"].shape[1:] == (30, 1)


def test_a_series_of_several_values_per_step_is_refused(tmp_path):
    with pytest.raises(NncError, match=r"sine has one value per step: the model's input 'x' is \[B, 12, 3\], expected "
                                       r"\[B, T\] or \[B, T, 1\]"):
        load_dataset("sine", forecaster(tmp_path, "12", ", 3"))


def test_sequence_data_needs_the_model_and_window_needs_sequence_data(tmp_path):
    with pytest.raises(NncError, match="sine is sequence data, cut into windows that fit a model"):
        open_dataset("sine")
    with pytest.raises(NncError, match="window = 20 cuts a sequence into windows, and spiral is not one"):
        load_dataset("spiral", forecaster(tmp_path), window=20)


# ---- a CSV series ------------------------------------------------------------------------------------------------


def write_series(tmp_path, columns: dict, name: str = "s.csv"):
    path = tmp_path / name
    rows = zip(*columns.values())
    path.write_text(",".join(columns) + "\n" + "".join(",".join(f"{v:g}" for v in r) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def test_a_csv_column_becomes_windows_and_its_last_tenth_the_test_part(tmp_path):
    values = np.arange(200, dtype=np.float64)
    path = write_series(tmp_path, {"day": values, "temp": values * 2})
    model = forecaster(tmp_path)
    data = load_dataset(str(path), model, target="temp", window=12)
    windows = 200 - 12
    assert data.n_test == round(0.1 * windows)
    first_test = data.test["x"][0, 0, 0]
    assert data.test["x"][-1, -1, 0] == 2 * 198 and data.test["next"][-1, 0] == 2 * 199   # the end of the series
    assert data.train["next"][-1, 0] < first_test                  # no test value was a training target or input
    assert data.train["x"][-1, -1, 0] < first_test
    assert "column 'temp', windows of 12 (from the model), stride 1" in data.describe()
    one_column = write_series(tmp_path, {"temp": values}, "one.csv")
    assert load_dataset(str(one_column), model, window=12).n_test == data.n_test
    with pytest.raises(NncError) as err:
        load_dataset(str(path), model, window=12)
    assert err.value.format().split("\n") == [
        f"{path}: error: which column is the series? The file has 2: day, temp",
        "hint: name it with `target = COLUMN` in the train block (or --target COLUMN)"]


def test_a_csv_without_window_is_still_a_table(tmp_path):
    path = write_series(tmp_path, {"a": np.arange(5.0), "b": np.arange(5.0)})
    with pytest.raises(NncError, match="does not fit the model's input 'x'"):
        load_dataset(str(path), forecaster(tmp_path), target="b")


def test_a_series_too_short_for_its_windows(tmp_path):
    path = write_series(tmp_path, {"v": np.arange(14.0)})
    with pytest.raises(NncError) as err:
        load_dataset(str(path), forecaster(tmp_path), window=12)
    assert err.value.format().startswith(f"{path}: error: got 14 rows, too few for 14 windows of T + 1 = 13")


# ---- contiguous holdouts -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, count, overlap", [(1000, 100, 1), (1000, 100, 13), (5000, 1500, 2), (300, 30, 20)])
def test_a_contiguous_holdout_takes_whole_blocks_and_keeps_its_neighbours_out(n, count, overlap):
    rest, held = contiguous_indices(n, count, seed=5, stream=2, overlap=overlap)
    assert np.all(np.diff(rest) > 0) and np.all(np.diff(held) > 0)
    assert not set(rest) & set(held)
    gaps = np.abs(rest[:, None] - held[None, :]).min()
    assert gaps >= overlap                                     # no training window shares a value with a held one
    block = max(-(-n // 100), 4 * overlap)
    assert abs(len(held) - count) <= block
    dropped = n - len(rest) - len(held)
    assert dropped <= 2 * (overlap - 1) * (len(held) // block + 1)
    again, _ = contiguous_indices(n, count, seed=5, stream=2, overlap=overlap)
    np.testing.assert_array_equal(again, rest)


# ---- nnc run -----------------------------------------------------------------------------------------------------


def test_nnc_run_on_sine_reports_the_test_mse_next_to_repeating_the_last_value(tmp_path):
    forecaster(tmp_path, train="train {\n  data = sine\n  optimizer = adam(lr=0.01)\n  epochs = 15\n}")
    result = run_main("run", "m.nn", "--out", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text(encoding="utf-8"))
    baseline = metrics["baseline"]
    assert baseline["name"] == "repeat the last value"
    assert f"test loss {metrics['test_loss']:.6g}  MSE {metrics['test_mse']:.6g}" in result.stdout
    assert f"baseline (repeat the last value): MSE {baseline['mse']:.6g}" in result.stdout
    assert metrics["test_mse"] < baseline["mse"] / 2              # the network sees the wave's shape
    assert "fitted parameters" not in result.stdout


def test_nnc_run_on_a_csv_series_with_the_window_flag(tmp_path):
    t = np.arange(400)
    write_series(tmp_path, {"level": np.round(np.sin(t / 5.0) * 10, 3)}, "level.csv")
    forecaster(tmp_path, "T")
    # the reference interpreter sizes T from the data (the native training engine compiles every symbolic dim at
    # the batch size)
    result = run_main("run", "m.nn", "--data", "level.csv", "--window", "10", "--epochs", "2", "--out", "run",
                      "--backend", "reference", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "column 'level', windows of 10 (from window = 10), stride 1" in result.stdout
    assert "baseline (repeat the last value): MSE" in result.stdout
    settings = json.loads((tmp_path / "run" / "settings.json").read_text(encoding="utf-8"))
    assert settings["window"] == 10
    again = run_main("run", "m.nn", "--resume", "run", "--window", "11", cwd=tmp_path)
    assert again.returncode == 1 and "--window 11 contradicts the run being resumed (window 10)" in again.stderr
