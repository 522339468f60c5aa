"""Run folders that keep their word: every run its own folder with every setting, a resumption that continues
exactly, metrics that say how they were made, paths that mean what the user typed, and a diverging run
that says so.

An interruption mid-epoch is made deterministic by a stop flag that goes up after a given number of steps
(in place of Ctrl-C, which tests/test_run.py sends to a real process). A small spiral model with dropout,
a cosine schedule and Adam exercises everything a resumption must restore (optimizer state, the dropout
seed, the learning rate's place on the schedule, the epoch's shuffled order and running sums).
"""

from __future__ import annotations

import csv
import hashlib
import json
import shlex
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLES

import nnc
from nnc.cli import run as run_module
from nnc.cli.main import main
from nnc.runtime import checkpoint

SPIRAL = """model spiral_mlp {
  input  x: [B, 2]
  input  label: int[B]
  h      = relu(dense(x, 16))
  h2     = dropout(relu(dense(h, 16)), 0.1)
  logits = dense(h2, 3)
  output logits
  loss   cross_entropy(logits, label)
}
train { data = spiral  optimizer = adam(lr=0.01)  schedule = cosine  batch = 16  epochs = 4 }
"""
# flags that differ from the train block: a resumption must take them from the run folder
FLAGS = ["--lr", "0.003", "--batch", "32", "--epochs", "3", "--seed", "5"]


def run(*argv) -> int:
    return main([str(a) for a in argv])


def history(folder: Path) -> list[dict]:
    with open(folder / "history.csv") as f:
        return list(csv.DictReader(f))


def results(folder: Path) -> list[dict]:
    """history.csv without the timings, which differ between any two runs."""
    return [{k: v for k, v in row.items() if k not in ("seconds", "samples_per_second")} for row in history(folder)]


@pytest.fixture
def spiral(tmp_path) -> Path:
    path = tmp_path / "spiral.nn"
    path.write_text(SPIRAL)
    return path


class StopAfter:
    """Stands in for run._StopFlag: the flag goes up when the training loop has asked `steps` times."""

    def __init__(self, steps: int):
        self.steps, self.asked = steps, 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @property
    def set(self) -> bool:
        self.asked += 1
        return self.asked >= self.steps


def interrupted_run(monkeypatch, *argv, steps: int) -> int:
    with monkeypatch.context() as m:
        m.setattr(run_module, "_StopFlag", lambda: StopAfter(steps))
        return run(*argv)


# ---- --resume ---------------------------------------------------------------------------------------------


def test_an_interrupted_and_resumed_run_ends_bit_for_bit_where_an_uninterrupted_one_does(
        spiral, tmp_path, monkeypatch, capsys):
    full, part = tmp_path / "full", tmp_path / "part"
    assert run("run", spiral, *FLAGS, "--out", full, "--quiet") == 0
    steps_per_epoch = 300 // 32
    assert interrupted_run(monkeypatch, "run", spiral, *FLAGS, "--out", part, "--quiet",
                           steps=steps_per_epoch + 4) == 130
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert printed == f"resume with: nnc run {spiral} --resume {part}"
    _, meta = checkpoint.load(part / "checkpoint.npz")
    assert (meta["epoch"], meta["step"]) == (1, 4)  # in the middle of the second epoch
    assert run(*shlex.split(printed.removeprefix("resume with: nnc "))) == 0  # the printed command, as it is
    resumed, _ = checkpoint.load(part / "checkpoint.npz")
    uninterrupted, _ = checkpoint.load(full / "checkpoint.npz")
    assert sorted(resumed) == sorted(uninterrupted)  # parameters and optimizer state
    for name in uninterrupted:
        np.testing.assert_array_equal(resumed[name], uninterrupted[name], err_msg=name, strict=True)
    assert results(part) == results(full)
    assert len(results(full)) == 3 and float(results(full)[0]["lr"]) < 0.003
    settings = json.loads((part / "settings.json").read_text())
    assert (settings["batch"], settings["epochs"], settings["seed"], settings["optimizer"]["args"]["lr"]) == (
        32, 3, 5, 0.003)


