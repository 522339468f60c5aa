"""Training beyond one loss: several losses with parameter groups, freezing, --init-from, a model without
inputs (gradient descent on a function), early stopping, best and snapshot checkpoints, and Model.fit."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import EXAMPLES, run_main

import nnc
from nnc.errors import NncError
from nnc.runtime import checkpoint
from nnc.train.config import run_config
from nnc.train.fit import EarlyStopping, Loop
from nnc.train.trainer import Trainer

BOWL = "model bowl {\n  param x: [] = 0\n  param y: [] = 0\n  loss (x - 1) ** 2 + (y - 1) ** 2\n}\n"

TWO_LOSSES = """model two {
  input x: [B, 2]
  input y: [B, 1]
  a = dense(x, 3)
  pred = dense(a, 1)
  other = dense(stop_gradient(a), 1)
  output pred
  loss fit = mse(pred, y) trains a, pred
  loss aux = mse(other, y) trains other
}
"""

MLP = """model mlp {
  input x: [B, 2]
  input y: [B, 1]
  h1 = relu(dense(x, 8))
  h2 = relu(dense(h1, 8))
  pred = dense(h2, 1)
  output pred
  loss mse(pred, y)
}
"""


def regression_data(tmp_path, n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2)).astype(np.float32)
    y = (x[:, :1] - 2 * x[:, 1:]).astype(np.float32)
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y)
    return path


def bound(model, path, val=0.0):
    from nnc.data import load_for_model

    return load_for_model(model, data=str(path), val=val, seed=0)


# ---- gradient descent on a function -------------------------------------------------------------------


@pytest.mark.parametrize("lr", [0.01, 0.3, 0.6, 1.1])
def test_the_bowl_from_the_origin_in_20_steps(lr):
    """x ← x − η·2(x − 1): the distance to the minimum shrinks by |1 − 2η| per step, so 0.3 converges, 0.01
    crawls, 0.6 oscillates in and 1.1 diverges, as the course shows."""
    model = nnc.loads(BOWL, "bowl.nn")
    rows = model.fit(steps=20, lr=lr, optimizer="sgd", progress=False)
    xs = np.array([float(r["x"]) for r in rows])
    assert len(rows) == 21 and xs[0] == 0.0
    np.testing.assert_allclose(xs, 1 - (1 - 2 * lr) ** np.arange(21), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose([r["loss"] for r in rows], 2 * (1 - xs) ** 2, rtol=1e-4, atol=1e-9)
    assert model.params["y"] == pytest.approx(rows[-1]["y"])


def test_nnc_run_on_a_model_without_inputs_prints_each_step_and_writes_the_trajectory(tmp_path):
    (tmp_path / "bowl.nn").write_text(BOWL, encoding="utf-8")
    result = run_main("run", "bowl.nn", "--steps", "20", "--lr", "0.3", "--optimizer", "sgd", "--out", "r",
                      cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "step   1  x = 0.6  y = 0.6  loss 0.32" in result.stdout
    assert "step  20  x = 1  y = 1  loss" in result.stdout
    lines = (tmp_path / "r" / "trajectory.csv").read_text().splitlines()
    assert lines[0] == "step,loss,of,x,y" and len(lines) == 22
    assert (tmp_path / "r" / "trajectory.png").stat().st_size > 1000


# ---- several losses ------------------------------------------------------------------------------------


def test_each_loss_steps_its_own_group_in_turn(tmp_path):
    model = nnc.loads(TWO_LOSSES, "two.nn")
    config = run_config(model.settings, batch=16, epochs=1, optimizer="adam", lr=0.01, backend="llvm")
    trainer = Trainer(model, config)
    assert trainer.cycle == ["fit", "aux"]
    assert set(trainer.graphs["fit"].updates) >= {"a.weight", "pred.weight"}
    assert not any(k.startswith("other") for k in trainer.graphs["fit"].updates)
    assert {k for k in trainer.graphs["aux"].updates if not k.startswith("optimizer")} == {"other.weight",
                                                                                           "other.bias"}
    # each loss has an optimizer of its own: no shared step count or moments
    assert "optimizer[fit]/step" in trainer.state() and "optimizer[aux]/step" in trainer.state()
    data = bound(model, regression_data(tmp_path))
    before = trainer.model_params()
    trainer.train_epoch(data.train)
    after = trainer.model_params()
    assert all(not np.array_equal(before[k], after[k]) for k in after)
    # both compiled steps hold the same parameters after the epoch
    for name in after:
        for eng in trainer.engines.values():
            if name in eng.params:
                np.testing.assert_array_equal(eng.params[name], after[name])
    assert set(trainer.history or []) == set() and trainer.global_step == 4


def test_stop_gradient_keeps_the_auxiliary_loss_off_the_trunk(tmp_path):
    model = nnc.loads(TWO_LOSSES + 'train {\n  alternate = [aux]\n}\n', "two.nn")
    trainer = Trainer(model, run_config(model.settings, batch=16, lr=0.1))
    assert trainer.cycle == ["aux"]
    before = trainer.model_params()
    trainer.train_epoch(bound(model, regression_data(tmp_path)).train)
    after = trainer.model_params()
    for name in ("a.weight", "a.bias", "pred.weight"):
        np.testing.assert_array_equal(before[name], after[name])
    assert not np.array_equal(before["other.weight"], after["other.weight"])


# ---- freezing and --init-from ----------------------------------------------------------------------------


def test_frozen_parameters_stay_bit_for_bit_and_get_no_optimizer_state(tmp_path):
    model = nnc.loads(MLP, "mlp.nn")
    config = run_config(model.settings, batch=16, epochs=2, optimizer="adam", lr=0.01, freeze=["h1", "h2.bias"])
    trainer = Trainer(model, config)
    before = trainer.model_params()
    data = bound(model, regression_data(tmp_path))
    trainer.train_epoch(data.train)
    trainer.train_epoch(data.train)
    after = trainer.model_params()
    for name in ("h1.weight", "h1.bias", "h2.bias"):
        assert after[name].tobytes() == before[name].tobytes()
    for name in ("h2.weight", "pred.weight", "pred.bias"):
        assert not np.array_equal(after[name], before[name])
    state = trainer.state()
    assert "optimizer/h2.weight/m" in state and not any(k.startswith("optimizer/h1") for k in state)


def test_check_marks_frozen_parameters_and_a_wrong_prefix_is_located(tmp_path):
    (tmp_path / "m.nn").write_text(MLP + "train {\n  freeze = [h1]\n}\n", encoding="utf-8")
    checked = run_main("check", "m.nn", cwd=tmp_path)
    assert "parameters: 81 trainable, 24 non-trainable (frozen: h1)" in checked.stdout, checked.stdout
    regression_data(tmp_path)
    result = run_main("run", "m.nn", "--data", "d.npz", "--freeze", "h3", "--out", "r", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "freeze" in result.stderr and "h3" in result.stderr


def test_init_from_loads_by_name_and_reports_what_is_new_and_ignored(tmp_path):
    regression_data(tmp_path)
    (tmp_path / "m.nn").write_text(MLP + "train {\n  epochs = 2\n  batch = 16\n  optimizer = adam\n}\n",
                                   encoding="utf-8")
    first = run_main("run", "m.nn", "--data", "d.npz", "--out", "base", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    head = MLP.replace("pred = dense(h2, 1)", "head = dense(h2, 1)").replace("mse(pred", "mse(head").replace(
        "output pred", "output head")
    (tmp_path / "n.nn").write_text(head + "train {\n  epochs = 1\n  batch = 16\n}\n", encoding="utf-8")
    second = run_main("run", "n.nn", "--data", "d.npz", "--init-from", "base", "--freeze", "h1,h2", "--out",
                      "tuned", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "initialized from base: 4 parameters loaded" in second.stdout
    assert "new (initialized as declared): head.weight, head.bias" in second.stdout
    assert "ignored (not in this model): pred.bias, pred.weight" in second.stdout
    base, _ = checkpoint.load(tmp_path / "base" / "checkpoint.npz")
    tuned, _ = checkpoint.load(tmp_path / "tuned" / "checkpoint.npz")
    assert tuned["h1.weight"].tobytes() == base["h1.weight"].tobytes()
    # another shape under the same name, and a model that shares no name
    wide = MLP.replace("dense(x, 8)", "dense(x, 5)")
    (tmp_path / "w.nn").write_text(wide, encoding="utf-8")
    bad = run_main("run", "w.nn", "--data", "d.npz", "--init-from", "base", "--out", "w", cwd=tmp_path)
    assert bad.returncode == 1 and "parameter h1.weight has shape [2, 8] there, expected [2, 5]" in bad.stderr
    other = MLP.replace("h1", "g1").replace("h2", "g2").replace("pred", "out")
    (tmp_path / "o.nn").write_text(other, encoding="utf-8")
    bad = run_main("run", "o.nn", "--data", "d.npz", "--init-from", "base", "--out", "o", cwd=tmp_path)
    assert bad.returncode == 1 and "none of its parameters is a parameter of model" in bad.stderr
    assert not (tmp_path / "w").exists() and not (tmp_path / "o").exists()


# ---- early stopping, best and snapshots ------------------------------------------------------------------


def test_early_stopping_on_a_constructed_validation_curve():
    early = EarlyStopping(patience=2)
    curve = [1.0, 0.8, 0.7, 0.75, 0.71, 0.9]
    stopped = None
    for epoch, loss in enumerate(curve, start=1):
        early.observe(epoch, loss, lambda e=epoch: {"w": np.array(e)})
        if early.stop:
            stopped = epoch
            break
    assert stopped == 5 and early.best_epoch == 3 and int(early.best_params["w"]) == 3


def test_a_run_stops_early_keeps_the_best_and_snapshots(tmp_path, monkeypatch):
    model = nnc.loads(MLP, "mlp.nn")
    data = bound(model, regression_data(tmp_path, n=80), val=16)
    config = run_config(model.settings, batch=16, epochs=20, lr=0.01, early_stop=2, snapshots=2)
    trainer = Trainer(model, config)
    curve = iter([1.0, 0.8, 0.7, 0.75, 0.71, 0.5])
    seen = {}

    def evaluate(split, detailed=False):
        seen[trainer.epoch] = {k: v.copy() for k, v in trainer.model_params().items()}
        return {"loss": next(curve)}

    monkeypatch.setattr(trainer, "evaluate", evaluate)
    (tmp_path / "run").mkdir()
    outcome = Loop(trainer, data, tmp_path / "run").run()
    assert outcome.status == "stopped early" and trainer.epoch == 5
    assert "kept epoch 3's parameters" in outcome.message
    for name, value in trainer.model_params().items():
        np.testing.assert_array_equal(value, seen[3][name])
    best, meta = checkpoint.load(tmp_path / "run" / "best.npz")
    assert meta["epoch"] == 3 and meta["val_loss"] == 0.7
    np.testing.assert_array_equal(best["pred.weight"], seen[3]["pred.weight"])
    assert sorted(p.name for p in (tmp_path / "run").glob("snapshot_epoch_*.npz")) == [
        "snapshot_epoch_2.npz", "snapshot_epoch_4.npz"]


def test_early_stop_without_validation_data_is_refused(tmp_path):
    regression_data(tmp_path)
    (tmp_path / "m.nn").write_text(MLP, encoding="utf-8")
    result = run_main("run", "m.nn", "--data", "d.npz", "--early-stop", "3", "--out", "r", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "early_stop = 3 watches the validation loss, but the run has no validation data" in result.stderr
    assert not (tmp_path / "r").exists()


# ---- the Python API ----------------------------------------------------------------------------------------


def test_fit_trains_the_mnist_mlp_as_nnc_run_does(tmp_path):
    model = nnc.load(EXAMPLES / "mnist_mlp.nn")
    epochs = []
    history = model.fit(epochs=1, progress=False, callbacks=[epochs.append])
    assert [h.epoch for h in history] == [1] and epochs == history
    result = model.evaluate()
    run = run_main("run", str(EXAMPLES / "mnist_mlp.nn"), "--epochs", "1", "--out", "r", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert result["accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-12) and result["accuracy"] > 0.9
    again = nnc.load(EXAMPLES / "mnist_mlp.nn").load_params(tmp_path / "r")
    assert again.evaluate()["accuracy"] == pytest.approx(result["accuracy"], abs=1e-12)


def test_fit_refuses_what_nnc_run_refuses(tmp_path):
    model = nnc.loads(MLP, "mlp.nn")
    with pytest.raises(NncError, match="early_stop = 2 watches the validation loss"):
        model.fit(data=str(regression_data(tmp_path)), early_stop=2, progress=False)


# ---- GANs ----------------------------------------------------------------------------------------------------


def test_gan_1d_learns_the_normal_distribution_it_is_shown(tmp_path):
    result = run_main("run", str(EXAMPLES / "gan_1d.nn"), "--out", "r", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("fake: mean"))
    mean, std = (float(v) for v in line.removeprefix("fake: mean ").split(" over")[0].split(", std "))
    assert abs(mean - 4) < 0.4 and abs(std - 1.25) < 0.125, line
    assert "losses d → g" in result.stdout


TINY_GAN = """def generator(z) {
  return reshape(sigmoid(dense(relu(dense(z, 16)), 64)), [B, 8, 8])
}