def test_a_run_killed_before_its_first_checkpoint_resumes_from_the_start(spiral, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    assert run("run", spiral, *FLAGS, "--out", full, "--quiet") == 0
    assert run("run", spiral, *FLAGS, "--out", part, "--quiet") == 0
    (part / "checkpoint.npz").unlink()  # what a kill -9 in the first epoch leaves: the settings, no checkpoint
    assert run("run", spiral, "--resume", part, "--quiet") == 0
    assert results(part) == results(full)


def test_resuming_refuses_flags_that_contradict_the_run(spiral, tmp_path, monkeypatch, capsys):
    part = tmp_path / "part"
    assert interrupted_run(monkeypatch, "run", spiral, *FLAGS, "--out", part, "--quiet", steps=3) == 130
    capsys.readouterr()
    for flags, message in [
        (["--lr", "0.01"], "error: --lr 0.01 contradicts the run being resumed (lr 0.003)"),
        (["--batch", "16"], "error: --batch 16 contradicts the run being resumed (batch 32)"),
        (["--optimizer", "sgd"], "error: --optimizer sgd contradicts the run being resumed (optimizer adam)"),
        (["--data", "xor"], "error: --data xor contradicts the run being resumed (data spiral)"),
        (["--grad-stats"], "error: --grad-stats true contradicts the run being resumed (grad-stats false)"),
        (["--epochs", "2"], "error: --epochs 2 is fewer than the 3 epochs of the run being resumed"),
        (["--out", tmp_path / "elsewhere"], f"error: --out {tmp_path / 'elsewhere'} and --resume {part} name two"),
    ]:
        before = (part / "checkpoint.npz").read_bytes()
        assert run("run", spiral, "--resume", part, *flags) == 1, flags
        err = capsys.readouterr().err
        assert err.startswith(message), err
        assert "\nhint: " in err and "Traceback" not in err
        assert (part / "checkpoint.npz").read_bytes() == before
    assert not (tmp_path / "elsewhere").exists()
    # flags that agree with the run are fine
    assert run("run", spiral, "--resume", part, "--lr", "0.003", "--seed", "5", "--quiet") == 0


def test_a_finished_run_is_resumed_only_to_extend_it(spiral, tmp_path, capsys):
    done = tmp_path / "done"
    assert run("run", spiral, *FLAGS, "--out", done, "--quiet") == 0
    metrics = (done / "metrics.json").read_bytes()
    capsys.readouterr()
    assert run("run", spiral, "--resume", done) == 1
    assert capsys.readouterr().err == (
        f"error: the run in {done} is finished: it trained all 3 of its epochs\n"
        f"hint: to train it further, give the epochs it should reach: `nnc run {spiral} --resume {done} --epochs N` "
        f"with N above 3\n")
    assert (done / "metrics.json").read_bytes() == metrics
    assert run("run", spiral, "--resume", done, "--epochs", 5, "--quiet") == 0
    assert [int(r["epoch"]) for r in history(done)] == [1, 2, 3, 4, 5]
    assert json.loads((done / "settings.json").read_text())["epochs"] == 5
    assert json.loads((done / "metrics.json").read_text())["epochs"] == 5


def test_a_changed_model_file_is_refused_and_the_runs_copy_continues_it(spiral, tmp_path, monkeypatch, capsys):
    part = tmp_path / "part"
    assert interrupted_run(monkeypatch, "run", spiral, *FLAGS, "--out", part, "--quiet", steps=3) == 130
    assert (part / "model.nn").read_text() == SPIRAL
    spiral.write_text(SPIRAL.replace("dense(x, 16)", "dense(x, 32)"))
    capsys.readouterr()
    assert run("run", spiral, "--resume", part) == 1
    copy = part / "model.nn"
    assert capsys.readouterr().err == (
        f"error: {spiral} has changed since the run in {part} started\n"
        f"hint: the run trains the model as it was, kept in {copy}: continue it with "
        f"`nnc run {copy} --resume {part}`, or start a new run\n")
    assert run("run", copy, "--resume", part, "--quiet") == 0
    assert len(history(part)) == 3


def test_resume_of_a_folder_that_is_no_run(tmp_path, capsys):
    assert run("run", EXAMPLES / "xor.nn", "--resume", tmp_path / "nope") == 1
    assert capsys.readouterr().err.startswith(f"error: nothing to resume: {tmp_path / 'nope'} does not exist\n")
    assert not (tmp_path / "nope").exists()
    assert run("run", EXAMPLES / "xor.nn", "--resume", tmp_path) == 1
    assert capsys.readouterr().err.startswith(f"error: nothing to resume: {tmp_path} has no settings.json\n")


# ---- run folders -------------------------------------------------------------------------------------------


def test_runs_started_in_the_same_second_get_folders_of_their_own(tmp_path, monkeypatch, capsys):
    from nnc.train import runfolder

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runfolder, "timestamp", lambda: "20250101-120000")
    for seed in (1, 2):
        assert run("run", EXAMPLES / "xor.nn", "--epochs", 2, "--seed", seed, "--quiet") == 0
    first, second = Path("runs/xor-20250101-120000"), Path("runs/xor-20250101-120000-2")
    assert sorted(Path("runs").iterdir()) == [first, second]
    assert [json.loads((f / "settings.json").read_text())["seed"] for f in (first, second)] == [1, 2]


def test_out_onto_an_earlier_run_is_refused_unless_overwrite_clears_it(tmp_path, capsys):
    out = tmp_path / "r"
    assert run("run", EXAMPLES / "xor.nn", "--epochs", 2, "--grad-stats", "--out", out, "--quiet") == 0
    assert (out / "grad_stats.csv").exists()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert run("run", EXAMPLES / "xor.nn", "--epochs", 3, "--out", out) == 1
    assert capsys.readouterr().err == (
        f"error: --out {out} holds an earlier run\n"
        f"hint: continue it with `nnc run {EXAMPLES / 'xor.nn'} --resume {out}`, replace it with --overwrite, "
        f"or choose another --out\n")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert run("run", EXAMPLES / "xor.nn", "--epochs", 3, "--out", out, "--overwrite", "--quiet") == 0
    assert not (out / "grad_stats.csv").exists()  # nothing of the earlier run stays beside the new one
    assert len(history(out)) == 3


def test_out_into_a_folder_of_other_files_is_refused_even_with_overwrite(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    for extra in ([], ["--overwrite"]):
        assert run("run", EXAMPLES / "xor.nn", "--out", tmp_path, *extra) == 1
        assert capsys.readouterr().err.startswith(f"error: --out {tmp_path} is a folder that holds other files")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run("run", EXAMPLES / "xor.nn", "--epochs", 1, "--out", empty, "--quiet") == 0


@pytest.mark.parametrize("what, argv", [
    ("bad data", ["--data", "no_such.csv"]),
    ("bad flag", ["--target", "price"]),  # argparse refuses --optimizer adamm before anything starts
    ("bad model", []),
    ("batch larger than the data", ["--batch", "1000"]),
    ("labels out of range in the first step", ["--data", "spiral"]),
], ids=lambda x: x if isinstance(x, str) else "")
def test_a_failed_start_leaves_nothing_behind(what, argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    model = EXAMPLES / "xor.nn"
    if what == "bad model":
        model = tmp_path / "bad.nn"
        model.write_text("model bad {\n  input x: [B, 2]\n  y = dense(x)\n  output y\n}\n")
    elif what.startswith("labels"):
        model = tmp_path / "shifted.nn"
        model.write_text("model shifted {\n  input x: [B, 2]\n  input label: int[B]\n  logits = dense(x, 3)\n"
                         "  output logits\n  loss cross_entropy(logits, label + 3)\n}\n")
    for out in ([], ["--out", tmp_path / "out"]):
        assert run("run", model, *argv, *out) == 1
        assert "error: " in capsys.readouterr().err
        assert not (tmp_path / "out").exists()
        assert not Path("runs").exists(), what


# ---- metrics.json -----------------------------------------------------------------------------------------


def test_metrics_json_says_how_the_numbers_were_made(tmp_path, capsys):
    out = tmp_path / "xor"
    assert run("run", EXAMPLES / "xor.nn", "--seed", 3, "--lr", 0.05, "--out", out) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"model", "data", "epochs", "test_loss", "train_loss", "seconds", "samples_per_second",
                            "test_accuracy"}  # the keys it always had
    assert metrics["seed"] == 3 and metrics["nnc_version"] == nnc.__version__
    assert metrics["model_sha256"] == hashlib.sha256((EXAMPLES / "xor.nn").read_bytes()).hexdigest()
    settings = metrics["settings"]
    assert settings == {k: v for k, v in json.loads((out / "settings.json").read_text()).items() if k != "nnc_version"}
    assert (settings["seed"], settings["optimizer"], settings["batch"], settings["epochs"], settings["data"]) == (
        3, {"name": "adam", "args": {"lr": 0.05, "beta1": 0.9, "beta2": 0.999, "eps": 1e-08}}, 4, 300, "xor")
    counts = np.array(metrics["confusion_matrix"])
    assert counts.shape == (2, 2) and counts.sum() == 4
    for i, row in enumerate(counts):  # the matrix the run printed
        assert f"  {i:>3} " + "".join(f"{c:>5}" for c in row) in printed
    assert len(metrics["precision"]) == len(metrics["recall"]) == 2
    assert metrics["recall"][1] == counts[1, 1] / counts[1].sum()


# ---- --data paths -------------------------------------------------------------------------------------------


def test_data_on_the_command_line_is_relative_to_the_working_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("mine.csv").write_text("hours,score\n1,10\n2,20\n3,30\n4,40\n")
    linreg = EXAMPLES / "linreg.nn"  # its train block reads data/study_hours.csv next to it
    assert run("run", linreg, "--data", "mine.csv", "--epochs", 1, "--out", "mine", "--quiet") == 0
    assert json.loads(Path("mine/settings.json").read_text())["data"] == str(tmp_path / "mine.csv")
    assert run("eval", linreg, "--data", "mine.csv", "--params", "mine") == 0
    assert "test loss" in capsys.readouterr().out
    assert run("run", linreg, "--epochs", 1, "--out", "block", "--quiet") == 0  # the block's path: beside the .nn
    assert json.loads(Path("block/settings.json").read_text())["data"] == str(EXAMPLES / "data" / "study_hours.csv")


# ---- divergence ---------------------------------------------------------------------------------------------


def test_a_diverging_run_is_reported_once_with_a_hint(spiral, tmp_path, capsys):
    assert run("run", spiral, "--optimizer", "sgd", "--lr", 30, "--epochs", 6, "--out", tmp_path / "d") == 0
    err = capsys.readouterr().err
    assert err.count("warning: ") == 1, err
    warning, hint = err.strip().splitlines()
    assert warning.startswith("warning: the training loss grew from ") and warning.endswith(
        "more than 1000 times: the run is diverging")
    assert hint == "hint: lower the learning rate (--lr, now 30) or clip the gradients (--clip 1)"
    assert run("run", spiral, "--optimizer", "sgd", "--lr", 0.1, "--epochs", 6, "--out", tmp_path / "ok") == 0
    assert "warning" not in capsys.readouterr().err


def test_the_divergence_watch_compares_with_the_first_step_and_speaks_once():
    from nnc.train.trainer import DIVERGENCE_FACTOR, DivergenceWatch

    watch = DivergenceWatch()
    assert not watch.diverged(2.0)  # the first step: the reference
    assert not watch.diverged(1e-6)  # falling, however far, is no divergence
    assert not watch.diverged(2.0 * DIVERGENCE_FACTOR)
    assert watch.diverged(2.0 * DIVERGENCE_FACTOR * 1.01)
    assert not watch.diverged(1e30)  # said once