def discriminator(x) {
  return dense(relu(dense(flatten(x), 16)), 1)
}

model tiny_gan {
  input  image: [B, 8, 8]
  fake   = generator(randn([B, 4]), name="gen")
  d_real = discriminator(image, name="disc")
  d_fake = discriminator(stop_gradient(fake), name="disc")
  g_fake = discriminator(fake, name="disc")
  output fake
  loss d = binary_cross_entropy(d_real, 1) + binary_cross_entropy(d_fake, 0) trains disc
  loss g = binary_cross_entropy(g_fake, 1) trains gen
}

train {
  optimizer = adam(lr=0.001, beta1=0.5)
  batch     = 16
  epochs    = 2
  alternate = [d, d, g]
}
"""


def test_a_gan_on_images_writes_a_grid_of_samples_every_epoch(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "squares.npz", image=(rng.random((96, 8, 8)) > 0.5).astype(np.float32))
    (tmp_path / "gan.nn").write_text(TINY_GAN, encoding="utf-8")
    result = run_main("run", "gan.nn", "--data", "squares.npz", "--out", "r", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "losses d → d → g" in result.stdout and "examples of what to generate" in result.stdout
    epoch = next(x for x in result.stdout.splitlines() if x.startswith("epoch 2/2"))
    assert "  d " in epoch and "  g " in epoch and epoch.index("  d ") < epoch.index("  g ")
    from PIL import Image

    for n in (1, 2):
        grid = Image.open(tmp_path / "r" / f"samples_epoch_{n}.png")
        assert grid.size == (2 * (8 * 10 + 2), 2 * (8 * 10 + 2))    # 8 × 8 images of 8 × 8 pixels, 2-pixel gaps
    state, _ = checkpoint.load(tmp_path / "r" / "checkpoint.npz")
    assert "optimizer[d]/step" in state and "optimizer[g]/step" in state
    # the run resumes: the saved state of both losses' optimizers goes back where it came from
    again = run_main("run", "gan.nn", "--resume", "r", "--epochs", "3", cwd=tmp_path)
    assert again.returncode == 0, again.stderr


def test_fit_in_a_notebook_updates_one_line_as_the_epoch_goes(monkeypatch):
    """In a Jupyter kernel the progress of an epoch is one output updated in place (IPython's display_id)."""
    import sys
    import types

    shown = []

    class Handle:
        def update(self, text):
            shown.append(("update", text))

    def display(text, display_id=False):
        shown.append(("display", text))
        return Handle()

    class ZMQInteractiveShell:
        pass

    fake = types.ModuleType("IPython")
    fake.get_ipython = ZMQInteractiveShell
    display_module = types.ModuleType("IPython.display")
    display_module.display = display
    monkeypatch.setitem(sys.modules, "IPython", fake)
    monkeypatch.setitem(sys.modules, "IPython.display", display_module)
    model = nnc.load(EXAMPLES / "xor.nn")
    model.fit(epochs=2, batch=1, lr=0.1)
    assert shown[0][0] == "display" and shown[0][1].startswith("epoch 1/2: ")
    assert all(kind == "update" for kind, _ in shown[1:]) and "ETA" in shown[-1][1]


def test_piped_progress_prints_a_line_every_30_seconds_with_the_whole_runs_eta(monkeypatch):
    import io

    from nnc.cli import progress as progress_module

    clock = [0.0]
    monkeypatch.setattr(progress_module.time, "perf_counter", lambda: clock[0])
    out = io.StringIO()
    p = progress_module.Progress(3, stream=out)
    assert not p.live
    p.start_epoch(1, 100)
    for step in range(1, 101):
        clock[0] = step * 1.0          # one second a step: 100 s an epoch
        p.step(step, 100, 0.5, None)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3            # at 30 s, 60 s and 90 s
    assert lines[0].startswith("  epoch 1/3: step 30/100  loss 0.5000")
    assert lines[0].endswith("ETA 1m 10s, run 4m 30s")   # 70 s of this epoch, then two of 100 s


# ---- cross-validation --------------------------------------------------------------------------------------

CV_MODEL = """model cv {
  input x: [B, 2]
  input label: int[B]
  logits = dense(relu(dense(x, 16)), 3)
  output logits
  loss cross_entropy(logits, label)
}

train {
  data      = "cv.csv"
  target    = label
  optimizer = adam(lr=0.01)
  epochs    = 10
  batch     = 16
}
"""


def cv_files(tmp_path, n=100):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 2))
    label = (x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 0] > 1).astype(int)
    rows = "".join(f"{a:.4f},{b:.4f},{c}\n" for (a, b), c in zip(x, label))
    (tmp_path / "cv.csv").write_text("a,b,label\n" + rows, encoding="utf-8")
    (tmp_path / "cv.nn").write_text(CV_MODEL, encoding="utf-8")


def test_folds_cover_the_data_once_and_are_seeded():
    from nnc.train.folds import fold_indices

    parts = fold_indices(103, 5, seed=3)
    assert sorted(np.concatenate(parts).tolist()) == list(range(103))
    assert sorted(len(p) for p in parts) == [20, 20, 21, 21, 21]
    assert all(np.array_equal(a, b) for a, b in zip(parts, fold_indices(103, 5, seed=3)))
    assert not np.array_equal(parts[0], fold_indices(103, 5, seed=4)[0])


def test_cross_validation_reports_each_fold_and_the_mean_and_std(tmp_path):
    cv_files(tmp_path)
    result = run_main("run", "cv.nn", "--folds", "4", "--out", "r", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [x for x in result.stdout.splitlines() if x.startswith("fold ")]
    assert [x.split(":")[0] for x in lines] == ["fold 1/4", "fold 2/4", "fold 3/4", "fold 4/4"]
    assert all("trained on 75, scored on 25" in x for x in lines)
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    accuracy = metrics["cross_validation"]["accuracy"]
    shown = [float(x.split("accuracy ")[1].split("%")[0]) / 100 for x in lines]
    assert accuracy["folds"] == pytest.approx(shown, abs=5e-5)
    assert accuracy["mean"] == pytest.approx(np.mean(accuracy["folds"]))
    assert accuracy["std"] == pytest.approx(np.std(accuracy["folds"], ddof=1))
    assert f"accuracy {100 * accuracy['mean']:.2f}% ± {100 * accuracy['std']:.2f}%" in result.stdout
    assert all((tmp_path / "r" / f"fold_{i}" / "checkpoint.npz").exists() for i in range(1, 5))


@pytest.mark.parametrize("flags, message", [
    (["--data", "spiral"], "folds = 3 holds each part of the data out in turn, but spiral has a fixed test set"),
    (["--val", "10"], "folds = 3 validates each model on its fold: drop `val`"),
])
def test_folds_refuse_a_fixed_test_set_and_a_validation_split(tmp_path, flags, message):
    cv_files(tmp_path)
    result = run_main("run", "cv.nn", "--folds", "3", *flags, "--out", "r", cwd=tmp_path)
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "r").exists()
